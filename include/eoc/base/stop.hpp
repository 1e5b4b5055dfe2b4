// Cooperative stopping: a SIGINT/SIGTERM handler records the signal, and long loops call
// check_stop() between steps so a run ends cleanly (no half-written file) instead of dying.
#pragma once

namespace eoc {

void request_stop(int signal_number);  // async-signal-safe
int stop_signal();                     // 0 while running
// Throws eoc::Interrupted when a stop was requested.
void check_stop();

}  // namespace eoc

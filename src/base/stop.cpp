#include "eoc/base/stop.hpp"

#include <atomic>

#include "eoc/base/error.hpp"

namespace eoc {
namespace {

std::atomic<int> g_stop_signal{0};

}  // namespace

void request_stop(int signal_number) { g_stop_signal.store(signal_number); }
int stop_signal() { return g_stop_signal.load(); }

void check_stop() {
  if (const int s = stop_signal()) throw Interrupted(s);
}

}  // namespace eoc

// The CPU runtime settings eoc runs under, which only take effect through the environment a
// process starts with (shared by the `eoc` launcher and the LibTorch program it starts; no
// LibTorch here).
#pragma once

namespace eoc::cli {

// Sets each variable of the CPU runtime settings (runtime_env.cpp says which and why) that the
// user has not set. Returns whether it set any. Takes effect only in a process started after it.
bool set_cpu_runtime_env();

// The variable that marks the settings as applied, and, set by the user, turns them off.
constexpr const char* kRuntimeEnvApplied = "EOC_NO_REEXEC";

}  // namespace eoc::cli

// Model layer (device runtime). The CPU runtime settings eoc runs under, which only take effect
// through the environment a process starts with. Used by the `eoc` launcher (which links no
// LibTorch, so nothing here may need it), by the LibTorch program it starts, and by `eoc info`,
// which shows them.
#pragma once

#include <array>

namespace eoc {

struct EnvSetting {
  const char* name;
  const char* value;  // set unless the user set the variable
};

// The variables and the values eoc gives them; runtime_env.cpp says why each.
extern const std::array<EnvSetting, 3> kCpuRuntimeEnv;

// Sets each variable of kCpuRuntimeEnv that the user has not set (OMP_WAIT_POLICY also counts
// as set when GOMP_SPINCOUNT is). Returns whether it set any. Takes effect only in a process
// started after it.
bool set_cpu_runtime_env();

// The variable that marks the settings as applied, and, set by the user, turns them off.
constexpr const char* kRuntimeEnvApplied = "EOC_NO_REEXEC";

}  // namespace eoc

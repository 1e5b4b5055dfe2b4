// eoc: the command users run. It puts the CPU runtime settings into the environment
// (src/model/runtime_env.cpp), then runs the LibTorch program `eoc-torch`, which sits beside it,
// with the same arguments. The settings only work in a process that starts with them, and
// starting a program linked to LibTorch costs 0.5 to 0.9 s (loading and relocating it;
// docs/BENCHMARKS.md); this small launcher links no LibTorch, so that cost is paid once.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "eoc/base/process.hpp"
#include "eoc/model/runtime_env.hpp"

namespace {

// The folder of this executable ("." if the kernel does not say).
std::string own_folder() {
  const std::string path = eoc::executable_path();
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

}  // namespace

int main(int, char** argv) {
  if (!std::getenv(eoc::kRuntimeEnvApplied)) {
    eoc::set_cpu_runtime_env();
    ::setenv(eoc::kRuntimeEnvApplied, "1", 1);
  }
  const std::string program = own_folder() + "/eoc-torch";
  ::execv(program.c_str(), argv);
  std::fprintf(stderr, "eoc: error: cannot start '%s': %s (it is built and installed beside eoc)\n",
               program.c_str(), std::strerror(errno));
  return 127;
}

#include "eoc/model/runtime_env.hpp"

#include <cstdlib>
#include <string_view>

namespace eoc {

// CPU runtime settings that matter on small DiTs (docs/BENCHMARKS.md, "CPU runtime").
// Each is read once, when its library starts, so it must be in the environment of a new process.
// 1. LibTorch's OpenMP workers spin after every parallel region (libgomp's default), while the
//    next matmul runs on OpenBLAS's own threads: on few cores they fight over them.
//    OMP_WAIT_POLICY=PASSIVE, unless the user chose a policy.
// 2. The heap's first touch faults in every 4 KiB page of the run's peak memory (the cache's
//    tensors included, twice as many with a forecast); glibc >= 2.35 backs the heap with
//    transparent huge pages when GLIBC_TUNABLES asks for it (read by the dynamic loader), unless
//    the user set GLIBC_TUNABLES. Older glibc ignores the tunable.
// 3. OpenBLAS's idle workers spin (calling sched_yield) for 2^28 cycles after each GEMM before
//    they sleep, so between the many small GEMMs of a DiT step they never sleep, and on few
//    cores they take turns from LibTorch's OpenMP workers running the element-wise ops.
//    OPENBLAS_THREAD_TIMEOUT shortens the spin to 2^N cycles, unless the user set it. Other BLAS
//    libraries ignore it.
// (Keeping freed memory in the heap, the fourth setting, is a mallopt call in main().)
const std::array<EnvSetting, 3> kCpuRuntimeEnv = {{
    {"OMP_WAIT_POLICY", "PASSIVE"},
    {"GLIBC_TUNABLES", "glibc.malloc.hugetlb=1"},
    {"OPENBLAS_THREAD_TIMEOUT", "20"},  // 2^20 cycles: docs/BENCHMARKS.md, "CPU runtime"
}};

bool set_cpu_runtime_env() {
  bool changed = false;
  for (const auto& [name, value] : kCpuRuntimeEnv) {
    const bool spin_chosen =
        std::string_view(name) == "OMP_WAIT_POLICY" && std::getenv("GOMP_SPINCOUNT");
    if (std::getenv(name) || spin_chosen) continue;
    ::setenv(name, value, 1);
    changed = true;
  }
  return changed;
}

}  // namespace eoc

// eoc: sample Diffusion Transformers fast with feature caching and Error-Optimized Cache.
// main() parses flags, runs one library function, and is the single place errors are printed.
#include <c10/util/Exception.h>

#include <malloc.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "commands.hpp"
#include "config_file.hpp"
#include "eoc/error.hpp"
#include "eoc/log.hpp"
#include "eoc/pipeline.hpp"

namespace {

void on_signal(int signal_number) {
  eoc::request_stop(signal_number);
  std::signal(signal_number, SIG_DFL);  // a second signal stops at once
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// CPU runtime settings measured to matter on small DiTs (docs/BENCHMARKS.md, "CPU runtime").
// 1. LibTorch's OpenMP workers spin after every parallel region (libgomp's default), while the
//    next matmul runs on OpenBLAS's own threads: on few cores they fight, 3-4x slower. libgomp
//    reads its wait policy once, when it is loaded, so the process re-executes itself with
//    OMP_WAIT_POLICY=PASSIVE, unless the user chose a policy.
// 2. glibc returns every freed block above its mmap threshold to the kernel, so each op's output
//    (a few MiB) is page-faulted in anew; keeping freed memory in the heap removes that cost.
// 3. The heap's first touch still faults in every 4 KiB page of the run's peak memory (the
//    cache's tensors included, twice as many with a forecast); glibc >= 2.35 backs the heap with
//    transparent huge pages when GLIBC_TUNABLES asks for it (read at start-up, so also set for
//    the re-execution), unless the user set GLIBC_TUNABLES. Older glibc ignores the tunable.
// 4. OpenBLAS's idle workers spin (calling sched_yield) for 2^28 cycles after each GEMM before
//    they sleep, so between the many small GEMMs of a DiT step they never sleep, and on few
//    cores they take turns from LibTorch's OpenMP workers running the element-wise ops.
//    OPENBLAS_THREAD_TIMEOUT (read when OpenBLAS loads) shortens the spin to 2^N cycles, unless
//    the user set it. Other BLAS libraries ignore it.
// The re-execution happens once (EOC_NO_REEXEC marks it, and also turns it off); if it fails,
// eoc simply runs with the defaults.
constexpr const char* kOpenblasThreadTimeout = "20";  // docs/BENCHMARKS.md, "CPU runtime"

void tune_cpu_runtime(char** argv) {
  if (!std::getenv("EOC_NO_REEXEC")) {
    bool changed = false;
    if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT")) {
      ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
      changed = true;
    }
    if (!std::getenv("OPENBLAS_THREAD_TIMEOUT")) {
      ::setenv("OPENBLAS_THREAD_TIMEOUT", kOpenblasThreadTimeout, 1);
      changed = true;
    }
    if (!std::getenv("GLIBC_TUNABLES")) {
      ::setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1", 1);
      changed = true;
    }
    if (changed) {
      ::setenv("EOC_NO_REEXEC", "1", 1);  // never loop, whatever the child does with the settings
      ::execv("/proc/self/exe", argv);
    }
  }
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
  ::mallopt(M_TOP_PAD, 64 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  tune_cpu_runtime(argv);
  CLI::App app{"eoc " EOC_VERSION
               ": sample Diffusion Transformers (DiT) fast with feature caching and "
               "Error-Optimized Cache"};
  app.set_version_flag("--version", std::string("eoc ") + EOC_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // -q and -v also work after the subcommand
  bool quiet = false, verbose = false;
  app.add_flag("-q,--quiet", quiet, "Only print warnings and errors");
  app.add_flag("-v,--verbose", verbose, "Print debug messages");
  auto action = eoc::cli::register_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (quiet) eoc::log::set_level(eoc::log::Level::warn);
  if (verbose) eoc::log::set_level(eoc::log::Level::debug);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    eoc::cli::apply_config_file(app);
    if (eoc::cli::print_dry_run(app)) return 0;
    action();
    return 0;
  } catch (const eoc::Interrupted& e) {
    std::cerr << "eoc: " << e.what()
              << "; stopped cleanly: no partial file was written (finished --out-dir images are "
                 "kept; the same command resumes)\n";
    return 128 + e.signal_number();
  } catch (const eoc::Error& e) {
    std::cerr << "eoc: error: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    std::cerr << "eoc: error: LibTorch: " << first_line(e.what_without_backtrace()) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "eoc: error: " << first_line(e.what()) << "\n";
  }
  return 1;
}

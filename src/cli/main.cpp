// eoc-torch, the eoc program (users start it through the `eoc` launcher, launcher.cpp): sample
// Diffusion Transformers fast with feature caching and Error-Optimized Cache.
// main() parses flags, runs one library function, and is the single place errors are printed.
#include <c10/util/Exception.h>

#include <malloc.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/base/process.hpp"
#include "eoc/base/stop.hpp"
#include "eoc/cli/commands.hpp"
#include "eoc/cli/config_file.hpp"
#include "eoc/model/runtime_env.hpp"

namespace {

void on_signal(int signal_number) {
  eoc::request_stop(signal_number);
  std::signal(signal_number, SIG_DFL);  // a second signal stops at once
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// Run directly (not through the `eoc` launcher, which sets them before starting this program),
// the program puts the CPU runtime settings (src/model/runtime_env.cpp) into its environment and
// re-executes itself once, since they only work in a process that starts with them; if that
// fails, it runs with the defaults. glibc also returns every freed block above its mmap
// threshold to the kernel, so each op's output (a few MiB) would be page-faulted in anew:
// freed memory stays in the heap instead.
void tune_cpu_runtime(char** argv) {
  const std::string self = eoc::executable_path();
  if (!self.empty() && !std::getenv(eoc::kRuntimeEnvApplied) && eoc::set_cpu_runtime_env()) {
    ::setenv(eoc::kRuntimeEnvApplied, "1", 1);  // never loop, whatever the child does
    ::execv(self.c_str(), argv);
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
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    try {
      app.parse(argc, argv);  // flag values are parsed into typed options here
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    if (quiet) eoc::log::set_level(eoc::log::Level::warn);
    if (verbose) eoc::log::set_level(eoc::log::Level::debug);
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
  } catch (const eoc::InternalError& e) {
    std::cerr << "eoc: internal error (a bug in eoc; please report it with the command): "
              << e.what() << "\n";
    return 70;  // EX_SOFTWARE
  } catch (const c10::Error& e) {
    std::cerr << "eoc: error: LibTorch: " << first_line(e.what_without_backtrace()) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "eoc: error: " << first_line(e.what()) << "\n";
  }
  return 1;
}

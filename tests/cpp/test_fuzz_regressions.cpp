// Replays every input under tests/fuzz/regressions/<target>/ (inputs that once crashed a fuzz
// target, kept after the fix) and the seed corpus tests/fuzz/corpus/<target>/ through the same
// parsers the libFuzzer targets call (tests/fuzz/fuzz_inputs.hpp). Each input must parse or be
// refused with eoc::Error: another exception type fails here, a crash or sanitizer report stops
// the test binary. Runs in the ordinary (and the sanitizer) build; no clang needed.
#include <cxxabi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <typeinfo>
#include <vector>

#include "../fuzz/fuzz_inputs.hpp"
#include "eoc/io/files.hpp"

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> inputs_of(const std::string& target) {
  std::vector<fs::path> files;
  for (const char* kind : {"regressions", "corpus"}) {
    const fs::path dir = fs::path(EOC_SOURCE_DIR) / "tests" / "fuzz" / kind / target;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.is_regular_file() && entry.path().filename().string()[0] != '.')
        files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string type_name(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  return status == 0 && name ? name.get() : type.name();
}

class FuzzRegressions : public ::testing::TestWithParam<std::string> {};

TEST_P(FuzzRegressions, EveryInputParsesOrIsAnEocError) {
  const auto parse = eoc_fuzz::targets().at(GetParam());
  const auto files = inputs_of(GetParam());
  EXPECT_FALSE(files.empty()) << "no seed corpus for " << GetParam();
  for (const auto& file : files) {
    SCOPED_TRACE(file.string());
    const std::string bytes = eoc::read_file(file.string());
    try {
      parse(bytes);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "threw " << type_name(typeid(e)) << " instead of eoc::Error: " << e.what();
    } catch (...) {
      ADD_FAILURE() << "threw a non-std exception";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzRegressions,
                         ::testing::Values("fuzz_mask", "fuzz_prior", "fuzz_config", "fuzz_npy",
                                           "fuzz_run_record"),
                         [](const auto& info) { return info.param; });

}  // namespace

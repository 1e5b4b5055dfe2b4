// libFuzzer target: EOC prior JSON (--prior FILE.json): eoc::load_prior, as written and re-signed.
// Build and run: scripts/dev/fuzz.sh (tests/fuzz/CMakeLists.txt); inputs it finds are replayed by
// tests/cpp/test_fuzz_regressions.cpp.
#include <cstddef>
#include <cstdint>

#include "fuzz_inputs.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  eoc_fuzz::parse_prior(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}

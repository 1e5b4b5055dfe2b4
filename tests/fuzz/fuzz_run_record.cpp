// libFuzzer target: run record of an --out-dir folder (eoc-run-I-of-N.json):
// eoc::read_run_records, check_records_agree, run_pack.
// Build and run: scripts/dev/fuzz.sh (tests/fuzz/CMakeLists.txt); inputs it finds are replayed by
// tests/cpp/test_fuzz_regressions.cpp.
#include <cstddef>
#include <cstdint>

#include "fuzz_inputs.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  eoc_fuzz::parse_run_record(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}

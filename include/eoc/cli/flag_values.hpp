// CLI layer (flags, --config files, main, the launcher; uses the runs layer's typed options and
// entry points, nothing deeper). Flag text -> typed option values, once, at the boundary: every
// error names the flag and the value and says what was expected.
#pragma once
#include <ATen/ATen.h>

#include <string>

#include "eoc/base/error.hpp"
#include "eoc/base/names.hpp"
#include "eoc/setup/options.hpp"

namespace eoc::cli {

// One of an enum's names.
template <typename E, std::size_t N>
E parse_choice(const char* flag, const std::string& text, const Names<E, N>& names) {
  if (const auto value = names.parse(text)) return *value;
  fail(flag, " '", text, "' is not one of: ", names.list());
}

// A whole-string integer (an int) or a finite number; Error naming `flag` otherwise.
int parse_integer(const char* flag, const std::string& text);
double parse_number(const char* flag, const std::string& text);
// "LOW,HIGH" (two numbers; the run checks their range).
GuidanceInterval parse_interval(const std::string& text);
// "cpu" | "cuda" | "cuda:N" (availability is checked when the run starts).
at::Device parse_device(const std::string& text);
// "" (the default spread) | "random" | "1,2,3".
ClassChoice parse_classes(const std::string& text);
// "none" | "fora:N" | "mask:FILE.json".
CacheSpec parse_cache_spec(const std::string& text);
// "none" | "taylor" | "taylor:O" (O = 1..4) | "eoc".
CorrectorSpec parse_corrector(const std::string& text);

}  // namespace eoc::cli

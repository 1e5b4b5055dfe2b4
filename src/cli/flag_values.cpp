#include "eoc/cli/flag_values.hpp"

#include "eoc/base/numbers.hpp"

#include <cctype>
#include <climits>
#include <cmath>
#include <sstream>

namespace eoc::cli {
namespace {

// A whole-string integer; false when `text` is not one.
bool parse_int(const std::string& text, long long& value) {
  const auto v = parse_whole_integer(text);
  if (v) value = *v;
  return v.has_value();
}

}  // namespace

int parse_integer(const char* flag, const std::string& text) {
  long long v = 0;
  if (!parse_int(text, v) || v < INT_MIN || v > INT_MAX)
    fail(flag, " '", text, "' is not an integer");
  return static_cast<int>(v);
}

double parse_number(const char* flag, const std::string& text) {
  const auto v = parse_finite_number(text);
  if (!v) fail(flag, " '", text, "' is not a number");
  return *v;
}

GuidanceInterval parse_interval(const std::string& text) {
  const auto comma = text.find(',');
  if (comma == std::string::npos)
    fail("--cfg-interval '", text, "': expected LOW,HIGH (e.g. 0,0.7)");
  return {parse_number("--cfg-interval", text.substr(0, comma)),
          parse_number("--cfg-interval", text.substr(comma + 1))};
}

at::Device parse_device(const std::string& text) {
  if (text == "cpu") return at::Device(at::kCPU);
  if (text == "cuda") return at::Device(at::kCUDA);
  if (text.rfind("cuda:", 0) == 0) {
    long long index = -1;
    if (!parse_int(text.substr(5), index) || index < 0 || index > 255)
      fail("--device '", text, "': expected cuda:N");
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  fail("--device '", text, "' is not one of: cpu, cuda, cuda:N");
}

ClassChoice parse_classes(const std::string& text) {
  ClassChoice c;
  if (text.empty()) return c;
  if (text == "random") {
    c.kind = ClassChoice::Kind::random;
    return c;
  }
  c.kind = ClassChoice::Kind::list;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    long long v = 0;
    if (!parse_int(item, v))
      fail("--classes '", text, "': '", item, "' is not an integer label (or use 'random')");
    c.labels.push_back(v);
  }
  if (c.labels.empty()) fail("--classes '", text, "' names no label");
  return c;
}

CacheSpec parse_cache_spec(const std::string& text) {
  CacheSpec spec;
  if (text == "none") return spec;
  if (text.rfind("fora:", 0) == 0) {
    const std::string n = text.substr(5);
    long long interval = 0;
    if (!parse_int(n, interval) || !std::isdigit(static_cast<unsigned char>(n[0])) || interval < 1)
      fail("--cache '", text, "': the FORA interval must be an integer >= 1 (e.g. fora:3)");
    spec.kind = CacheSpec::Kind::fora;
    spec.interval = interval;
    return spec;
  }
  if (text.rfind("mask:", 0) == 0) {
    spec.kind = CacheSpec::Kind::mask;
    spec.mask_path = text.substr(5);
    return spec;
  }
  try {
    if (auto gate = GateSpec::parse(text)) {
      spec.kind = CacheSpec::Kind::gate;
      spec.gate = *gate;
      return spec;
    }
  } catch (const Error& e) {
    fail("--cache ", e.what());
  }
  fail("--cache '", text,
       "' is not one of: none, fora:N, mask:FILE.json, fbcache:T, teacache:T, easycache:T");
}

CorrectorSpec parse_corrector(const std::string& text) {
  CorrectorSpec spec;
  if (text.rfind("taylor:", 0) == 0) {
    long long order = 0;
    if (!parse_int(text.substr(7), order) || order < 1 || order > kMaxTaylorOrder)
      fail("--correct '", text, "': the Taylor order must be 1..", kMaxTaylorOrder,
           " (e.g. taylor:2)");
    spec.kind = CorrectorChoice::taylor;
    spec.order = static_cast<int>(order);
    return spec;
  }
  if (const auto kind = kCorrectorNames.parse(text)) {
    spec.kind = *kind;
    return spec;
  }
  fail("--correct '", text, "' is not one of: none, taylor, taylor:O (O = 1..", kMaxTaylorOrder,
       "), foca, eoc");
}

}  // namespace eoc::cli

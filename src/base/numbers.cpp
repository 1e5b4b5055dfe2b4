#include "eoc/base/numbers.hpp"

#include <cmath>
#include <exception>
#include <sstream>

namespace eoc {

std::optional<long long> parse_whole_integer(const std::string& text) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (text.empty() || used != text.size()) return std::nullopt;
  return v;
}

std::optional<double> parse_finite_number(const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (text.empty() || used != text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string shortest_decimal(double v) {
  for (int digits = 1; digits <= 17; ++digits) {
    std::ostringstream s;
    s.precision(digits);
    s << v;
    if (std::stod(s.str()) == v) return s.str();
  }
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

}  // namespace eoc

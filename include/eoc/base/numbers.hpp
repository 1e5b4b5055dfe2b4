// Numbers in text, read and written one way everywhere: flag values (cli/flag_values), gate
// specs (cache/gate), and what prints them back.
#pragma once
#include <optional>
#include <string>

namespace eoc {

// The whole of `text` as an integer (std::stoll's syntax: an optional sign, decimal digits);
// nothing when it is not one or does not fit.
std::optional<long long> parse_whole_integer(const std::string& text);
// The whole of `text` as a finite number ("0.5", "-1.25e-3"); nothing for anything else,
// "inf" and "nan" included.
std::optional<double> parse_finite_number(const std::string& text);
// The shortest decimal that reads back as exactly `v` (specs that must round-trip).
std::string shortest_decimal(double v);

}  // namespace eoc

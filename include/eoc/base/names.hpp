// One table per enum of its spellings, so printing a value and reading it back can never
// disagree. The CLI reads flag values with it; reports and files print with it.
#pragma once
#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>

namespace eoc {

template <typename E, std::size_t N>
struct Names {
  std::array<std::pair<E, const char*>, N> entries;

  const char* name(E value) const {
    for (const auto& [v, n] : entries)
      if (v == value) return n;
    return "?";
  }
  std::optional<E> parse(const std::string& text) const {
    for (const auto& [v, n] : entries)
      if (text == n) return v;
    return std::nullopt;
  }
  // "a, b, c", for "is not one of" messages.
  std::string list() const {
    std::string out;
    for (const auto& [v, n] : entries) out += (out.empty() ? "" : ", ") + std::string(n);
    return out;
  }
};

}  // namespace eoc

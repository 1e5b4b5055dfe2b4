// base/numbers.hpp: the one reader of integers and numbers in flag values and gate specs, and
// the shortest decimal that round-trips.
#include <gtest/gtest.h>

#include <cmath>

#include "eoc/base/numbers.hpp"

namespace {

TEST(Numbers, WholeIntegers) {
  EXPECT_EQ(eoc::parse_whole_integer("3"), 3);
  EXPECT_EQ(eoc::parse_whole_integer("-12"), -12);
  EXPECT_FALSE(eoc::parse_whole_integer(""));
  EXPECT_FALSE(eoc::parse_whole_integer("3x"));
  EXPECT_FALSE(eoc::parse_whole_integer("2.5"));
  EXPECT_FALSE(eoc::parse_whole_integer("99999999999999999999"));  // does not fit
}

TEST(Numbers, FiniteNumbers) {
  EXPECT_EQ(eoc::parse_finite_number("0.5"), 0.5);
  EXPECT_EQ(eoc::parse_finite_number("-1.25e-3"), -1.25e-3);
  for (const char* bad : {"", "inf", "nan", "1e999", "0.5.", "x"})
    EXPECT_FALSE(eoc::parse_finite_number(bad)) << bad;
}

TEST(Numbers, ShortestDecimalRoundTrips) {
  EXPECT_EQ(eoc::shortest_decimal(0.1), "0.1");
  EXPECT_EQ(eoc::shortest_decimal(2.0), "2");
  for (double v : {1.0 / 3.0, 0.1 + 0.2, 1e-300, -123456.789, std::nextafter(1.0, 2.0)})
    EXPECT_EQ(eoc::parse_finite_number(eoc::shortest_decimal(v)), v);
}

}  // namespace

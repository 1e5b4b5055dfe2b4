// group_equal_rows: the grouping behind running the adaLN modulations once per distinct row.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "eoc/cache/block_loop.hpp"

namespace {

std::vector<int64_t> as_vector(const at::Tensor& t) {
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

TEST(RowGroups, GroupsEqualRowsInFirstSeenOrder) {
  // Rows: a, b, a, c, b, a (with guidance the null half is one repeated row like `a`).
  const auto a = at::full({4}, 0.25f), b = at::arange(4, at::kFloat), c = -b;
  const auto rows = at::stack({a, b, a, c, b, a});
  const auto g = eoc::group_equal_rows(rows);
  EXPECT_EQ(g.count, 3);
  EXPECT_EQ(as_vector(g.first), (std::vector<int64_t>{0, 1, 3}));
  EXPECT_EQ(as_vector(g.group), (std::vector<int64_t>{0, 1, 0, 2, 1, 0}));
  // Gathering the distinct rows back rebuilds the input exactly.
  EXPECT_TRUE(at::equal(rows.index_select(0, g.first).index_select(0, g.group), rows));
}

TEST(RowGroups, ComparesBitsNotValues) {
  // +0 and -0 compare equal as floats but may not behave alike downstream; NaN equals nothing
  // as a float but a row is always its own group.
  auto rows = at::zeros({3, 2});
  rows[1][0] = -0.0f;
  rows[2][1] = std::nanf("");
  const auto g = eoc::group_equal_rows(at::cat({rows, rows}));
  EXPECT_EQ(g.count, 3);
  EXPECT_EQ(as_vector(g.group), (std::vector<int64_t>{0, 1, 2, 0, 1, 2}));
}

TEST(RowGroups, AllDistinctAndNonContiguousInput) {
  const auto rows = at::arange(12, at::kFloat).reshape({3, 4}).t();  // (4, 3), not contiguous
  const auto g = eoc::group_equal_rows(rows);
  EXPECT_EQ(g.count, 4);
  EXPECT_EQ(as_vector(g.group), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(eoc::group_equal_rows(at::zeros({0, 3})).count, 0);
}

}  // namespace

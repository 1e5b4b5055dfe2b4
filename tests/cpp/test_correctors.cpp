// The plain and Taylor correctors applied to a hand-built cache entry.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "eoc/correctors.hpp"
#include "eoc/feature_cache.hpp"

namespace {

using eoc::Branch;
using eoc::CachedFeature;

CachedFeature entry(int64_t r, int64_t p) {
  CachedFeature e;
  const auto fp = at::linspace(-1.0, 2.0, 24, at::kFloat).reshape({2, 3, 4});
  const auto fr = at::linspace(0.5, -3.0, 24, at::kFloat).reshape({2, 3, 4});
  e.value = fr;
  e.step = r;
  if (p >= 0) {
    e.delta = fr - fp;
    e.prev_step = p;
  }
  return e;
}

TEST(Correctors, PlainReturnsCachedValue) {
  const auto c = eoc::make_plain_corrector();
  EXPECT_EQ(c->name(), "none");
  EXPECT_FALSE(c->needs_delta());
  const auto e = entry(5, 3);
  const auto out = c->correct(6, 0, Branch::attn, e);
  EXPECT_TRUE(at::equal(out, e.value));
}

TEST(Correctors, TaylorTau) {
  // tau = (k - r) / (r - p)
  EXPECT_DOUBLE_EQ(eoc::taylor_tau(6, entry(5, 3)), 0.5);
  EXPECT_DOUBLE_EQ(eoc::taylor_tau(7, entry(5, 3)), 1.0);
  EXPECT_DOUBLE_EQ(eoc::taylor_tau(9, entry(8, 5)), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(eoc::taylor_tau(6, entry(5, -1)), 0.0);
}

TEST(Correctors, TaylorForecast) {
  const auto c = eoc::make_taylor_corrector();
  EXPECT_EQ(c->name(), "taylor");
  EXPECT_TRUE(c->needs_delta());
  const auto e = entry(5, 3);
  const auto fp = at::linspace(-1.0, 2.0, 24, at::kFloat).reshape({2, 3, 4});
  for (int64_t k : {6, 7}) {
    const double tau = (k - 5.0) / (5.0 - 3.0);
    const auto expected = e.value + tau * (e.value - fp);
    const auto out = c->correct(k, 1, Branch::mlp, e);
    EXPECT_TRUE(at::allclose(out, expected, 1e-5, 1e-6)) << k;
    EXPECT_FALSE(at::allclose(out, e.value)) << k;
  }
}

TEST(Correctors, TaylorWithoutPreviousIsPlain) {
  const auto c = eoc::make_taylor_corrector();
  const auto e = entry(0, -1);
  EXPECT_TRUE(at::equal(c->correct(1, 0, Branch::attn, e), e.value));
}

}  // namespace

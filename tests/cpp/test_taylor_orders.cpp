// TaylorSeer's forecasts of order 1 to 4 (`--correct taylor:O`): the derivative estimates the
// feature cache keeps, the forecast series, and the fused update that applies it.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "eoc/cache/correctors.hpp"
#include "eoc/cache/feature_cache.hpp"
#include "eoc/cache/gated_update.hpp"

namespace {

using eoc::Branch;
using eoc::CachedFeature;
using eoc::FeatureCache;

const at::Tensor& unit() {
  static const at::Tensor u = at::linspace(-1.0, 1.0, 2 * 3 * 4, at::kDouble).reshape({2, 3, 4});
  return u;
}

// A cache of one block fed f(k) * unit() at the given computed steps; the taylor:O forecast of
// the attention entry at `step`, divided by unit() (one number).
double forecast(int order, const std::vector<int64_t>& computed, double (*f)(double),
                int64_t step) {
  const auto corrector = eoc::make_taylor_corrector(order);
  FeatureCache cache(1, corrector->history());
  for (int64_t k : computed) cache.store(k, 0, Branch::attn, f(static_cast<double>(k)) * unit());
  const auto out = corrector->correct(step, 0, Branch::attn, cache.get(0, Branch::attn));
  const auto ratio = out / unit();
  EXPECT_TRUE(
      at::allclose(ratio, at::full_like(ratio, ratio.flatten()[0].item<double>()), 1e-12, 1e-12));
  return ratio.flatten()[0].item<double>();
}

double linear(double k) { return 3.0 - 0.5 * k; }
double square(double k) { return k * k; }

TEST(TaylorOrders, EveryOrderForecastsALinearSeriesExactly) {
  for (int order = 1; order <= eoc::kMaxTaylorOrder; ++order)
    for (const auto& steps :
         std::vector<std::vector<int64_t>>{{0, 3, 6}, {0, 3, 4}, {0, 1, 2, 5, 9}})
      for (int64_t j = steps.back() + 1; j < steps.back() + 4; ++j)
        EXPECT_NEAR(forecast(order, steps, linear, j), linear(j), 1e-12) << order << " at " << j;
}

// Hand-computed recursive differences of k^2 computed at steps 0, 1, 3 (uneven):
// D1 at 1 = 1; at 3: D1 = (9 - 1) / 2 = 4, D2 = (4 - 1) / 2 = 1.5. Forecast at 5 (dt = 2):
// order 1: 9 + 4 * 2 = 17; order >= 2: 17 + 1.5 * 2^2 / 2 = 20 (only two estimates exist).
// One more computed step at 4: D1 = 7, D2 = 3, D3 = 1.5; at 6: 16 + 14 = 30, + 3 * 2 = 36,
// + 1.5 * 8 / 6 = 38.
TEST(TaylorOrders, KnownValuesOnUnevenSteps) {
  EXPECT_NEAR(forecast(2, {0, 1, 3}, square, 5), 20.0, 1e-12);
  EXPECT_NEAR(forecast(3, {0, 1, 3}, square, 5), 20.0, 1e-12);
  EXPECT_NEAR(forecast(2, {0, 1, 3, 4}, square, 6), 36.0, 1e-12);
  EXPECT_NEAR(forecast(3, {0, 1, 3, 4}, square, 6), 38.0, 1e-12);
  EXPECT_NEAR(forecast(4, {0, 1, 3, 4}, square, 6), 38.0, 1e-12);
  // Order 1 keeps F[p], its own formula: F[r] + (k - r) / (r - p) * (F[r] - F[p]).
  EXPECT_NEAR(forecast(1, {0, 1, 3, 4}, square, 6), 16.0 + 2.0 * 7.0, 1e-12);
  // Before a second computed step there is nothing to extrapolate: plain reuse.
  EXPECT_NEAR(forecast(3, {2}, square, 5), 4.0, 1e-12);
}

TEST(TaylorOrders, CacheKeepsOrderPlusOneTensors) {
  const auto f = at::ones({2, 3, 4}, at::kFloat);
  const int64_t one = f.numel() * 4;
  for (int order = 2; order <= eoc::kMaxTaylorOrder; ++order) {
    FeatureCache cache(1, eoc::History{false, order});
    for (int64_t k = 0; k < 8; ++k) {
      cache.store(k, 0, Branch::mlp, f * static_cast<double>(k));
      const int64_t derivatives = std::min<int64_t>(order, k);
      EXPECT_EQ(cache.get(0, Branch::mlp).derivatives.size(), static_cast<size_t>(derivatives));
      EXPECT_EQ(cache.bytes(), (1 + derivatives) * one) << order << " after step " << k;
      EXPECT_FALSE(cache.get(0, Branch::mlp).previous.defined());
    }
  }
  FeatureCache plain(1, eoc::History{});
  plain.store(0, 0, Branch::attn, f);
  plain.store(1, 0, Branch::attn, f);
  EXPECT_EQ(plain.bytes(), one);
}

TEST(TaylorOrders, NamesAndHistory) {
  EXPECT_EQ(eoc::make_taylor_corrector()->name(), "taylor");
  EXPECT_EQ(eoc::make_taylor_corrector(1)->name(), "taylor");
  EXPECT_TRUE(eoc::make_taylor_corrector(1)->needs_previous());
  for (int order = 2; order <= eoc::kMaxTaylorOrder; ++order) {
    const auto c = eoc::make_taylor_corrector(order);
    EXPECT_EQ(c->name(), "taylor:" + std::to_string(order));
    EXPECT_FALSE(c->needs_previous());
    EXPECT_EQ(c->history().order, order);
  }
}

// The fused CPU pass applies the series with the same float operations, in order; the ATen
// reference formula rounds its own way (an add with alpha), so they agree to rounding.
TEST(TaylorOrders, FusedSeriesMatchesAtenFormula) {
  const int64_t rows = 4, tokens = 5, d = 24;
  const auto gate = at::randn({rows, 6 * d}, at::kFloat).narrow(1, 3 * d, d);
  for (int order = 2; order <= eoc::kMaxTaylorOrder; ++order) {
    const auto corrector = eoc::make_taylor_corrector(order);
    FeatureCache cache(1, corrector->history());
    for (int64_t k : {0, 2, 3, 6, 7}) cache.store(k, 0, Branch::mlp, at::randn({rows, tokens, d}));
    const auto& e = cache.get(0, Branch::mlp);
    ASSERT_EQ(e.derivatives.size(), static_cast<size_t>(order));
    const auto c = corrector->correction(9, 0, Branch::mlp, e);
    ASSERT_EQ(c.series.size(), static_cast<size_t>(order));
    const auto base = at::randn({rows, tokens, d}, at::kFloat);
    const auto want = base + gate.unsqueeze(1) * eoc::corrected_feature(c, e);
    const auto got = eoc::add_gated_terms(base.clone(), {eoc::GatedTerm{gate, c, e}});
    EXPECT_TRUE(at::allclose(got, want, 1e-5, 1e-5)) << order;
    EXPECT_FALSE(at::allclose(got, base + gate.unsqueeze(1) * e.value, 1e-3, 1e-3)) << order;
  }
}

}  // namespace

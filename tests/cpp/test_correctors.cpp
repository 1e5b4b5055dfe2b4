// The plain and Taylor correctors applied to a hand-built cache entry.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "eoc/cache/correctors.hpp"
#include "eoc/cache/feature_cache.hpp"
#include "eoc/cache/gated_update.hpp"
#include "eoc/cache/plan.hpp"
#include "eoc/cache/session.hpp"

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
    e.previous = fp;
    e.prev_step = p;
  }
  return e;
}

TEST(Correctors, PlainReturnsCachedValue) {
  const auto c = eoc::make_plain_corrector();
  EXPECT_EQ(c->name(), "none");
  EXPECT_FALSE(c->needs_previous());
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
  EXPECT_TRUE(c->needs_previous());
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

// FoCa's recursion by hand: one block computed at steps 0, 3 and 6 with features k^2 (0, 9,
// 36); the forecasts are L1 + (d + D) / 2 (d = L1 - L2 over the last two visited steps, D =
// (F[r] - F[p]) / (r - p), D = d before a second computed step, plain L1 with one value).
TEST(Correctors, FocaForecastsRecursivelyFromTheLastTwoValues) {
  const auto foca = eoc::make_foca_corrector();
  EXPECT_EQ(foca->name(), "foca");
  EXPECT_TRUE(foca->recursive());
  eoc::CacheSession s(eoc::CachePlan::computing(7, 1, {0, 3, 6}, "t"), *foca);
  std::vector<float> forecasts;
  for (int64_t k = 0; k < 7; ++k)
    for (Branch b : {Branch::attn, Branch::mlp}) {
      if (s.reuses(k, 0, b)) {
        const auto term = s.reused_term(k, 0, b, at::ones({1, 3}));
        EXPECT_FALSE(term.correction.has_scale() || term.correction.has_trend());
        if (b == Branch::attn) forecasts.push_back(term.entry.value.flatten()[0].item<float>());
      } else {
        s.computed(k, 0, b, at::full({1, 2, 3}, static_cast<float>(k * k)));
      }
    }
  // Step 1: one value (0). Step 2: d = 0, no second computed step: 0. Step 4: L1 = 9 (step 3),
  // L2 = 0 (step 2's forecast), d = 9, D = 9 / 3 = 3: 9 + 6 = 15. Step 5: L1 = 15, L2 = 9,
  // d = 6, D = 3: 15 + 4.5 = 19.5.
  EXPECT_EQ(forecasts, (std::vector<float>{0, 0, 15, 19.5}));
}

// The fused CPU path of the hook against the ATen formula, for every coefficient kind; the
// gate is a column slice of a wider tensor, as the adaLN chunks are.
TEST(Correctors, FusedGatedAddMatchesAtenFormula) {
  const int64_t rows = 4, tokens = 5, d = 24;
  const auto fr = at::randn({rows, tokens, d}, at::kFloat);
  const auto fp = at::randn({rows, tokens, d}, at::kFloat);
  const auto gate = at::randn({rows, 6 * d}, at::kFloat).narrow(1, 2 * d, d);
  const auto vec = at::rand({2, 1, 1, d}, at::kFloat) + 0.5;
  CachedFeature e;
  e.value = fr;
  e.previous = fp;
  e.step = 3;
  e.prev_step = 1;
  std::vector<eoc::Correction> cases(5);
  cases[1].scale = 1.25;
  cases[2].scale_vec = vec;
  cases[3].trend = 0.5;
  cases[4].trend_vec = vec;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto base = at::randn({rows, tokens, d}, at::kFloat);
    const auto want = base + gate.unsqueeze(1) * eoc::corrected_feature(cases[i], e);
    const auto got = eoc::add_gated_terms(base.clone(), {eoc::GatedTerm{gate, cases[i], e}});
    EXPECT_TRUE(at::allclose(got, want, 1e-6, 1e-6)) << i;
    if (i == 0) EXPECT_TRUE(at::equal(got, want));  // plain reuse: the same two roundings
  }
  // Other dtypes take the ATen path.
  const auto base = at::randn({rows, tokens, d}, at::kDouble);
  CachedFeature ed{fr.to(at::kDouble), fp.to(at::kDouble), 3, 1};
  const auto got = eoc::add_gated_terms(base, {eoc::GatedTerm{gate.to(at::kDouble), cases[3], ed}});
  EXPECT_TRUE(at::allclose(
      got, base + gate.to(at::kDouble).unsqueeze(1) * eoc::corrected_feature(cases[3], ed)));
}

// Several pending terms in one pass equal adding them one at a time: bit for bit for plain
// reuse and computed branches (same roundings in the same order), to rounding with corrections.
// Terms come from different gate columns, as the attn and mlp gates of consecutive blocks do.
TEST(Correctors, GatedTermsInOnePassEqualTermByTerm) {
  const int64_t rows = 4, tokens = 5, d = 24;
  const auto gates = at::randn({rows, 6 * d}, at::kFloat);
  std::vector<eoc::GatedTerm> plain, corrected;
  for (int64_t k = 0; k < 4; ++k) {
    CachedFeature e;
    e.value = at::randn({rows, tokens, d}, at::kFloat);
    e.previous = at::randn({rows, tokens, d}, at::kFloat);
    e.step = 3;
    e.prev_step = 1;
    const auto gate = gates.narrow(1, k * d, d);
    plain.push_back(eoc::GatedTerm{gate, eoc::Correction{}, e});
    eoc::Correction c;
    if (k == 1) c.scale = 0.75;
    if (k == 2) c.trend_vec = at::rand({2, 1, 1, d}, at::kFloat);
    if (k == 3) c.trend = 0.5;
    corrected.push_back(eoc::GatedTerm{gate, c, e});
  }
  const auto base = at::randn({rows, tokens, d}, at::kFloat);
  auto want_plain = base.clone();
  auto want_corrected = base.clone();
  for (size_t k = 0; k < plain.size(); ++k) {
    want_plain = want_plain + plain[k].gate.unsqueeze(1) * plain[k].entry.value;
    want_corrected =
        want_corrected + corrected[k].gate.unsqueeze(1) *
                             eoc::corrected_feature(corrected[k].correction, corrected[k].entry);
  }
  EXPECT_TRUE(at::equal(eoc::add_gated_terms(base.clone(), plain), want_plain));
  EXPECT_TRUE(
      at::allclose(eoc::add_gated_terms(base.clone(), corrected), want_corrected, 1e-5, 1e-5));
  EXPECT_TRUE(at::equal(eoc::add_gated_terms(base.clone(), {}), base));
  // Tokens in the embedding's layout, (rows, D, T) viewed as (rows, T, D), take the one pass
  // too: the same values, returned contiguous (the ATen path would keep the transposed layout),
  // and the caller's tensor left as it was.
  const auto transposed = base.transpose(1, 2).contiguous().transpose(1, 2);
  ASSERT_FALSE(transposed.is_contiguous());
  const auto kept = transposed.clone();
  const auto from_transposed = eoc::add_gated_terms(transposed, plain);
  EXPECT_TRUE(from_transposed.is_contiguous());
  EXPECT_TRUE(at::equal(from_transposed, want_plain));
  EXPECT_TRUE(at::equal(transposed, kept));
  // A term the fused loop cannot take (double features) sends every term through ATen.
  auto mixed = plain;
  mixed[2].entry.value = mixed[2].entry.value.to(at::kDouble);
  const auto got = eoc::add_gated_terms(base.clone(), mixed);
  EXPECT_TRUE(at::allclose(got.to(at::kFloat), want_plain, 1e-5, 1e-5));
}

// bf16 (and CUDA) take the ATen path: one addcmul per term, the later ones in place on the
// tensor the first one made. The sum must still be the float formula's to bf16 rounding, every
// term counted once, and the caller's tokens (shared with the model's other uses) unchanged.
TEST(Correctors, GatedTermsInReducedPrecisionMatchTheFormula) {
  const int64_t rows = 4, tokens = 5, d = 24;
  const auto gates = at::randn({rows, 6 * d}, at::kFloat);
  std::vector<eoc::GatedTerm> terms;
  const auto base = at::randn({rows, tokens, d}, at::kFloat).to(at::kBFloat16);
  auto want = base.to(at::kFloat);
  for (int64_t k = 0; k < 4; ++k) {
    CachedFeature e;
    e.value = at::randn({rows, tokens, d}, at::kFloat).to(at::kBFloat16);
    e.previous = at::randn({rows, tokens, d}, at::kFloat).to(at::kBFloat16);
    e.step = 3;
    e.prev_step = 1;
    eoc::Correction c;
    if (k == 3) c.trend = 0.5;
    const auto gate = gates.narrow(1, k * d, d).to(at::kBFloat16);
    terms.push_back(eoc::GatedTerm{gate, c, e});
    const auto f = e.value.to(at::kFloat);
    const auto f_hat = k == 3 ? f + 0.5 * (f - e.previous.to(at::kFloat)) : f;
    want = want + gate.to(at::kFloat).unsqueeze(1) * f_hat;
  }
  const auto kept = base.clone();
  const auto got = eoc::add_gated_terms(base, terms);
  EXPECT_EQ(got.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(base, kept));
  // bf16 keeps 8 bits of mantissa: a few roundings of sums of order 10.
  EXPECT_LT((got.to(at::kFloat) - want).abs().max().item<double>(), 0.25);
}

}  // namespace

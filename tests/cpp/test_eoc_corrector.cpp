// The EOC corrector (cache/eoc_corrector.hpp): each form's coefficients from a prior, per CFG
// half, at each step's strength and order.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <memory>

#include "eoc/base/error.hpp"
#include "eoc/cache/eoc_corrector.hpp"
#include "eoc/cache/feature_cache.hpp"
#include "eoc_prior_fixture.hpp"

namespace {

using eoc::Branch;
using eoc::CachedFeature;
using eoc::EocForm;
using eoc::EocPrior;
using eoc_test::kD;
using eoc_test::vec;

// The EOC corrector of a prior, for a run with (halves 2) or without (1) guidance.
std::unique_ptr<eoc::EocCorrector> corrector_of(const EocPrior& p, int64_t halves = 2) {
  return std::make_unique<eoc::EocCorrector>(p, halves, at::kCPU, at::kFloat);
}

// A cache entry over the doubled CFG batch: B = 2 -> 4 rows, T = 3 tokens, D = 4.
CachedFeature cfg_entry(int64_t r, int64_t p) {
  CachedFeature e;
  e.value = at::linspace(-2.0, 3.0, 4 * 3 * kD, at::kFloat).reshape({4, 3, kD});
  e.step = r;
  if (p >= 0) {
    e.previous = e.value - at::linspace(0.7, -0.4, 4 * 3 * kD, at::kFloat).reshape({4, 3, kD});
    e.prev_step = p;
  }
  return e;
}

TEST(EocCorrector, ZeroThetaReturnsCachedValueExactly) {
  auto p = eoc_test::sample_eoc_prior();
  p.step_theta = {0.0, 0.0, 0.0};
  for (auto form : {EocForm::scale, EocForm::extrapolate, EocForm::taylor}) {
    p.form = form;
    const auto c = corrector_of(p);
    EXPECT_EQ(c->name(), "eoc");
    const auto e = cfg_entry(0, form == EocForm::scale ? -1 : 0);
    const auto out = c->correct(1, 0, Branch::attn, e);
    EXPECT_TRUE(at::equal(out, e.value));
    EXPECT_EQ(out.data_ptr(), e.value.data_ptr());
  }
}

TEST(EocCorrector, ScaleMultipliesEachHalfPerChannel) {
  auto p = eoc_test::sample_eoc_prior();  // theta 1 at step 1; cfg 4 -> two halves
  const auto c = corrector_of(p);
  EXPECT_FALSE(c->needs_previous());
  const auto e = cfg_entry(0, -1);
  const auto out = c->correct(1, 0, Branch::attn, e);
  ASSERT_EQ(out.sizes(), e.value.sizes());
  const auto E = p.vectors.at({1, 0, 0});
  const auto v = e.value.accessor<float, 3>();
  const auto out_c = out.contiguous();
  const auto o = out_c.accessor<float, 3>();
  const auto ea = E.accessor<float, 2>();
  for (int64_t row = 0; row < 4; ++row)
    for (int64_t t = 0; t < 3; ++t)
      for (int64_t d = 0; d < kD; ++d) {
        const int64_t half = row < 2 ? 0 : 1;  // [0, B) conditional, [B, 2B) unconditional
        const double expected = static_cast<double>(v[row][t][d]) * (1.0 + ea[half][d]);
        EXPECT_NEAR(o[row][t][d], expected, 1e-5 * std::max(1.0, std::fabs(expected)))
            << row << " " << t << " " << d;
      }
  // The other (block, branch) with a vector uses its own coefficients; keys without one stay plain.
  const auto out_mlp1 = c->correct(1, 1, Branch::mlp, e);
  const auto F = p.vectors.at({1, 1, 1});
  EXPECT_TRUE(at::allclose(out_mlp1.narrow(0, 2, 2),
                           e.value.narrow(0, 2, 2) * (1 + F[1]).view({1, 1, kD})));
  EXPECT_TRUE(at::equal(c->correct(1, 1, Branch::attn, e), e.value));
  // Steps with theta 0 are plain.
  EXPECT_TRUE(at::equal(c->correct(2, 0, Branch::attn, e), e.value));
}

TEST(EocCorrector, ScaleWithPartialTheta) {
  auto p = eoc_test::sample_eoc_prior();
  p.step_theta = {0.0, 0.5, 0.0};
  const auto c = corrector_of(p);
  const auto e = cfg_entry(0, -1);
  const auto E = p.vectors.at({1, 1, 1});
  const auto out = c->correct(1, 1, Branch::mlp, e);
  const auto expected = at::cat({e.value.narrow(0, 0, 2) * (1 + 0.5 * E[0]).view({1, 1, kD}),
                                 e.value.narrow(0, 2, 2) * (1 + 0.5 * E[1]).view({1, 1, kD})});
  EXPECT_TRUE(at::allclose(out, expected, 1e-5, 1e-6));
}

TEST(EocCorrector, ScaleWithoutCfgUsesConditionalRow) {
  auto p = eoc_test::sample_eoc_prior();
  // Without guidance the batch is not doubled: every row is "conditional".
  const auto c = corrector_of(p, 1);
  const auto e = cfg_entry(0, -1);
  const auto E = p.vectors.at({1, 1, 1});
  const auto out = c->correct(1, 1, Branch::mlp, e);
  EXPECT_TRUE(at::allclose(out, e.value * (1 + E[0]).view({1, 1, kD}), 1e-5, 1e-6));
}

TEST(EocCorrector, ExtrapolateAddsThetaWDelta) {
  auto p = eoc_test::sample_eoc_prior();
  p.form = EocForm::extrapolate;
  p.step_theta = {0.0, 0.75, 0.0};
  const auto c = corrector_of(p);
  EXPECT_TRUE(c->needs_previous());
  const auto e = cfg_entry(0, -1);
  const auto with_delta = [&] {
    auto x = cfg_entry(0, -1);
    x.previous = x.value - at::linspace(0.7, -0.4, 4 * 3 * kD, at::kFloat).reshape({4, 3, kD});
    x.prev_step = 0;
    x.step = 0;
    return x;
  }();
  const auto W = p.vectors.at({1, 0, 0});
  const auto out = c->correct(1, 0, Branch::attn, with_delta);
  const auto expected = at::cat(
      {with_delta.value.narrow(0, 0, 2) +
           0.75 * W[0].view({1, 1, kD}) * (with_delta.value - with_delta.previous).narrow(0, 0, 2),
       with_delta.value.narrow(0, 2, 2) +
           0.75 * W[1].view({1, 1, kD}) *
               (with_delta.value - with_delta.previous).narrow(0, 2, 2)});
  EXPECT_TRUE(at::allclose(out, expected, 1e-5, 1e-5));
  // No previous value yet: plain.
  EXPECT_TRUE(at::equal(c->correct(1, 0, Branch::attn, e), e.value));
}

TEST(EocCorrector, SetStepThetaRescales) {
  auto p = eoc_test::sample_eoc_prior();  // scale form, theta 1 at step 1
  eoc::EocCorrector c(p, 2, at::kCPU, at::kFloat);
  EXPECT_EQ(c.step_theta(1), 1.0);
  const auto e = cfg_entry(0, -1);
  const auto E = p.vectors.at({1, 0, 0});
  c.set_step_theta(1, 0.25);
  EXPECT_EQ(c.step_theta(1), 0.25);
  const auto expected = at::cat({e.value.narrow(0, 0, 2) * (1 + 0.25 * E[0]).view({1, 1, kD}),
                                 e.value.narrow(0, 2, 2) * (1 + 0.25 * E[1]).view({1, 1, kD})});
  EXPECT_TRUE(at::allclose(c.correct(1, 0, Branch::attn, e), expected, 1e-5, 1e-6));
  // Turning a plain step on uses the vectors of that step only.
  c.set_step_theta(1, 0.0);
  EXPECT_TRUE(at::equal(c.correct(1, 0, Branch::attn, e), e.value));
  c.set_step_theta(2, 1.0);  // step 2 has no vectors: plain
  EXPECT_TRUE(at::equal(c.correct(2, 0, Branch::attn, e), e.value));
}

// Orders above 1: the corrector keeps derivative estimates up to the highest order used and
// forecasts each step with theta times the Taylor series of that step's order.
// The sample prior in the taylor form (which has no vectors).
EocPrior taylor_prior() {
  auto p = eoc_test::sample_eoc_prior();
  p.form = EocForm::taylor;
  p.vectors.clear();
  return p;
}

TEST(EocCorrector, TaylorOrdersScaleTheSeries) {
  auto p = taylor_prior();
  p.step_theta = {0.0, 0.5, 2.0};
  p.step_order = {0, 1, 3};
  const auto c = corrector_of(p);
  EXPECT_EQ(c->history().order, 3);
  EXPECT_FALSE(c->history().previous);
  CachedFeature e = cfg_entry(0, -1);
  e.derivatives = {at::full_like(e.value, 1.0), at::full_like(e.value, 10.0),
                   at::full_like(e.value, 100.0)};
  // Step 2 from r = 0: dt = 2, order 3: F + 2 (2 D1 + 2 D2 + 4/3 D3).
  const auto at2 = c->correct(2, 0, Branch::mlp, e);
  EXPECT_TRUE(at::allclose(at2, e.value + 2.0 * (2.0 + 20.0 + 400.0 / 3.0), 1e-5, 1e-4));
  // Step 1 is order 1 (series of D1 only): F + 0.5 * 1 * D1.
  EXPECT_TRUE(at::allclose(c->correct(1, 0, Branch::mlp, e), e.value + 0.5, 1e-6, 1e-6));
  // Fewer estimates than the order (early steps): the series stops where they do.
  e.derivatives.resize(1);
  EXPECT_TRUE(at::allclose(c->correct(2, 0, Branch::mlp, e), e.value + 2.0 * 2.0, 1e-6, 1e-6));
  // Calibration may lower a step's order within what the cache keeps, not raise it above.
  c->set_step(2, 1.0, 2);
  EXPECT_EQ(c->step_order(2), 2);
  EXPECT_THROW(c->set_step(2, 1.0, 4), eoc::InternalError);
}

// A taylor prior of order 1 keeps F[p] and its first-order formula (as before orders existed).
TEST(EocCorrector, TaylorOrderOneKeepsThePreviousValue) {
  auto p = taylor_prior();
  p.step_order = {0, 1, 0};
  const auto c = corrector_of(p);
  EXPECT_TRUE(c->history().previous);
  EXPECT_EQ(c->history().order, 0);
}

TEST(EocCorrector, TaylorScalesTheForecast) {
  auto p = taylor_prior();
  p.step_theta = {0.0, 0.0, 2.0};
  const auto c = corrector_of(p);
  // r = 1, p = 0 (say steps 1 and 0 computed), k = 2: tau = 1.
  CachedFeature e = cfg_entry(1, 0);
  const auto out = c->correct(2, 0, Branch::mlp, e);
  EXPECT_TRUE(at::allclose(out, e.value + 2.0 * 1.0 * (e.value - e.previous), 1e-5, 1e-6));
}

}  // namespace

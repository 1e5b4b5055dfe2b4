// Run-time gates (cache/gate.hpp): each rule's decisions on hand-made signal sequences, its
// guards, and the spec's text and parsing; a gated session's per-image bookkeeping with the
// block loop's questions asked by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "eoc/cache/correctors.hpp"
#include "eoc/cache/gate.hpp"
#include "eoc/cache/plan.hpp"
#include "eoc/cache/session.hpp"
#include "test_util.hpp"

namespace {

using eoc::GateSpec;
using eoc::ImageGate;
using Rule = GateSpec::Rule;

GateSpec spec(Rule rule, double threshold) {
  GateSpec g;
  g.rule = rule;
  g.threshold = threshold;
  return g;
}

// The decision string of a gate fed `signals` (step k gets signals[k]).
std::string decide(const GateSpec& g, const std::vector<std::optional<double>>& signals,
                   std::optional<double> k = std::nullopt) {
  ImageGate gate(g, static_cast<int64_t>(signals.size()));
  if (k) gate.set_k(*k);
  std::string out;
  for (size_t s = 0; s < signals.size(); ++s)
    out += gate.reuse(static_cast<int64_t>(s), signals[s]) ? 'r' : 'c';
  EXPECT_EQ(out, gate.decisions());
  return out;
}

TEST(Gate, TeaCacheAccumulatesUntilTheThresholdThenComputesAndResets) {
  // Sums after step 0: 0.1, 0.2, 0.3 (>= 0.25: compute, reset), 0.1, 0.2, then the last step.
  EXPECT_EQ(decide(spec(Rule::teacache, 0.25), {std::nullopt, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}),
            "crrcrrc");
  // A large change computes at once; exactly the threshold computes (reuse while below).
  EXPECT_EQ(decide(spec(Rule::teacache, 0.25), {0.0, 0.5, 0.25, 0.1, 0.0}), "cccrc");
}

TEST(Gate, FbCacheComparesEachStepAloneWithNoSum) {
  // Each signal against the threshold by itself: 0.1 < 0.15 reuses however many come in a row.
  EXPECT_EQ(decide(spec(Rule::fbcache, 0.15), {std::nullopt, 0.1, 0.1, 0.1, 0.2, 0.1, 0.1}),
            "crrrcrc");
}

TEST(Gate, EasyCacheNeedsItsRatioAndAccumulatesThePredictedChange) {
  // No k yet: every step computes.
  EXPECT_EQ(decide(spec(Rule::easycache, 0.3), {0.1, 0.1, 0.1, 0.1}), "cccc");
  // k = 2: predicted changes 0.2 each: sums 0.2, 0.4 (compute, reset), 0.2, ...
  EXPECT_EQ(decide(spec(Rule::easycache, 0.3), {0.1, 0.1, 0.1, 0.1, 0.1, 0.1}, 2.0), "crcrcc");
  ImageGate g(spec(Rule::easycache, 0.3), 3);
  g.set_k(2.0);
  g.reuse(0, 0.1);
  g.reuse(1, 0.1);
  EXPECT_EQ(g.signals(), (std::vector<double>{0.2}));  // the predicted change, not the input's
}

TEST(Gate, GuardsForceComputedSteps) {
  const std::vector<std::optional<double>> calm(10, 0.0);
  auto g = spec(Rule::fbcache, 0.5);
  EXPECT_EQ(decide(g, calm), "crrrrrrrrc");  // first and last always computed
  g.warmup = 3;
  EXPECT_EQ(decide(g, calm), "cccrrrrrrc");
  g.warmup = 1;
  g.max_run = 2;
  EXPECT_EQ(decide(g, calm), "crrcrrcrrc");
  g.max_run.reset();
  g.max_total = 3;
  EXPECT_EQ(decide(g, calm), "crrrcccccc");
  // An unknown signal computes.
  EXPECT_EQ(decide(spec(Rule::teacache, 1.0), {0.0, std::nullopt, 0.0, 0.0}), "ccrc");
}

TEST(Gate, CountsAndSignals) {
  ImageGate g(spec(Rule::teacache, 0.25), 5);
  for (int64_t k = 0; k < 5; ++k) g.reuse(k, k == 0 ? std::nullopt : std::optional<double>(0.1));
  EXPECT_EQ(g.computed_steps(), 3);
  EXPECT_EQ(g.reused_steps(), 2);
  // Forced steps (the first and the last) show no signal.
  EXPECT_EQ(g.signals(), (std::vector<double>{0.1, 0.1, 0.1}));
}

TEST(GateSpec, TextAndParseRoundTrip) {
  for (const std::string text :
       {"teacache:0.1", "fbcache:0.08,fn=2,bn=1", "easycache:0.2,warmup=3,max-run=2,max-total=5"}) {
    const auto g = GateSpec::parse(text);
    ASSERT_TRUE(g) << text;
    EXPECT_EQ(g->text(), text);
  }
  const auto fb = *GateSpec::parse("fbcache:0.1");
  EXPECT_EQ(fb.first_blocks, 1);
  EXPECT_EQ(fb.last_blocks, 0);
  EXPECT_EQ(fb.first_gated_block(), 1);
  EXPECT_EQ(fb.end_gated_block(6), 6);
  EXPECT_EQ(GateSpec::parse("fbcache:0.1,fn=2,bn=1")->end_gated_block(6), 5);
  EXPECT_EQ(GateSpec::parse("teacache:0.1")->first_gated_block(), 0);
  EXPECT_FALSE(GateSpec::parse("fora:3"));
  EXPECT_FALSE(GateSpec::parse("none"));
}

TEST(GateSpec, BadSpecsSayWhat) {
  using eoc_test::error_message;
  EXPECT_NE(error_message([] { GateSpec::parse("teacache:abc"); }).find("threshold"),
            std::string::npos);
  EXPECT_NE(error_message([] { GateSpec::parse("teacache:-1"); }).find("threshold"),
            std::string::npos);
  EXPECT_NE(error_message([] { GateSpec::parse("teacache"); }).find("teacache:THRESHOLD"),
            std::string::npos);
  EXPECT_NE(error_message([] { GateSpec::parse("teacache:0.1,fn=2"); }).find("fn=2"),
            std::string::npos);  // fn is fbcache's
  EXPECT_NE(error_message([] { GateSpec::parse("fbcache:0.1,fn=0"); }).find("fn >= 1"),
            std::string::npos);
  EXPECT_NE(error_message([] { GateSpec::parse("easycache:0.1,max-run=x"); }).find("KEY=N"),
            std::string::npos);
  EXPECT_NE(error_message([] { GateSpec::parse("easycache:0.1,warmup=0"); }).find("warmup"),
            std::string::npos);
}

TEST(Gate, TeaCacheAccumulatesTheRescaledSignal) {
  // p(d) = 2 d^2 + 0.05 (d in 0.1 steps -> 0.07 each); a negative value adds nothing.
  auto g = spec(Rule::teacache, 0.2);
  g.rescale = {0.0, 0.0, 2.0, 0.0, 0.05};
  // Sums: 0.07, 0.14, 0.21 (>= 0.2: compute, reset), 0.07, then the last step.
  EXPECT_EQ(decide(g, {std::nullopt, 0.1, 0.1, 0.1, 0.1, 0.1}), "crrcrc");
  // Unrescaled the same sequence reuses more (0.1, 0.2 computes, 0.1, ...): "crcrcc".
  EXPECT_EQ(decide(spec(Rule::teacache, 0.2), {std::nullopt, 0.1, 0.1, 0.1, 0.1, 0.1}), "crcrcc");
  // p(d) = d - 0.5 is negative below 0.5: those steps add 0 and never pay back a large one.
  g.rescale = {0.0, 0.0, 0.0, 1.0, -0.5};
  g.threshold = 0.3;
  EXPECT_EQ(decide(g, {std::nullopt, 0.7, 0.0, 0.0, 0.7, 0.0}), "crrrcc");
  ImageGate gate(g, 4);
  for (int64_t k = 0; k < 4; ++k) gate.reuse(k, k == 0 ? std::nullopt : std::optional<double>(0.7));
  EXPECT_EQ(gate.decisions(), "crcc");
  // signals() holds what was accumulated (rescaled), step_signals() what was measured.
  ASSERT_EQ(gate.signals().size(), 2u);
  EXPECT_NEAR(gate.signals()[0], 0.2, 1e-15);
  ASSERT_EQ(gate.step_signals().size(), 4u);
  EXPECT_TRUE(std::isnan(gate.step_signals()[0]));
  EXPECT_EQ(gate.step_signals()[3], 0.7);  // forced steps too
  EXPECT_EQ(g.rescaled(0.2), 0.0);
  EXPECT_DOUBLE_EQ(g.rescaled(0.75), 0.25);
  EXPECT_EQ(spec(Rule::teacache, 1.0).rescaled(0.123), 0.123);
}

TEST(GateSpec, RescaleRoundTripsExactly) {
  auto g = spec(Rule::teacache, 0.1 + 0.2);  // 0.30000000000000004
  g.rescale = {-1.0 / 3.0, 12345.678901234567, 0.0, -2.5e-7, 1.0 / 7.0};
  g.max_run = 3;
  const auto back = GateSpec::parse(g.text());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->threshold, g.threshold);
  EXPECT_EQ(back->rescale, g.rescale);  // bit for bit
  EXPECT_EQ(back->max_run, g.max_run);
  EXPECT_EQ(back->text(), g.text());
  const std::string text = "teacache:0.3,warmup=2,poly=1/-2/0.5/3e-05/0";
  EXPECT_EQ(GateSpec::parse(text)->text(), text);
  EXPECT_EQ(GateSpec::parse(text)->rescale, (std::vector<double>{1, -2, 0.5, 3e-5, 0}));
  EXPECT_TRUE(GateSpec::parse("teacache:0.3")->rescale.empty());
}

TEST(GateSpec, BadRescaleSaysWhat) {
  using eoc_test::error_message;
  auto says = [](const std::string& text, const std::string& words) {
    const auto m = error_message([&] { GateSpec::parse(text); });
    EXPECT_NE(m.find(words), std::string::npos) << text << ": " << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  };
  says("fbcache:0.1,poly=1/2/3/4/5", "teacache only");
  says("easycache:0.1,poly=1/2/3/4/5", "teacache only");
  says("teacache:0.1,poly=1/2/3/4", "has 4 coefficients");
  says("teacache:0.1,poly=1/2/3/4/5/6", "has 6 coefficients");
  says("teacache:0.1,poly=1/2/x/4/5", "'x'");
  says("teacache:0.1,poly=1/2//4/5", "is not a number");
  says("teacache:0.1,poly=1/2/3/4/inf", "'inf'");
  says("teacache:0.1,poly=1/2/3/4/5,poly=1/2/3/4/5", "two rescale");
}

TEST(PolynomialFit, RecoversAnExactPolynomial) {
  // TeaCache-like coefficients on d in [0.02, 0.4]: the fit recovers them to rounding.
  const std::vector<double> want{498.651651, -283.781631, 55.8554382, -3.82021401, 0.264230861};
  std::vector<double> x, y;
  for (int i = 0; i < 60; ++i) {
    x.push_back(0.02 + 0.38 * i / 59.0);
    y.push_back(eoc::polynomial_value(want, x.back()));
  }
  const auto fit = eoc::fit_polynomial(x, y, 4);
  ASSERT_EQ(fit.coefficients.size(), 5u);
  for (size_t i = 0; i < 5; ++i)
    EXPECT_NEAR(fit.coefficients[i], want[i], 1e-7 * std::abs(want[i])) << i;
  EXPECT_LT(fit.rms_residual, 1e-10);
  EXPECT_NEAR(fit.r2, 1.0, 1e-12);
}

TEST(PolynomialFit, LeastSquaresOnNoisyData) {
  // A line through symmetric noise: the fitted line is the true one (the noise is orthogonal
  // to 1 and x), R^2 < 1, and the residual is the noise's.
  std::vector<double> x, y;
  for (int i = 0; i < 10; ++i)
    for (double e : {-0.1, 0.1}) {
      x.push_back(i);
      y.push_back(2.0 * i + 1.0 + e);
    }
  const auto fit = eoc::fit_polynomial(x, y, 1);
  EXPECT_NEAR(fit.coefficients[0], 2.0, 1e-12);
  EXPECT_NEAR(fit.coefficients[1], 1.0, 1e-12);
  EXPECT_NEAR(fit.rms_residual, 0.1, 1e-12);
  EXPECT_LT(fit.r2, 1.0);
  EXPECT_GT(fit.r2, 0.99);
  using eoc_test::error_message;
  EXPECT_NE(error_message([] {
              eoc::fit_polynomial({1, 1, 2, 2}, {1, 2, 3, 4}, 2);
            }).find("3 distinct x"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              eoc::fit_polynomial({1, 2, NAN}, {1, 2, 3}, 1);
            }).find("non-finite"),
            std::string::npos);
}

TEST(Gate, RelativeL1) {
  EXPECT_DOUBLE_EQ(eoc::relative_l1(1.0, 4.0), 0.25);
  EXPECT_DOUBLE_EQ(eoc::relative_l1(1.0, 0.0), 0.0);
}

// A gated session: two images (one row each), a 2-block teacache plan; the loop's questions
// asked by hand with hand-made tokens, so that image 0 is calm (reuses) and image 1 moves.
TEST(GatedSession, DecidesPerImageAndCachesEachImageApart) {
  const int64_t steps = 4, depth = 2;
  auto g = spec(Rule::teacache, 0.05);
  eoc::CacheSession s(eoc::CachePlan::gated(steps, depth, g), eoc::plain_corrector());
  ASSERT_TRUE(s.gated());
  for (int64_t k = 0; k < steps; ++k) {
    s.begin_step(k, 2, 1);
    // Tokens (2 rows, T 2, D 4): image 0 fixed, image 1 changes every step.
    auto tokens =
        at::tensor({0.f, 1.f, 2.f, 3.f, 3.f, 2.f, 1.f, 0.f}).reshape({1, 2, 4}).repeat({2, 1, 1});
    tokens[1][0][k] += 10.f;  // a spike that moves: a large change at every step
    s.decide(k, {at::zeros({2, 1, 2, 2}), tokens, tokens, at::zeros({2, 4}), at::zeros({2, 4})});
    const auto split = s.split(k, 0);
    if (k == 0 || k == steps - 1) {
      EXPECT_EQ(split.compute, (std::vector<int64_t>{0, 1}));
    } else {
      EXPECT_EQ(split.compute, (std::vector<int64_t>{1})) << k;
      EXPECT_EQ(split.reuse, (std::vector<int64_t>{0})) << k;
    }
    for (int64_t l = 0; l < depth; ++l)
      for (auto b : {eoc::Branch::attn, eoc::Branch::mlp}) {
        const auto sp = s.split(k, l);
        // Branch output: image i's row holds 100 i + 10 k + block.
        std::vector<float> vals;
        for (int64_t i : sp.compute) vals.push_back(static_cast<float>(100 * i + 10 * k + l));
        if (!sp.compute.empty()) {
          const auto f = at::tensor(vals).reshape({-1, 1, 1}).expand({-1, 2, 4}).contiguous();
          s.computed_images(k, l, b, sp.compute, f);
        }
        if (!sp.reuse.empty()) {
          auto r = at::full({2, 2, 4}, -1.f);
          s.forecast_images(k, l, b, sp.reuse, r);
          EXPECT_EQ(r[0][0][0].item<float>(), static_cast<float>(l));  // image 0, step 0's value
          EXPECT_EQ(r[1][0][0].item<float>(), -1.f);                   // image 1's row untouched
        }
      }
    s.step_output(k, at::zeros({2, 1, 2, 2}), at::zeros({2, 1, 2, 2}));
  }
  const auto st = s.stats();
  EXPECT_EQ(st.image_decisions, (std::vector<std::string>{"crrc", "cccc"}));
  EXPECT_EQ(st.image_reused_steps, (std::vector<int64_t>{2, 0}));
  EXPECT_EQ(st.image_computed_fraction, (std::vector<double>{0.5, 1.0}));
  // Image-branches: 4 per image and step when computed.
  EXPECT_EQ(st.computed, (std::vector<int64_t>{8, 4, 4, 8}));
  EXPECT_EQ(st.reused, (std::vector<int64_t>{0, 4, 4, 0}));
  EXPECT_EQ(s.rows_of({1}, at::kCPU).item<int64_t>(), 1);
}

TEST(GatedSession, RowsOfKeepTheBatchsHalfMajorOrder) {
  eoc::CacheSession s(eoc::CachePlan::gated(2, 2, spec(Rule::teacache, 0.1)),
                      eoc::plain_corrector());
  s.begin_step(0, 3, 2);  // 3 images, CFG: rows i and 3 + i
  const auto rows = s.rows_of({0, 2}, at::kCPU);
  EXPECT_EQ(std::vector<int64_t>(rows.data_ptr<int64_t>(), rows.data_ptr<int64_t>() + 4),
            (std::vector<int64_t>{0, 2, 3, 5}));
}

}  // namespace

namespace {

// A synthetic gate: the computed fraction falls in steps of 1/20 as the threshold grows.
eoc::GateTrial synthetic(double threshold) {
  const double f = std::max(0.1, 1.0 - std::floor(20.0 * std::log1p(10.0 * threshold)) / 20.0);
  return {threshold, f, 1.0 - f};
}

TEST(GateSearch, FindsTheThresholdNearestTheTarget) {
  int calls = 0;
  const auto trials = eoc::search_gate_threshold(
      [&](double t) {
        ++calls;
        return synthetic(t);
      },
      0.4, 0.025);
  EXPECT_EQ(static_cast<int>(trials.size()), calls);
  const auto& best = eoc::nearest_trial(trials, 0.4);
  EXPECT_NEAR(best.computed, 0.4, 0.025);
  EXPECT_NEAR(synthetic(best.threshold).computed, best.computed, 0);
  EXPECT_LE(calls, 24);
}

TEST(GateSearch, SaysWhenNoThresholdReachesTheTarget) {
  const auto message = eoc_test::error_message([] {
    eoc::search_gate_threshold([](double t) { return eoc::GateTrial{t, 0.6, 0.0}; }, 0.4, 0.02);
  });
  EXPECT_NE(message.find("no threshold reaches 0.4"), std::string::npos) << message;
}

TEST(GateSearch, NearestPrefersTheLowerErrorOnATie) {
  // 0.5 and 0.25 are equally near 0.375 (exactly, in binary); 0.75 is farther.
  const std::vector<eoc::GateTrial> trials{{0.1, 0.5, 2.0}, {0.2, 0.25, 1.0}, {0.3, 0.75, 0.0}};
  EXPECT_EQ(eoc::nearest_trial(trials, 0.375).threshold, 0.2);
}

}  // namespace

// The IDDPM diffusion process: linear betas, timestep respacing and the derived schedule arrays.
// Expectations are computed here from the definitions in the reference (dit.md), not read back
// from the implementation.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "eoc/base/error.hpp"
#include "eoc/cli/flag_values.hpp"
#include "eoc/diffusion/schedule.hpp"

namespace {

using eoc::Respacing;

// Relative comparison for float64 quantities computed along slightly different paths.
void expect_rel_near(double actual, double expected, double rel, const char* what, int64_t j) {
  const double tol = expected == 0.0 ? rel : rel * std::fabs(expected);
  EXPECT_NEAR(actual, expected, tol) << what << " at index " << j;
}

// abar[t] of the 1000-step base process, computed independently of make_schedule.
std::vector<double> base_alphas_cumprod() {
  const double start = 1e-4, end = 0.02, step = (end - start) / 999.0;
  std::vector<double> abar(1000);
  double prod = 1.0;
  for (int t = 0; t < 1000; ++t) {
    const double beta = t == 999 ? end : t * step + start;
    prod *= 1.0 - beta;
    abar[t] = prod;
  }
  return abar;
}

TEST(LinearBetas, EndpointsAndLinspaceFormula) {
  const auto betas = eoc::linear_betas(1000);
  ASSERT_EQ(betas.size(), 1000u);
  EXPECT_DOUBLE_EQ(betas.front(), 1e-4);
  EXPECT_DOUBLE_EQ(betas.back(), 0.02);
  const double step = (0.02 - 1e-4) / 999.0;
  for (int i : {1, 2, 10, 123, 500, 998}) EXPECT_DOUBLE_EQ(betas[i], i * step + 1e-4) << i;
  for (size_t i = 1; i < betas.size(); ++i) EXPECT_GT(betas[i], betas[i - 1]) << i;
}

TEST(LinearBetas, ScalesWithTrainStepCount) {
  // IDDPM scales the range by 1000 / n: 500 steps run from 2e-4 to 0.04.
  const auto betas = eoc::linear_betas(500);
  ASSERT_EQ(betas.size(), 500u);
  EXPECT_DOUBLE_EQ(betas.front(), 2e-4);
  EXPECT_DOUBLE_EQ(betas.back(), 0.04);
  EXPECT_DOUBLE_EQ(betas[7], 7 * (0.04 - 2e-4) / 499.0 + 2e-4);
}

TEST(RespacedTimesteps, Even250) {
  const auto t = eoc::respaced_timesteps(1000, 250, Respacing::even);
  ASSERT_EQ(t.size(), 250u);
  // round(k * 999 / 249): stride 4.01205..., so the first entries advance by exactly 4.
  const std::vector<int64_t> head = {0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44};
  EXPECT_EQ(std::vector<int64_t>(t.begin(), t.begin() + 12), head);
  // k = 41: 164.48 -> 164; k = 42: 168.506 -> 169 (first 5-step gap); k = 83: exactly 333.
  EXPECT_EQ(t[41], 164);
  EXPECT_EQ(t[42], 169);
  EXPECT_EQ(t[83], 333);
  EXPECT_EQ(t[166], 666);
  EXPECT_EQ(t[248], 995);  // 248 * 999 / 249 = 994.988
  EXPECT_EQ(t.back(), 999);
  for (size_t i = 1; i < t.size(); ++i) EXPECT_GT(t[i], t[i - 1]);
}

TEST(RespacedTimesteps, Even20) {
  // stride 999 / 19 = 52.5789...
  const std::vector<int64_t> expected = {0,   53,  105, 158, 210, 263, 315, 368, 421, 473,
                                         526, 578, 631, 684, 736, 789, 841, 894, 946, 999};
  EXPECT_EQ(eoc::respaced_timesteps(1000, 20, Respacing::even), expected);
}

TEST(RespacedTimesteps, Even3TiesRoundToEven) {
  // 999 / 2 = 499.5 rounds half to even: 500.
  const std::vector<int64_t> expected = {0, 500, 999};
  EXPECT_EQ(eoc::respaced_timesteps(1000, 3, Respacing::even), expected);
}

TEST(RespacedTimesteps, EvenOneAndAll) {
  EXPECT_EQ(eoc::respaced_timesteps(1000, 1, Respacing::even), std::vector<int64_t>{0});
  const auto all = eoc::respaced_timesteps(1000, 1000, Respacing::even);
  ASSERT_EQ(all.size(), 1000u);
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(all[i], i);
}

TEST(RespacedTimesteps, Ddim50) {
  const auto t = eoc::respaced_timesteps(1000, 50, Respacing::ddim);
  ASSERT_EQ(t.size(), 50u);
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(t[i], 20 * i) << i;
  EXPECT_EQ(t.back(), 980);
}

TEST(RespacedTimesteps, Ddim30UsesSmallestExactStride) {
  // len(range(0, 1000, 33)) = 31, len(range(0, 1000, 34)) = 30: stride 34, not 1000 // 30 = 33.
  const auto t = eoc::respaced_timesteps(1000, 30, Respacing::ddim);
  ASSERT_EQ(t.size(), 30u);
  for (int64_t i = 0; i < 30; ++i) EXPECT_EQ(t[i], 34 * i) << i;
  EXPECT_EQ(t.back(), 986);
}

TEST(RespacedTimesteps, Errors) {
  for (auto r : {Respacing::even, Respacing::ddim}) {
    EXPECT_THROW(eoc::respaced_timesteps(1000, 0, r), eoc::Error);
    EXPECT_THROW(eoc::respaced_timesteps(1000, 1001, r), eoc::Error);
    EXPECT_THROW(eoc::respaced_timesteps(1000, -5, r), eoc::Error);
  }
  // No stride gives exactly 999 entries (stride 1 -> 1000, stride 2 -> 500).
  EXPECT_THROW(eoc::respaced_timesteps(1000, 999, Respacing::ddim), eoc::Error);
}

TEST(Respacing, ParseAndName) {
  EXPECT_EQ(eoc::cli::parse_choice("--respacing", "even", eoc::kRespacingNames), Respacing::even);
  EXPECT_EQ(eoc::cli::parse_choice("--respacing", "ddim", eoc::kRespacingNames), Respacing::ddim);
  EXPECT_STREQ(eoc::respacing_name(Respacing::even), "even");
  EXPECT_STREQ(eoc::respacing_name(Respacing::ddim), "ddim");
  EXPECT_THROW(eoc::cli::parse_choice("--respacing", "linear", eoc::kRespacingNames), eoc::Error);
  EXPECT_THROW(eoc::cli::parse_choice("--respacing", "", eoc::kRespacingNames), eoc::Error);
}

TEST(Schedule, FullScheduleEqualsBaseProcess) {
  const auto s = eoc::make_schedule(1000, Respacing::even);
  ASSERT_EQ(s.size(), 1000);
  const auto base_betas = eoc::linear_betas(1000);
  const auto abar = base_alphas_cumprod();
  for (const auto* v :
       {&s.betas, &s.alphas_cumprod, &s.alphas_cumprod_prev, &s.sqrt_recip_alphas_cumprod,
        &s.sqrt_recipm1_alphas_cumprod, &s.posterior_variance, &s.posterior_log_variance_clipped,
        &s.posterior_mean_coef1, &s.posterior_mean_coef2, &s.log_betas})
    ASSERT_EQ(v->size(), 1000u);
  for (int64_t j = 0; j < 1000; ++j) {
    EXPECT_EQ(s.timesteps[j], j);
    expect_rel_near(s.betas[j], base_betas[j], 1e-10, "beta", j);
    expect_rel_near(s.alphas_cumprod[j], abar[j], 1e-12, "alphas_cumprod", j);
    expect_rel_near(s.alphas_cumprod_prev[j], j == 0 ? 1.0 : abar[j - 1], 1e-12,
                    "alphas_cumprod_prev", j);
  }
  EXPECT_DOUBLE_EQ(s.alphas_cumprod_prev[0], 1.0);
}

TEST(Schedule, DerivedCoefficientsFollowDefinitions) {
  const auto s = eoc::make_schedule(1000, Respacing::even);
  for (int64_t j : {0, 1, 2, 250, 500, 998, 999}) {
    const double b = s.betas[j], ab = s.alphas_cumprod[j], prev = s.alphas_cumprod_prev[j];
    // abar = prod(1 - beta) over the kept steps.
    expect_rel_near(ab, prev * (1.0 - b), 1e-12, "abar recursion", j);
    expect_rel_near(s.sqrt_recip_alphas_cumprod[j], std::sqrt(1.0 / ab), 1e-12, "sqrt_recip", j);
    expect_rel_near(s.sqrt_recipm1_alphas_cumprod[j], std::sqrt(1.0 / ab - 1.0), 1e-12,
                    "sqrt_recipm1", j);
    expect_rel_near(s.posterior_variance[j], b * (1.0 - prev) / (1.0 - ab), 1e-12, "post var", j);
    expect_rel_near(s.posterior_mean_coef1[j], b * std::sqrt(prev) / (1.0 - ab), 1e-12, "coef1", j);
    expect_rel_near(s.posterior_mean_coef2[j], (1.0 - prev) * std::sqrt(1.0 - b) / (1.0 - ab),
                    1e-12, "coef2", j);
    expect_rel_near(s.log_betas[j], std::log(b), 1e-12, "log_beta", j);
  }
  // j = 0: abar_prev = 1, so the posterior is a point mass at x0.
  EXPECT_EQ(s.posterior_variance[0], 0.0);
  EXPECT_NEAR(s.posterior_mean_coef1[0], 1.0, 1e-12);
  EXPECT_NEAR(s.posterior_mean_coef2[0], 0.0, 1e-12);
  // The clipped log variance repeats entry 1 at entry 0.
  EXPECT_DOUBLE_EQ(s.posterior_log_variance_clipped[0], std::log(s.posterior_variance[1]));
  for (int64_t j : {1, 2, 500, 999})
    EXPECT_DOUBLE_EQ(s.posterior_log_variance_clipped[j], std::log(s.posterior_variance[j])) << j;
}

TEST(Schedule, RespacedBetasFromKeptCumulativeProducts) {
  const auto s = eoc::make_schedule(10, Respacing::even);
  const std::vector<int64_t> kept = {0, 111, 222, 333, 444, 555, 666, 777, 888, 999};
  ASSERT_EQ(s.timesteps, kept);
  const auto abar = base_alphas_cumprod();
  for (int64_t j = 0; j < 10; ++j) {
    const double prev = j == 0 ? 1.0 : abar[kept[j - 1]];
    expect_rel_near(s.betas[j], 1.0 - abar[kept[j]] / prev, 1e-10, "respaced beta", j);
    // The respaced process keeps the base process's marginals at the kept steps.
    expect_rel_near(s.alphas_cumprod[j], abar[kept[j]], 1e-12, "respaced abar", j);
  }
  // 1 - (1 - 1e-4) / 1: beta_0 up to the rounding of 1 - 1e-4 (as in IDDPM's float64).
  EXPECT_NEAR(s.betas[0], 1e-4, 1e-15);
  // A respaced beta spans 111 base steps, so it is far larger than any base beta.
  EXPECT_GT(s.betas[9], 0.02);
  EXPECT_LT(s.betas[9], 1.0);
}

TEST(Schedule, DdimRespacing) {
  const auto s = eoc::make_schedule(50, Respacing::ddim);
  ASSERT_EQ(s.size(), 50);
  EXPECT_EQ(s.timesteps[1], 20);
  const auto abar = base_alphas_cumprod();
  expect_rel_near(s.alphas_cumprod[49], abar[980], 1e-12, "ddim abar", 49);
  expect_rel_near(s.betas[1], 1.0 - abar[20] / abar[0], 1e-10, "ddim beta", 1);
}

}  // namespace

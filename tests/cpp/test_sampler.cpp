// DDPM / DDIM steps against the formulas of dit.md, evaluated here in float64 on a small
// hand-made schedule, plus the sampling loop's calling order.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "eoc/base/error.hpp"
#include "eoc/cli/flag_values.hpp"
#include "eoc/diffusion/sampler.hpp"
#include "eoc/diffusion/schedule.hpp"

namespace {

using eoc::DiffusionSchedule;

// A schedule given by its alphas_cumprod, every other array derived from the IDDPM definitions.
DiffusionSchedule hand_schedule(const std::vector<double>& abar) {
  DiffusionSchedule s;
  double prev = 1.0;
  for (size_t j = 0; j < abar.size(); ++j) {
    const double ab = abar[j], b = 1.0 - ab / prev;
    s.timesteps.push_back(static_cast<int64_t>(j) * 100);
    s.betas.push_back(b);
    s.alphas_cumprod.push_back(ab);
    s.alphas_cumprod_prev.push_back(prev);
    s.sqrt_recip_alphas_cumprod.push_back(std::sqrt(1.0 / ab));
    s.sqrt_recipm1_alphas_cumprod.push_back(std::sqrt(1.0 / ab - 1.0));
    s.posterior_variance.push_back(b * (1.0 - prev) / (1.0 - ab));
    s.posterior_mean_coef1.push_back(b * std::sqrt(prev) / (1.0 - ab));
    s.posterior_mean_coef2.push_back((1.0 - prev) * std::sqrt(1.0 - b) / (1.0 - ab));
    s.log_betas.push_back(std::log(b));
    prev = ab;
  }
  for (size_t j = 0; j < abar.size(); ++j)
    s.posterior_log_variance_clipped.push_back(
        std::log(j == 0 ? s.posterior_variance[1] : s.posterior_variance[j]));
  return s;
}

const std::vector<double> kAbar = {0.95, 0.7, 0.4, 0.1};

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, g, at::kFloat);
}

// Element-wise comparison against a float64 expectation.
void expect_close(const at::Tensor& actual, const at::Tensor& expected, double tol) {
  ASSERT_EQ(actual.sizes(), expected.sizes());
  ASSERT_EQ(actual.scalar_type(), at::kFloat);
  const double err = (actual.to(at::kDouble) - expected).abs().max().item<double>();
  EXPECT_LE(err, tol);
}

TEST(DdimStep, EtaZeroMatchesClosedForm) {
  const auto s = hand_schedule(kAbar);
  const auto x = randn({2, 3, 4, 4}, 1), eps = randn({2, 3, 4, 4}, 2);
  const auto xd = x.to(at::kDouble), ed = eps.to(at::kDouble);
  for (int64_t j : {3, 2, 1, 0}) {
    const double ab = kAbar[j], prev = j == 0 ? 1.0 : kAbar[j - 1];
    const auto x0 = std::sqrt(1.0 / ab) * xd - std::sqrt(1.0 / ab - 1.0) * ed;
    const auto expected = x0 * std::sqrt(prev) + std::sqrt(1.0 - prev) * ed;
    SCOPED_TRACE(j);
    expect_close(eoc::ddim_step(s, j, x, eps, at::Tensor(), 0.0), expected, 2e-5);
  }
}

TEST(DdimStep, IgnoresVarianceChannels) {
  // With 2C channels only the first C (eps) drive DDIM.
  const auto s = hand_schedule(kAbar);
  const auto x = randn({1, 2, 3, 3}, 3), eps = randn({1, 2, 3, 3}, 4);
  const auto v = randn({1, 2, 3, 3}, 5);
  const auto a = eoc::ddim_step(s, 2, x, eps, at::Tensor(), 0.0);
  const auto b = eoc::ddim_step(s, 2, x, at::cat({eps, v}, 1), at::Tensor(), 0.0);
  EXPECT_TRUE(at::equal(a, b));
}

TEST(DdimStep, PositiveEtaAddsScaledNoise) {
  const auto s = hand_schedule(kAbar);
  const auto x = randn({1, 3, 4, 4}, 6), eps = randn({1, 3, 4, 4}, 7), z = randn({1, 3, 4, 4}, 8);
  const double eta = 0.7;
  const int64_t j = 2;
  const double ab = kAbar[j], prev = kAbar[j - 1];
  const double sigma = eta * std::sqrt((1 - prev) / (1 - ab)) * std::sqrt(1 - ab / prev);
  const auto xd = x.to(at::kDouble), ed = eps.to(at::kDouble), zd = z.to(at::kDouble);
  const auto x0 = std::sqrt(1.0 / ab) * xd - std::sqrt(1.0 / ab - 1.0) * ed;
  const auto expected =
      x0 * std::sqrt(prev) + std::sqrt(1 - prev - sigma * sigma) * ed + sigma * zd;
  expect_close(eoc::ddim_step(s, j, x, eps, z, eta), expected, 2e-5);
  // eta > 0 needs noise before the last step.
  EXPECT_THROW(eoc::ddim_step(s, j, x, eps, at::Tensor(), eta), eoc::InternalError);
}

TEST(DdpmStep, LearnedRangeVariance) {
  const auto s = hand_schedule(kAbar);
  const auto x = randn({2, 3, 4, 4}, 10), eps = randn({2, 3, 4, 4}, 11);
  const auto v = at::tanh(randn({2, 3, 4, 4}, 12));  // in (-1, 1) as DiT's output roughly is
  const auto noise = randn({2, 3, 4, 4}, 13);
  const auto out = at::cat({eps, v}, 1);
  const auto xd = x.to(at::kDouble), ed = eps.to(at::kDouble), vd = v.to(at::kDouble);
  for (int64_t j : {3, 2, 1}) {
    const double ab = kAbar[j], prev = kAbar[j - 1], b = 1.0 - ab / prev;
    const auto x0 = std::sqrt(1.0 / ab) * xd - std::sqrt(1.0 / ab - 1.0) * ed;
    const double c1 = b * std::sqrt(prev) / (1 - ab);
    const double c2 = (1 - prev) * std::sqrt(1 - b) / (1 - ab);
    const auto mean = c1 * x0 + c2 * xd;
    const double max_log = std::log(b);
    const double min_log = std::log(b * (1 - prev) / (1 - ab));  // posterior variance
    const auto frac = (vd + 1) / 2;
    const auto logvar = frac * max_log + (1 - frac) * min_log;
    const auto expected = mean + at::exp(0.5 * logvar) * noise.to(at::kDouble);
    SCOPED_TRACE(j);
    expect_close(eoc::ddpm_step(s, j, x, out, noise), expected, 2e-5);
  }
}

TEST(DdpmStep, LastStepReturnsMeanAndIgnoresNoise) {
  const auto s = hand_schedule(kAbar);
  const auto x = randn({1, 3, 4, 4}, 20), eps = randn({1, 3, 4, 4}, 21);
  const auto out = at::cat({eps, at::zeros_like(eps)}, 1);
  const auto xd = x.to(at::kDouble), ed = eps.to(at::kDouble);
  // j = 0: abar_prev = 1, coef1 = 1, coef2 = 0: the mean is the x0 prediction itself.
  const double ab = kAbar[0];
  const auto x0 = std::sqrt(1.0 / ab) * xd - std::sqrt(1.0 / ab - 1.0) * ed;
  const auto huge = at::full_like(x, 1e6f);
  const auto a = eoc::ddpm_step(s, 0, x, out, huge);
  expect_close(a, x0, 2e-5);
  EXPECT_TRUE(at::equal(a, eoc::ddpm_step(s, 0, x, out, at::zeros_like(x))));
}

TEST(DdpmStep, FixedLargeVarianceWithEpsOnlyOutput) {
  const auto s = hand_schedule(kAbar);
  const auto x = randn({2, 1, 5, 5}, 30), eps = randn({2, 1, 5, 5}, 31);
  const auto noise = randn({2, 1, 5, 5}, 32);
  const int64_t j = 2;
  const double ab = kAbar[j], prev = kAbar[j - 1], b = 1.0 - ab / prev;
  const auto xd = x.to(at::kDouble), ed = eps.to(at::kDouble);
  const auto x0 = std::sqrt(1.0 / ab) * xd - std::sqrt(1.0 / ab - 1.0) * ed;
  const auto mean =
      b * std::sqrt(prev) / (1 - ab) * x0 + (1 - prev) * std::sqrt(1 - b) / (1 - ab) * xd;
  // Fixed large: the variance is beta_j (not the posterior variance) for j > 0.
  const auto expected = mean + std::sqrt(b) * noise.to(at::kDouble);
  expect_close(eoc::ddpm_step(s, j, x, eps, noise), expected, 2e-5);
}

TEST(Sampler, ParseAndDrawsNoise) {
  EXPECT_EQ(eoc::cli::parse_choice("--sampler", "ddpm", eoc::kSamplerNames),
            eoc::SamplerKind::ddpm);
  EXPECT_EQ(eoc::cli::parse_choice("--sampler", "ddim", eoc::kSamplerNames),
            eoc::SamplerKind::ddim);
  EXPECT_EQ(eoc::cli::parse_choice("--sampler", "sde-heun", eoc::kSamplerNames),
            eoc::SamplerKind::sde_heun);
  EXPECT_THROW(eoc::cli::parse_choice("--sampler", "dopri5", eoc::kSamplerNames), eoc::Error);
  EXPECT_STREQ(eoc::sampler_name(eoc::SamplerKind::ddpm), "ddpm");
  const auto s = eoc::make_schedule(3, eoc::Respacing::even);
  const eoc::Sampler ddpm({eoc::SamplerKind::ddpm, 0.0}, s), ddim({eoc::SamplerKind::ddim, 0.0}, s),
      ddim_eta({eoc::SamplerKind::ddim, 0.5}, s);
  for (int64_t k = 0; k < 3; ++k) {
    EXPECT_TRUE(ddpm.draws_noise(k));
    EXPECT_FALSE(ddim.draws_noise(k));
    EXPECT_TRUE(ddim_eta.draws_noise(k));
  }
  EXPECT_EQ(ddim.evaluations(), 3);
  EXPECT_EQ(ddim.steps(), 3);
  // Evaluation k sees the original timestep of schedule index S - 1 - k.
  EXPECT_EQ(ddim.model_time(0), 999.0);
  EXPECT_EQ(ddim.model_time(2), 0.0);
}

TEST(SampleLoop, CallsDenoiserAndNoiseInStepOrder) {
  const auto s = eoc::make_schedule(7, eoc::Respacing::even);
  std::vector<int64_t> denoise_steps, noise_steps, done_steps;
  std::vector<std::string> order;
  const auto x = randn({1, 2, 3, 3}, 40);
  const auto result = eoc::sample_loop(
      eoc::Sampler({eoc::SamplerKind::ddpm, 0.0}, s), x,
      [&](const at::Tensor& xt, int64_t k) {
        EXPECT_EQ(xt.sizes(), x.sizes());
        denoise_steps.push_back(k);
        order.push_back("d" + std::to_string(k));
        return at::cat({at::zeros_like(xt), at::zeros_like(xt)}, 1);
      },
      [&](int64_t k) {
        noise_steps.push_back(k);
        order.push_back("n" + std::to_string(k));
        return at::zeros_like(x);
      },
      [&](int64_t k) {
        done_steps.push_back(k);
        order.push_back("s" + std::to_string(k));
      });
  const std::vector<int64_t> expected = {0, 1, 2, 3, 4, 5, 6};
  EXPECT_EQ(denoise_steps, expected);
  EXPECT_EQ(noise_steps, expected);
  EXPECT_EQ(done_steps, expected);
  ASSERT_EQ(order.size(), 21u);
  // Per evaluation: its noise (the model input may need it), the model, then the step is done.
  EXPECT_EQ(order[0], "n0");
  EXPECT_EQ(order[1], "d0");
  EXPECT_EQ(order[2], "s0");
  EXPECT_EQ(order[3], "n1");
  EXPECT_EQ(result.sizes(), x.sizes());
}

TEST(SampleLoop, StepKUsesScheduleIndexSMinus1MinusK) {
  const auto s = hand_schedule(kAbar);
  const auto x = randn({1, 2, 3, 3}, 50);
  const eoc::SamplerOptions opts{eoc::SamplerKind::ddim, 0.0};
  auto eps_at = [](int64_t k) { return randn({1, 2, 3, 3}, 100 + k); };
  const eoc::Sampler sampler(opts, s);
  const auto got = eoc::sample_loop(
      sampler, x, [&](const at::Tensor&, int64_t k) { return eps_at(k); },
      [](int64_t) { return at::Tensor(); });
  auto manual = x;
  for (int64_t k = 0; k < 4; ++k) manual = eoc::ddim_step(s, 3 - k, manual, eps_at(k), {}, 0.0);
  EXPECT_TRUE(at::equal(got, manual));
  // advance() is the same dispatch, one evaluation at a time.
  eoc::SamplerState one{x, {}, {}};
  EXPECT_TRUE(at::equal(sampler.advance(1, one, x, eps_at(1), {}).x,
                        eoc::ddim_step(s, 2, x, eps_at(1), {}, 0.0)));
}

TEST(SampleLoop, DdimWithTrueEpsRecoversX0) {
  for (auto [steps, respacing] :
       {std::pair{50, eoc::Respacing::ddim}, std::pair{20, eoc::Respacing::even}}) {
    const auto s = eoc::make_schedule(steps, respacing);
    const auto x0 = at::tanh(randn({2, 3, 8, 8}, 60)).to(at::kDouble);
    const auto eps = randn({2, 3, 8, 8}, 61).to(at::kDouble);
    const double ab_t = s.alphas_cumprod.back();
    const auto xT = (std::sqrt(ab_t) * x0 + std::sqrt(1 - ab_t) * eps).to(at::kFloat);
    // The "perfect" denoiser: the eps that explains x_t given the known x0.
    const auto got = eoc::sample_loop(
        eoc::Sampler({eoc::SamplerKind::ddim, 0.0}, s), xT,
        [&](const at::Tensor& xt, int64_t k) {
          const double ab = s.alphas_cumprod[s.size() - 1 - k];
          return ((xt.to(at::kDouble) - std::sqrt(ab) * x0) / std::sqrt(1 - ab)).to(at::kFloat);
        },
        [](int64_t) { return at::Tensor(); });
    SCOPED_TRACE(steps);
    expect_close(got, x0, 1e-4);
  }
}

}  // namespace

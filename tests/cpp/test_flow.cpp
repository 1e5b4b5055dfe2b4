// The flow samplers (diffusion/flow.hpp, diffusion/sampler.hpp) on hand-made velocity fields:
// SiT's grids, the evaluations and their times, Euler and Heun by hand, the SDE's drift, noise
// and Mean step. Their agreement with the official SiT code is checked end to end against
// scripts/testing/reference_flow.py by the CLI tests.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "eoc/diffusion/flow.hpp"
#include "eoc/diffusion/sampler.hpp"

namespace {

using eoc::Sampler;
using eoc::SamplerKind;
using eoc::SamplerOptions;

Sampler flow(SamplerKind kind, int64_t points) { return Sampler(SamplerOptions{kind}, points); }

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, g, at::kFloat);
}

TEST(FlowSampler, TorchLinspaceValues) {
  EXPECT_EQ(eoc::torch_linspace<float>(0.0f, 1.0f, 5),
            (std::vector<float>{0, 0.25f, 0.5f, 0.75f, 1}));
  // The second half counts back from the end: the last point is exactly `end`.
  const auto g = eoc::torch_linspace<float>(0.0f, 0.96f, 7);
  EXPECT_EQ(g.back(), 0.96f);
  EXPECT_EQ(g[1], 0.96f / 6);
  EXPECT_EQ(g[5], 0.96f - 0.96f / 6);
  EXPECT_EQ(eoc::torch_linspace<double>(1.0, 0.0, 3), (std::vector<double>{1, 0.5, 0}));
}

TEST(FlowSampler, EvaluationsTimesAndNoise) {
  const auto euler = flow(SamplerKind::euler, 5);
  EXPECT_EQ(euler.steps(), 5);
  EXPECT_EQ(euler.evaluations(), 4);  // N points, N - 1 steps
  EXPECT_EQ(euler.model_time(0), 0.0);
  EXPECT_EQ(euler.model_time(3), 0.75);
  EXPECT_EQ(euler.interval_time(0), 1.0);  // REPA's time: 1 = noise
  EXPECT_EQ(euler.interval_time(3), 0.25);
  const auto heun = flow(SamplerKind::heun, 5);
  EXPECT_EQ(heun.evaluations(), 8);
  EXPECT_EQ(heun.model_time(0), 0.0);
  EXPECT_EQ(heun.model_time(1), 0.25);                      // the second evaluation at t + dt
  EXPECT_EQ(heun.interval_time(1), heun.interval_time(0));  // both follow their step
  const auto sde = flow(SamplerKind::sde, 4);
  EXPECT_EQ(sde.evaluations(), 4);  // N - 1 noisy steps and the Mean step
  EXPECT_EQ(sde.model_time(3), static_cast<float>(0.96));
  EXPECT_TRUE(sde.draws_noise(0));
  EXPECT_FALSE(sde.draws_noise(3));
  const auto sde_heun = flow(SamplerKind::sde_heun, 4);
  EXPECT_EQ(sde_heun.evaluations(), 7);
  EXPECT_TRUE(sde_heun.draws_noise(2));
  EXPECT_FALSE(sde_heun.draws_noise(3));
  EXPECT_FALSE(sde_heun.draws_noise(6));
  for (int64_t e = 0; e < 4; ++e) EXPECT_FALSE(euler.draws_noise(e));
}

TEST(FlowSampler, EulerAndHeunByHand) {
  // v(x, t) = -x + t: Euler's steps by hand; Heun's from the same two slopes.
  const auto x0 = randn({2, 1, 2, 2}, 1);
  auto v = [](const at::Tensor& x, double t) { return -x + static_cast<float>(t); };
  const auto euler = flow(SamplerKind::euler, 3);
  const auto got = eoc::sample_loop(
      euler, x0, [&](const at::Tensor& x, int64_t e) { return v(x, euler.model_time(e)); },
      [](int64_t) { return at::Tensor(); });
  auto want = x0 + 0.5f * v(x0, 0.0);
  want = want + 0.5f * v(want, 0.5);
  EXPECT_TRUE(at::allclose(got, want, 1e-6, 1e-6));
  const auto heun = flow(SamplerKind::heun, 2);
  const auto h = eoc::sample_loop(
      heun, x0, [&](const at::Tensor& x, int64_t e) { return v(x, heun.model_time(e)); },
      [](int64_t) { return at::Tensor(); });
  const auto k1 = v(x0, 0.0), k2 = v(x0 + k1, 1.0);
  EXPECT_TRUE(at::allclose(h, x0 + 0.5f * k1 + 0.5f * k2, 1e-6, 1e-6));
}

TEST(FlowSampler, HeunIsExactForAVelocityLinearInTime) {
  // v = 1 + 2t: x(1) = x(0) + 2 exactly (the trapezoid rule is exact for linear integrands).
  const auto x0 = randn({1, 1, 3, 3}, 2);
  const auto heun = flow(SamplerKind::heun, 4);
  const auto got = eoc::sample_loop(
      heun, x0,
      [&](const at::Tensor& x, int64_t e) {
        return at::full_like(x, static_cast<float>(1 + 2 * heun.model_time(e)));
      },
      [](int64_t) { return at::Tensor(); });
  EXPECT_TRUE(at::allclose(got, x0 + 2.0f, 1e-5, 1e-5));
}

TEST(FlowSampler, SdeDriftNoiseAndMeanStep) {
  const auto x = randn({1, 1, 2, 2}, 3), v = randn({1, 1, 2, 2}, 4), z = randn({1, 1, 2, 2}, 5);
  const float t = 0.3f;
  const auto score = (t * v - x) / ((1 - t) * (1 - t) + t * (1 - t));
  EXPECT_TRUE(at::allclose(eoc::sde_drift(x, v, t, 1.0f), v + (1 - t) * score, 1e-6, 1e-6));
  // Two points: one Euler-Maruyama step at t = 0 with dt = 0.96, then the Mean step of 0.04.
  const auto sde = flow(SamplerKind::sde, 2);
  std::vector<at::Tensor> noise{z, at::Tensor()};
  const auto got = eoc::sample_loop(
      sde, x, [&](const at::Tensor&, int64_t) { return v; }, [&](int64_t e) { return noise[e]; });
  const float dt = 0.96f;
  auto want = (x + eoc::sde_drift(x, v, 0.0f, 1.0f) * dt) + std::sqrt(2.0f) * (z * std::sqrt(dt));
  want = want + eoc::sde_drift(want, v, 0.96f, 1.0f) * 0.04f;
  EXPECT_TRUE(at::allclose(got, want, 1e-6, 1e-6));
}

TEST(FlowSampler, VelocityIgnoresASigmaHalf) {
  const auto x0 = randn({1, 2, 2, 2}, 6);
  const auto euler = flow(SamplerKind::euler, 2);
  const auto v = randn({1, 2, 2, 2}, 7);
  const auto with_sigma = eoc::sample_loop(
      euler, x0,
      [&](const at::Tensor&, int64_t) {
        return at::cat({v, 100 * v}, 1);
      },
      [](int64_t) { return at::Tensor(); });
  EXPECT_TRUE(at::equal(with_sigma, x0 + 1.0f * v));
}

}  // namespace

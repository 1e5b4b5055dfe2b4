// The official IDDPM sampling steps. Coefficients are float64 arrays extracted per step as
// float32 (as IDDPM's _extract_into_tensor does), so results match the reference to rounding.
#include "eoc/diffusion/sampler.hpp"

#include <cmath>

#include "eoc/base/error.hpp"

namespace eoc {
namespace {

float f32(double v) { return static_cast<float>(v); }

struct Prediction {
  at::Tensor eps, pred_xstart, log_variance;
};

// p_mean_variance's shared part: split eps / variance values, x0 from eps, the log variance.
Prediction predict(const DiffusionSchedule& s, int64_t j, const at::Tensor& x,
                   const at::Tensor& model_out, bool need_variance) {
  const int64_t c = x.size(1);
  Prediction p;
  p.eps = model_out.narrow(1, 0, c);
  p.pred_xstart =
      f32(s.sqrt_recip_alphas_cumprod[j]) * x - f32(s.sqrt_recipm1_alphas_cumprod[j]) * p.eps;
  if (!need_variance) return p;
  if (model_out.size(1) == 2 * c) {
    // Learned range: interpolate between the clipped posterior and beta in log space.
    const auto frac = (model_out.narrow(1, c, c) + 1) / 2;
    const float max_log = f32(s.log_betas[j]);
    const float min_log = f32(s.posterior_log_variance_clipped[j]);
    p.log_variance = frac * max_log + (1 - frac) * min_log;
  } else {
    // Fixed large: posterior variance at j = 0, beta elsewhere.
    const double v = j == 0 ? s.posterior_variance[s.size() > 1 ? 1 : 0] : s.betas[j];
    p.log_variance = at::full_like(x, f32(std::log(v)));
  }
  return p;
}

}  // namespace

bool draws_noise(const SamplerOptions& o) { return o.kind == SamplerKind::ddpm || o.eta > 0.0; }

at::Tensor ddpm_step(const DiffusionSchedule& s, int64_t j, const at::Tensor& x,
                     const at::Tensor& model_out, const at::Tensor& noise) {
  const auto p = predict(s, j, x, model_out, true);
  const auto mean =
      f32(s.posterior_mean_coef1[j]) * p.pred_xstart + f32(s.posterior_mean_coef2[j]) * x;
  if (j == 0) return mean;  // the official loop masks the last step's noise
  return mean + at::exp(0.5 * p.log_variance) * noise;
}

at::Tensor ddim_step(const DiffusionSchedule& s, int64_t j, const at::Tensor& x,
                     const at::Tensor& model_out, const at::Tensor& noise, double eta) {
  const auto p = predict(s, j, x, model_out, false);
  const auto eps = (f32(s.sqrt_recip_alphas_cumprod[j]) * x - p.pred_xstart) /
                   f32(s.sqrt_recipm1_alphas_cumprod[j]);
  const float ab = f32(s.alphas_cumprod[j]);
  const float ab_prev = f32(s.alphas_cumprod_prev[j]);
  const float sigma = static_cast<float>(eta) * std::sqrt((1.0f - ab_prev) / (1.0f - ab)) *
                      std::sqrt(1.0f - ab / ab_prev);
  const auto mean =
      p.pred_xstart * std::sqrt(ab_prev) + std::sqrt(1.0f - ab_prev - sigma * sigma) * eps;
  if (j == 0 || sigma == 0.0f) return mean;
  EOC_ASSERT(noise.defined(), "DDIM with eta > 0 got no noise");
  return mean + sigma * noise;
}

at::Tensor sampler_step(const SamplerOptions& o, const DiffusionSchedule& schedule, int64_t step,
                        const at::Tensor& x, const at::Tensor& model_out, const at::Tensor& noise) {
  const int64_t j = schedule.size() - 1 - step;
  if (o.kind == SamplerKind::ddpm) return ddpm_step(schedule, j, x, model_out, noise);
  return ddim_step(schedule, j, x, model_out, noise, o.eta);
}

at::Tensor sample_loop(const SamplerOptions& o, const DiffusionSchedule& schedule, at::Tensor x,
                       const DenoiseFn& denoise, const NoiseFn& noise_fn,
                       const StepDoneFn& step_done) {
  return sample_steps(o, schedule, std::move(x), 0, schedule.size(), denoise, noise_fn, step_done);
}

at::Tensor sample_steps(const SamplerOptions& o, const DiffusionSchedule& schedule, at::Tensor x,
                        int64_t first, int64_t last, const DenoiseFn& denoise,
                        const NoiseFn& noise_fn, const StepDoneFn& step_done) {
  for (int64_t k = first; k < last; ++k) {
    const auto out = denoise(x, k);
    const auto noise = noise_fn(k);
    x = sampler_step(o, schedule, k, x, out, noise);
    if (step_done) step_done(k);
  }
  return x;
}

}  // namespace eoc

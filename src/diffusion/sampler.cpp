// The official IDDPM sampling steps. Coefficients are float64 arrays extracted per step as
// float32 (as IDDPM's _extract_into_tensor does), so results match the reference to rounding.
#include "eoc/diffusion/sampler.hpp"

#include <cmath>

#include "eoc/base/error.hpp"
#include "eoc/diffusion/flow.hpp"

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

bool is_flow_sampler(SamplerKind kind) {
  return kind != SamplerKind::ddpm && kind != SamplerKind::ddim;
}

Sampler::Sampler(SamplerOptions options, DiffusionSchedule schedule)
    : options_(options), steps_(schedule.size()), schedule_(std::move(schedule)) {
  EOC_ASSERT(!is_flow(), "a flow sampler over a diffusion schedule");
  const bool draws = options_.kind == SamplerKind::ddpm || options_.eta > 0.0;
  for (int64_t k = 0; k < steps_; ++k) {
    model_time_.push_back(static_cast<double>(schedule_.timesteps[steps_ - 1 - k]));
    interval_time_.push_back(model_time_.back() / 1000.0);
    draws_.push_back(draws);
  }
}

Sampler::Sampler(SamplerOptions options, int64_t steps) : options_(options), steps_(steps) {
  EOC_ASSERT(is_flow() && steps >= 2, "flow sampler ", sampler_name(options_.kind), " over ", steps,
             " grid points");
  grid_ = flow_grid(options_.kind, steps, options_.last_step_size);
  const auto sit = options_.kind == SamplerKind::euler || options_.kind == SamplerKind::heun;
  const bool heun = options_.kind == SamplerKind::heun || options_.kind == SamplerKind::sde_heun;
  // The steps' start times in REPA's time (1 = noise): where guidance intervals are decided.
  // Exact grid values, (1 - i (1 - end) / (N - 1)), not a float64 linspace, whose rounding at
  // an interval's end differs between torch's CPU and CUDA kernels (Guidance::guides).
  const double end = sit ? 0.0 : options_.last_step_size;
  std::vector<double> repa(static_cast<size_t>(steps));
  for (int64_t i = 0; i < steps; ++i)
    repa[i] = 1.0 - (1.0 - end) * static_cast<double>(i) / static_cast<double>(steps - 1);
  const float dt_sde = grid_.size() > 1 ? grid_[1] - grid_[0] : 0.0f;
  for (int64_t i = 0; i + 1 < steps; ++i) {
    const float t = grid_[i];
    const float dt = sit ? grid_[i + 1] - t : dt_sde;
    model_time_.push_back(t);
    interval_time_.push_back(repa[i]);
    draws_.push_back(!sit);
    if (heun) {
      model_time_.push_back(t + dt);
      interval_time_.push_back(repa[i]);
      draws_.push_back(false);
    }
  }
  if (!sit) {  // the Mean step from the grid's end, no noise
    model_time_.push_back(static_cast<float>(1.0 - options_.last_step_size));
    interval_time_.push_back(repa[steps - 1]);
    draws_.push_back(false);
  }
}

namespace {

// The evaluation's place in a flow run: its step i, whether it is a Heun step's second
// evaluation, whether it is the SDE's Mean step; and the step's time and size.
struct FlowEval {
  int64_t step;
  bool second;
  bool mean_step;
  float t, dt;
};

FlowEval flow_eval(const Sampler& s, int64_t e) {
  const auto kind = s.kind();
  const bool heun = kind == SamplerKind::heun || kind == SamplerKind::sde_heun;
  const bool sde = kind == SamplerKind::sde || kind == SamplerKind::sde_heun;
  const auto& g = s.grid();
  FlowEval f{heun ? e / 2 : e, heun && e % 2 == 1, false, 0.0f, 0.0f};
  if (sde && e == s.evaluations() - 1) {
    f.mean_step = true;
    f.second = false;
    f.t = static_cast<float>(s.model_time(e));
    f.dt = static_cast<float>(s.options().last_step_size);
    return f;
  }
  f.t = g[f.step];
  f.dt = sde ? g[1] - g[0] : g[f.step + 1] - g[f.step];
  return f;
}

}  // namespace

at::Tensor Sampler::input(int64_t e, const SamplerState& s, const at::Tensor& noise) const {
  if (!is_flow()) return s.x;
  const FlowEval f = flow_eval(*this, e);
  if (f.second) return s.base + f.dt * s.slope;
  if (options_.kind == SamplerKind::sde_heun && !f.mean_step)
    return s.x + sde_noise_term(noise, f.t, f.dt, options_.diffusion_norm);
  return s.x;
}

SamplerState Sampler::advance(int64_t e, SamplerState s, const at::Tensor& input,
                              const at::Tensor& out, const at::Tensor& noise) const {
  if (!is_flow()) {
    const int64_t j = steps_ - 1 - e;
    s.x = options_.kind == SamplerKind::ddpm
              ? ddpm_step(schedule_, j, s.x, out, noise)
              : ddim_step(schedule_, j, s.x, out, noise, options_.eta);
    return s;
  }
  const FlowEval f = flow_eval(*this, e);
  const int64_t c = s.x.size(1);
  const auto v = out.narrow(1, 0, c);  // the velocity (a sigma half is ignored, as SiT does)
  const float norm = static_cast<float>(options_.diffusion_norm);
  switch (options_.kind) {
    case SamplerKind::euler: s.x = euler_step(s.x, v, f.dt); break;
    case SamplerKind::heun:
      if (!f.second) {
        s.base = s.x;
        s.slope = v;
      } else {
        s.x = heun_step(s.base, s.slope, v, f.dt);
        s.base = s.slope = at::Tensor();
      }
      break;
    case SamplerKind::sde:
      s.x = f.mean_step ? s.x + sde_drift(s.x, v, f.t, norm) * f.dt
                        : euler_maruyama_step(s.x, sde_drift(s.x, v, f.t, norm), noise, f.t, f.dt,
                                              options_.diffusion_norm);
      break;
    case SamplerKind::sde_heun:
      if (f.mean_step) {
        s.x = s.x + sde_drift(s.x, v, f.t, norm) * f.dt;
      } else if (!f.second) {
        s.base = input;  // x after the step's noise
        s.slope = sde_drift(input, v, f.t, norm);
      } else {
        s.x = s.base + (0.5f * f.dt) * (s.slope + sde_drift(input, v, f.t + f.dt, norm));
        s.base = s.slope = at::Tensor();
      }
      break;
    case SamplerKind::ddpm:
    case SamplerKind::ddim: break;
  }
  return s;
}

SamplerState sample_steps(const Sampler& sampler, SamplerState s, int64_t first, int64_t last,
                          const DenoiseFn& denoise, const NoiseFn& noise_fn,
                          const StepDoneFn& step_done) {
  for (int64_t e = first; e < last; ++e) {
    const auto noise = noise_fn(e);
    const auto in = sampler.input(e, s, noise);
    const auto out = denoise(in, e);
    s = sampler.advance(e, std::move(s), in, out, noise);
    if (step_done) step_done(e);
  }
  return s;
}

at::Tensor sample_loop(const Sampler& sampler, at::Tensor x, const DenoiseFn& denoise,
                       const NoiseFn& noise_fn, const StepDoneFn& step_done) {
  SamplerState s{std::move(x), {}, {}};
  return sample_steps(sampler, std::move(s), 0, sampler.evaluations(), denoise, noise_fn, step_done)
      .x;
}

}  // namespace eoc

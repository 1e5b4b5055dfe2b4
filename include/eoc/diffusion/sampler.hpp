// Samplers: short free functions over a denoise callback. They know nothing of caches, models or
// files. Step k counts in SAMPLING order (k = 0 is the first, noisiest step); the schedule's
// index is j = S - 1 - k. All tensors are (B, C, H, W) float32 unless said otherwise.
#pragma once
#include <ATen/ATen.h>

#include <functional>

#include "eoc/base/names.hpp"

#include "eoc/diffusion/schedule.hpp"

namespace eoc {

enum class SamplerKind { ddpm, ddim };
inline constexpr Names<SamplerKind, 2> kSamplerNames{
    {{{SamplerKind::ddpm, "ddpm"}, {SamplerKind::ddim, "ddim"}}}};
inline const char* sampler_name(SamplerKind kind) { return kSamplerNames.name(kind); }

struct SamplerOptions {
  SamplerKind kind = SamplerKind::ddim;
  double eta = 0.0;  // DDIM only; 0 = deterministic
};

// Returns the (guided) model output for state x at sampling step k: (B, out_channels, H, W),
// where out_channels is C (eps only) or 2C (eps, variance interpolation v).
using DenoiseFn = std::function<at::Tensor(const at::Tensor& x, int64_t step)>;
// Returns standard-normal noise (B, C, H, W) for step k, or an undefined tensor when the step
// uses none (see draws_noise). Called once per step, in step order: a seed stream may draw even
// when the sampler does not need it (the official stream draws at every step).
using NoiseFn = std::function<at::Tensor(int64_t step)>;
using StepDoneFn = std::function<void(int64_t step)>;

// Whether the sampler uses noise: DDPM at every step (the last one's is masked, as in the
// official loop); DDIM only when eta > 0.
bool draws_noise(const SamplerOptions& options);

// One official p_sample step at schedule index j (learned-range variance when model_out has 2C
// channels, IDDPM's fixed-large variance otherwise). No x0 clipping, as DiT.
at::Tensor ddpm_step(const DiffusionSchedule& s, int64_t j, const at::Tensor& x,
                     const at::Tensor& model_out, const at::Tensor& noise);
// One official ddim_sample step; `noise` may be undefined when eta == 0.
at::Tensor ddim_step(const DiffusionSchedule& s, int64_t j, const at::Tensor& x,
                     const at::Tensor& model_out, const at::Tensor& noise, double eta);

// Runs all S steps from x_T and returns x_0.
at::Tensor sample_loop(const SamplerOptions& options, const DiffusionSchedule& schedule,
                       at::Tensor x, const DenoiseFn& denoise, const NoiseFn& noise,
                       const StepDoneFn& step_done = {});
// Runs steps [first, last) from the state x before step `first` and returns the state after
// step last - 1: the same loop over part of the schedule (calibration and replays resume and
// stop trajectories with it).
at::Tensor sample_steps(const SamplerOptions& options, const DiffusionSchedule& schedule,
                        at::Tensor x, int64_t first, int64_t last, const DenoiseFn& denoise,
                        const NoiseFn& noise, const StepDoneFn& step_done = {});

// One step of either sampler (used by sample_loop and by calibration, which steps by hand).
at::Tensor sampler_step(const SamplerOptions& options, const DiffusionSchedule& schedule,
                        int64_t step, const at::Tensor& x, const at::Tensor& model_out,
                        const at::Tensor& noise);

}  // namespace eoc

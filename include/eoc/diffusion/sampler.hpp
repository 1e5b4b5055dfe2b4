// Samplers: short free functions over a denoise callback. They know nothing of caches, models or
// files. A sampling run is a sequence of MODEL EVALUATIONS e = 0, 1, ... (what a cache plan's
// steps count): DDPM and DDIM evaluate once per step; the flow samplers follow SiT's grids, where
// Heun evaluates twice per step. All tensors are (B, C, H, W) float32 unless said otherwise.
//
// Two families, by what the model predicts (docs/MODEL_CONTRACT.md):
//  - eps (DiT): DDPM and DDIM over the respaced IDDPM schedule; step k in SAMPLING order (k = 0
//    the noisiest), schedule index j = S - 1 - k; the model sees the original timestep.
//  - velocity (SiT, REPA exported in SiT's convention): the probability-flow ODE and SiT's SDE
//    on SiT's Linear path, time t = 0 noise .. 1 data, the model sees t (diffusion/flow.hpp has
//    their grids and steps).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eoc/base/names.hpp"
#include "eoc/diffusion/schedule.hpp"

namespace eoc {

enum class SamplerKind { ddpm, ddim, euler, heun, sde, sde_heun };
inline constexpr Names<SamplerKind, 6> kSamplerNames{{{{SamplerKind::ddpm, "ddpm"},
                                                       {SamplerKind::ddim, "ddim"},
                                                       {SamplerKind::euler, "euler"},
                                                       {SamplerKind::heun, "heun"},
                                                       {SamplerKind::sde, "sde"},
                                                       {SamplerKind::sde_heun, "sde-heun"}}}};
inline const char* sampler_name(SamplerKind kind) { return kSamplerNames.name(kind); }
// Whether the sampler integrates a velocity model's flow (else it takes eps predictions).
bool is_flow_sampler(SamplerKind kind);

struct SamplerOptions {
  SamplerKind kind = SamplerKind::ddim;
  double eta = 0.0;  // DDIM only; 0 = deterministic
  // The SDE samplers (SiT's parse_sde_args defaults): the Mean last step's size and the
  // diffusion form "sigma"'s norm, w(t) = norm (1 - t).
  double last_step_size = 0.04;
  double diffusion_norm = 1.0;
};

// The sampler's state between model evaluations: the sample, and for a Heun step in progress
// its start point and first slope.
struct SamplerState {
  at::Tensor x;
  at::Tensor base;   // Heun: the step's start point (SDE-Heun: after its noise)
  at::Tensor slope;  // Heun: the first evaluation's slope (velocity or SDE drift)
};

// Returns the (guided) model output at evaluation e for the model input x: (B, out_channels,
// H, W); eps samplers read C (eps only) or 2C (eps, variance interpolation v) channels,
// flow samplers the first C (the velocity).
using DenoiseFn = std::function<at::Tensor(const at::Tensor& x, int64_t evaluation)>;
// Standard-normal noise (B, C, H, W) for evaluation e, or an undefined tensor when it draws none
// (Sampler::draws_noise). Called once per evaluation, in order: a seed stream may draw even when
// the sampler does not need it (the official DiT stream draws at every step).
using NoiseFn = std::function<at::Tensor(int64_t evaluation)>;
using StepDoneFn = std::function<void(int64_t evaluation)>;

// One official p_sample step at schedule index j (learned-range variance when model_out has 2C
// channels, IDDPM's fixed-large variance otherwise). No x0 clipping, as DiT.
at::Tensor ddpm_step(const DiffusionSchedule& s, int64_t j, const at::Tensor& x,
                     const at::Tensor& model_out, const at::Tensor& noise);
// One official ddim_sample step; `noise` may be undefined when eta == 0.
at::Tensor ddim_step(const DiffusionSchedule& s, int64_t j, const at::Tensor& x,
                     const at::Tensor& model_out, const at::Tensor& noise, double eta);

// A sampler over one run's steps: which evaluations it makes, at which model times, and how
// each evaluation's output moves the state. Immutable once made; shared by every batch.
class Sampler {
 public:
  // DDPM or DDIM over `schedule`.
  Sampler(SamplerOptions options, DiffusionSchedule schedule);
  // A flow sampler over SiT's grid of `steps` points (its --num-sampling-steps; >= 2).
  Sampler(SamplerOptions options, int64_t steps);

  const SamplerOptions& options() const { return options_; }
  SamplerKind kind() const { return options_.kind; }
  bool is_flow() const { return is_flow_sampler(options_.kind); }
  // The step count the user gave (--steps): DDPM/DDIM's respaced steps, SiT's grid points.
  int64_t steps() const { return steps_; }
  // Model evaluations per image (a CFG-batched evaluation counts once).
  int64_t evaluations() const { return static_cast<int64_t>(model_time_.size()); }
  // The time the model is called with at evaluation e, in its own units: the original
  // timestep 0..999 for eps samplers, SiT's t in [0, 1] for flow samplers.
  double model_time(int64_t e) const { return model_time_[e]; }
  // The time of evaluation e's step in REPA's convention (1 = noise, 0 = data), where a
  // guidance interval is tested (flow samplers; REPA's float64 grid for the same step).
  double interval_time(int64_t e) const { return interval_time_[e]; }
  bool draws_noise(int64_t e) const { return draws_[e] != 0; }
  // The respaced schedule (eps samplers) and SiT's time grid (flow samplers), for reports.
  const DiffusionSchedule& schedule() const { return schedule_; }
  const std::vector<float>& grid() const { return grid_; }

  // Where evaluation e evaluates the model, from the state before it and its noise.
  at::Tensor input(int64_t e, const SamplerState& s, const at::Tensor& noise) const;
  // The state after evaluation e, given its input and the model's output there.
  SamplerState advance(int64_t e, SamplerState s, const at::Tensor& input, const at::Tensor& out,
                       const at::Tensor& noise) const;

 private:
  SamplerOptions options_;
  int64_t steps_ = 0;
  DiffusionSchedule schedule_;
  std::vector<float> grid_;
  std::vector<double> model_time_, interval_time_;
  std::vector<uint8_t> draws_;
};

// Runs evaluations [first, last) from the state before `first` and returns the state after
// last - 1: THE sampler loop (sampling, calibration and replays resume and stop trajectories with
// it). Per evaluation: its noise, its model input, the model output, the state update.
SamplerState sample_steps(const Sampler& sampler, SamplerState state, int64_t first, int64_t last,
                          const DenoiseFn& denoise, const NoiseFn& noise,
                          const StepDoneFn& step_done = {});
// Runs every evaluation from x_T and returns the final sample.
at::Tensor sample_loop(const Sampler& sampler, at::Tensor x, const DenoiseFn& denoise,
                       const NoiseFn& noise, const StepDoneFn& step_done = {});

}  // namespace eoc

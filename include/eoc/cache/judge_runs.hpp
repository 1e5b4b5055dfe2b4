// The judge batch of a calibration and the cached trajectories run on it: what EOC's judgment
// (cache/eoc_calibration.hpp) and the budget search (cache/schedule_search.hpp) measure with.
// Every trajectory starts from the same x_T and sees the same per-step noise, so two
// trajectories differ only by their cache plans and corrections; each one is scored by the MSE
// of its final images against the uncached ones. Counts every step it runs, so a calibration can
// state its cost as a multiple of sampling the judge images uncached.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "eoc/cache/block_loop.hpp"
#include "eoc/cache/session.hpp"
#include "eoc/diffusion/sampler.hpp"
#include "eoc/diffusion/seeds.hpp"

namespace eoc {

// A point on a trajectory: the state before step `step` and the cache session it holds.
struct TrajectoryState {
  int64_t step = 0;
  SamplerState at;  // the sample (and a Heun step's pending slope)
  CacheSession session;
};

// Borrows `loop` (and through it the model and the sampler): it must outlive the JudgeRuns (a
// calibration holds both on its stack). Owns the batch's tensors and noise.
class JudgeRuns {
 public:
  // Draws every step's noise up front from `start` and runs the uncached trajectory (the
  // reference the errors are measured against).
  JudgeRuns(const BlockLoop& loop, const BatchStart& start);

  const BlockLoop& loop() const { return loop_; }
  int64_t steps() const { return loop_.evaluations(); }
  const at::Tensor& x_T() const { return x_T_; }
  const at::Tensor& labels() const { return labels_; }
  const at::Tensor& reference() const { return reference_; }

  // The start of a trajectory under `session`.
  TrajectoryState start(CacheSession session) const {
    return {0, SamplerState{x_T_, {}, {}}, std::move(session)};
  }
  // Runs steps [state.step, until) under state.session.
  TrajectoryState advance(TrajectoryState state, int64_t until);
  // The final images from `state` on.
  at::Tensor finish(TrajectoryState state) { return advance(std::move(state), steps()).at.x; }
  // Runs evaluations [first, last) from `state` (the sampler's one loop, with this batch's
  // noise); `denoise` gives each one's model output and counts what it runs (count_step_run).
  SamplerState run_steps(SamplerState state, int64_t first, int64_t last,
                         const DenoiseFn& denoise) const;
  // MSE of final images against the uncached reference.
  double error(const at::Tensor& final) const;

  // Cost so far: block-loop steps run on the judge batch (the reference's included), and the
  // uncached reference's own count and seconds, the unit a calibration's cost is stated in.
  int64_t step_runs() const { return step_runs_; }
  void count_step_run() { ++step_runs_; }
  double reference_seconds() const { return reference_seconds_; }

 private:
  const BlockLoop& loop_;
  at::Tensor x_T_, labels_;
  std::vector<at::Tensor> noise_;  // per step (undefined where the sampler draws none)
  at::Tensor reference_;
  int64_t step_runs_ = 0;
  double reference_seconds_ = 0.0;
};

}  // namespace eoc

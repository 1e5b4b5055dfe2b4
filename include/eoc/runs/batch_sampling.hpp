// Batches of images through the sampler loop: each batch's seeds and labels, the denoise
// callback over the block loop, the per-batch check that no model output went NaN or Inf, and
// the one loop over a run's batches that sample and compare share.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "eoc/base/log.hpp"
#include "eoc/cache/session.hpp"
#include "eoc/diffusion/sampler.hpp"
#include "eoc/diffusion/seeds.hpp"
#include "eoc/setup/run_setup.hpp"

namespace eoc {

// Index batches of at most batch_size, in order.
std::vector<std::vector<int64_t>> make_batches(const std::vector<int64_t>& indices,
                                               int64_t batch_size);

// x_T, labels and the noise stream of the images `indices`.
BatchStart begin_batch(const RunSetup& run, const std::vector<int64_t>& indices);

// The guided model output (B, ., H, W) of each evaluation, as the sampler gets it.
using StepOutputFn = std::function<void(int64_t evaluation, const at::Tensor& out)>;

// Samples the images `indices` -> (B, C, H, W) float32 on the run's device, through `session`
// (a fresh one per batch: its statistics are the batch's). With check_finite, an output that
// went NaN or Inf is an Error naming the step and the first block that made it so. `on_output`,
// when given, sees every evaluation's model output.
at::Tensor sample_batch(const RunSetup& run, const std::vector<int64_t>& indices,
                        CacheSession& session, const StepDoneFn& step_done = {},
                        const StepOutputFn& on_output = {});

// What sample_batches measured.
struct BatchesRun {
  CacheStats stats;                 // every batch's counts added
  std::vector<double> seconds;      // per batch: sampling, `done` and a device sync
  std::vector<double> cpu_seconds;  // the same per batch, the process's CPU seconds
};

// Samples `batches` in order, each through a fresh session of `plan` and `corrector`, and hands
// each batch's images to `done`. Seeds the official stream first (--seed-mode official), so a
// run's images do not depend on what ran before it in the process. Advances `progress` by the
// batch's images after every step.
using BatchDoneFn = std::function<void(const std::vector<int64_t>& indices, at::Tensor images)>;
BatchesRun sample_batches(const RunSetup& run, const std::vector<std::vector<int64_t>>& batches,
                          const CachePlan& plan, const Corrector& corrector,
                          log::Progress& progress, const BatchDoneFn& done);

}  // namespace eoc

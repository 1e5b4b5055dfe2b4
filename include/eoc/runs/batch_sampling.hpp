// One batch of images through the sampler loop: its seeds and labels, the denoise callback over
// the block loop, and the per-batch check that no model output went NaN or Inf.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "eoc/cache/session.hpp"
#include "eoc/diffusion/sampler.hpp"
#include "eoc/diffusion/seeds.hpp"
#include "eoc/runs/run_setup.hpp"

namespace eoc {

// Index batches of at most batch_size, in order.
std::vector<std::vector<int64_t>> make_batches(const std::vector<int64_t>& indices,
                                               int64_t batch_size);

// x_T, labels and the noise stream of the images `indices`.
BatchStart begin_batch(const RunSetup& run, const std::vector<int64_t>& indices);

// Samples the images `indices` -> (B, C, H, W) float32 on the run's device, through `session`
// (a fresh one per batch: its statistics are the batch's). With check_finite, an output that
// went NaN or Inf is an Error naming the step and the first block that made it so.
at::Tensor sample_batch(const RunSetup& run, const std::vector<int64_t>& indices,
                        CacheSession& session, const StepDoneFn& step_done = {});

}  // namespace eoc

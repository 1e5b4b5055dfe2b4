// The block loop with the cache hook. C++ drives the model's contract methods block by block;
// between them the hook asks the cache session, per (step, block, branch), whether to compute
// the branch or reuse its cached output. A reused output passes through the session's corrector
// and, either way, the CURRENT step's gate multiplies it into the tokens
// (cache/gated_update.hpp). Embedding, every adaLN modulation and the final layer always run.
// Classifier-free guidance is applied here, so the result is the output the sampler uses.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

#include "eoc/cache/session.hpp"
#include "eoc/diffusion/guidance.hpp"
#include "eoc/diffusion/sampler.hpp"
#include "eoc/model/dit_model.hpp"

namespace eoc {

// Rows of a CPU tensor (rows, ...) grouped by their bytes: `first` (count,) int64 holds each
// group's first row, in row order; `group` (rows,) int64 each row's group. A row-wise op that
// is batch invariant gives equal rows equal outputs, so it can run on `first` and be gathered
// back with `group`, bit for bit the same as running it on every row.
struct RowGroups {
  at::Tensor first, group;
  int64_t count = 0;
};
RowGroups group_equal_rows(const at::Tensor& rows);

// Borrows the model and the sampler (both must outlive the loop: a RunSetup owns them and
// makes loops as it needs them; copies are cheap). Holds no per-run state: that is the session's.
class BlockLoop {
 public:
  BlockLoop(const DitModel& model, const Sampler& sampler, Guidance guidance);

  // Guided model output (B, out_channels, H, W) float32 for the model input x (B, C, H, W) at
  // the sampler's evaluation `step` (the model time it says) with labels y (B,) int64, each
  // branch computed or reused as `session` says. A velocity model's sigma half is dropped
  // before guidance, as SiT's forward does (B, C, H, W).
  at::Tensor run(const at::Tensor& x, int64_t step, const at::Tensor& y,
                 CacheSession& session) const;

  // The same step through the module's own forward (no hook): the baseline for measuring what
  // the hook itself costs.
  at::Tensor run_whole_forward(const at::Tensor& x, int64_t step, const at::Tensor& y) const;

  const DitModel& model() const { return model_; }
  const Guidance& guidance() const { return guidance_; }
  const Sampler& sampler() const { return sampler_; }
  int64_t evaluations() const { return sampler_.evaluations(); }

 private:
  // The model time of evaluation `step` for `rows` rows: int64 (version-1 modules) or float32.
  at::Tensor time(int64_t step, int64_t rows) const;
  at::Tensor output(const at::Tensor& out, int64_t step) const;
  const DitModel& model_;
  const Sampler& sampler_;
  Guidance guidance_;
};

}  // namespace eoc

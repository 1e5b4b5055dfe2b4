// The block loop with the cache hook. C++ drives the model's contract methods block by block;
// between them each (step, block, branch) is computed or reused as the plan says, a reused
// feature passing through the corrector and then the CURRENT step's gate. Embedding, every
// adaLN modulation and the final layer always run. Classifier-free guidance is applied here,
// so the result is the output the sampler uses.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "eoc/cache_plan.hpp"
#include "eoc/correctors.hpp"
#include "eoc/diffusion.hpp"
#include "eoc/feature_cache.hpp"
#include "eoc/guidance.hpp"
#include "eoc/model.hpp"

namespace eoc {

struct CacheStats {
  std::vector<int64_t> computed;  // branch computations per step
  std::vector<int64_t> reused;    // branch reuses per step
  int64_t peak_cache_bytes = 0;   // the feature cache's size at its largest
  explicit CacheStats(int64_t steps = 0) : computed(steps, 0), reused(steps, 0) {}
  int64_t total_computed() const;
  int64_t total_reused() const;
  double caching_level() const;  // reused / (computed + reused)
};

// Sees every branch output the loop computes (calibration's prior extraction uses it).
class BranchObserver {
 public:
  virtual ~BranchObserver() = default;
  virtual void on_computed(int64_t step, int64_t block, Branch b, const at::Tensor& feature) = 0;
  // The token state (2B, T, D) right after branch `b` of `block` was added (computed or reused).
  virtual void on_added(int64_t /*step*/, int64_t /*block*/, Branch /*b*/, const at::Tensor& /*tokens*/) {}
};

// Rows of a CPU tensor (rows, ...) grouped by their bytes: `first` (count,) int64 holds each
// group's first row, in row order; `group` (rows,) int64 each row's group. A row-wise op that
// is batch invariant gives equal rows equal outputs, so it can run on `first` and be gathered
// back with `group`, bit for bit the same as running it on every row.
struct RowGroups {
  at::Tensor first, group;
  int64_t count = 0;
};
RowGroups group_equal_rows(const at::Tensor& rows);

class CachedDit {
 public:
  CachedDit(const DitModel& model, const DiffusionSchedule& schedule, Guidance guidance);

  // Model output for state x (B, C, H, W) at sampling step k with labels y (B,) int64, guided.
  // Reused entries come from `cache` through `corrector`; computed ones are stored into it when
  // `store` is set. `stats` and `observer` may be null.
  at::Tensor run(const at::Tensor& x, int64_t step, const at::Tensor& y, const CachePlan& plan,
                 FeatureCache& cache, const Corrector& corrector, CacheStats* stats = nullptr,
                 BranchObserver* observer = nullptr, bool store = true) const;

  // The same step through the module's own forward (no hook): the baseline for measuring what
  // the hook itself costs.
  at::Tensor run_whole_forward(const at::Tensor& x, int64_t step, const at::Tensor& y) const;

  // The same step with nothing cached (the uncached reference output).
  at::Tensor run_uncached(const at::Tensor& x, int64_t step, const at::Tensor& y,
                          BranchObserver* observer = nullptr) const;

  const DitModel& model() const { return model_; }
  const Guidance& guidance() const { return guidance_; }
  int64_t timestep(int64_t step) const;  // original t of sampling step k

 private:
  at::Tensor run_blocks(const at::Tensor& x, int64_t step, const at::Tensor& y,
                        const CachePlan* plan, FeatureCache* cache, const Corrector* corrector,
                        CacheStats* stats, BranchObserver* observer, bool store) const;
  const DitModel& model_;
  const DiffusionSchedule& schedule_;
  Guidance guidance_;
};

}  // namespace eoc

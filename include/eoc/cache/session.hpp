// A cache session: everything one trajectory's caching needs, in one object the block loop
// takes. It holds the plan (which entries are reused), the per-run feature cache, the corrector
// (what a reused entry becomes), the counts, and an optional observer. Copying a session forks
// the trajectory: the copy holds the same features (tensors are shared, never written) and goes
// on independently, which is how calibration tries candidates from a point of a trajectory.
//
// Three kinds:
//  - cached:    the plan's reused entries come from the cache through the corrector; computed
//               ones are stored (only when the plan reuses anything: an uncached run keeps no
//               features alive).
//  - uncached:  computes everything and stores nothing.
//  - shadowing: computes everything (the true trajectory) while keeping the cache the plan
//               would keep, and shows the observer each true feature beside the entry the plan
//               would have reused (EOC's caching differences are measured this way).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "eoc/cache/correctors.hpp"
#include "eoc/cache/feature_cache.hpp"
#include "eoc/cache/gated_update.hpp"
#include "eoc/cache/plan.hpp"

namespace eoc {

struct CacheStats {
  std::vector<int64_t> computed;  // branch computations per step
  std::vector<int64_t> reused;    // branch reuses per step
  int64_t peak_cache_bytes = 0;   // the feature cache's size at its largest
  explicit CacheStats(int64_t steps = 0) : computed(steps, 0), reused(steps, 0) {}
  int64_t total_computed() const;
  int64_t total_reused() const;
  double caching_level() const;  // reused / (computed + reused)
  // Adds another batch's counts (same step count); the peak is the larger one.
  void add(const CacheStats& other);
};

// Sees what the block loop does, branch by branch.
class BranchObserver {
 public:
  virtual ~BranchObserver() = default;
  // A shadowing session at an entry its plan reuses: the true output `truth` (rows, T, D) beside
  // the entry a cached run would have reused.
  virtual void on_shadowed(int64_t /*step*/, int64_t /*block*/, Branch /*b*/,
                           const at::Tensor& /*truth*/, const CachedFeature& /*cached*/) {}
  // The token state (rows, T, D) right after branch `b` of `block` was added (computed or
  // reused). Asking for it makes the loop add every branch at once instead of in batches.
  virtual void on_added(int64_t /*step*/, int64_t /*block*/, Branch /*b*/,
                        const at::Tensor& /*tokens*/) {}
};

// Owns its plan, feature cache and counts; borrows the corrector (which must outlive the
// session and every copy of it: a run's CacheSetup or a calibration owns it) and the observer
// (which must outlive the steps it watches).
class CacheSession {
 public:
  // A cached run of `plan`, from an empty cache.
  CacheSession(CachePlan plan, const Corrector& corrector);
  // An uncached run (steps x depth, nothing reused, nothing kept).
  static CacheSession uncached(int64_t steps, int64_t depth);
  // An uncached run that keeps the cache `plan` would keep (with F[p], for every corrector).
  static CacheSession shadowing(CachePlan plan);
  // A cached run of this session's plan under `corrector`, continuing from this session's
  // features (a shadowing session's cache is the one the cached run would hold at this point).
  CacheSession cached_from_here(const Corrector& corrector) const;
  // This cached session continued under another plan of the same shape: the budget search
  // tries a changed schedule from a point of a trajectory. The caller guarantees the steps run so
  // far are decided alike by both plans.
  CacheSession replanned(CachePlan plan) const;

  void watch(BranchObserver& observer) { observer_ = &observer; }
  BranchObserver* observer() const { return observer_; }

  const CachePlan& plan() const { return plan_; }
  const Corrector& corrector() const { return *corrector_; }
  const CacheStats& stats() const { return stats_; }
  int64_t cache_bytes() const { return cache_.bytes(); }

  // The block loop's questions, per (step, block, branch), in block order:
  // whether the entry is reused (never in uncached and shadowing sessions);
  bool reuses(int64_t step, int64_t block, Branch b) const;
  // the reused entry as a term of the residual sum under the current `gate`;
  GatedTerm reused_term(int64_t step, int64_t block, Branch b, const at::Tensor& gate);
  // a computed output: counted, stored as the session's kind says, shown to the observer.
  void computed(int64_t step, int64_t block, Branch b, const at::Tensor& feature);

 private:
  enum class Kind { cached, uncached, shadowing };
  CacheSession(Kind kind, CachePlan plan, const Corrector& corrector, FeatureCache cache);
  Kind kind_;
  CachePlan plan_;
  const Corrector* corrector_;
  FeatureCache cache_;
  CacheStats stats_;
  bool stores_;  // whether computed outputs are kept
  BranchObserver* observer_ = nullptr;
};

}  // namespace eoc

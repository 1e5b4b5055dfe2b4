// A cache session: everything one trajectory's caching needs, in one object the block loop
// takes. It holds the plan (which entries are reused), the per-run feature cache, the corrector
// (what a reused entry becomes), the counts, and an optional observer. Copying a session forks
// the trajectory: the copy holds the same features (tensors are shared, never written) and goes
// on independently, which is how calibration tries candidates from a point of a trajectory.
//
// Three kinds:
//  - cached:    the plan's reused entries come from the cache through the corrector; computed
//               ones are stored (only when the plan reuses anything: an uncached run keeps no
//               features alive). With a gated plan, each image has its own gate and its own
//               feature cache (its CFG rows together), and the block loop computes a branch on
//               the rows of the images that compute and forecasts it for the others, so an
//               image's bits and decisions do not depend on which images share its batch.
//  - uncached:  computes everything and stores nothing.
//  - shadowing: computes everything (the true trajectory) while keeping the cache the plan
//               would keep, and shows the observer each true feature beside the entry the plan
//               would have reused (EOC's caching differences are measured this way).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eoc/base/stopwatch.hpp"
#include "eoc/cache/correctors.hpp"
#include "eoc/cache/feature_cache.hpp"
#include "eoc/cache/gate.hpp"
#include "eoc/cache/gated_update.hpp"
#include "eoc/cache/plan.hpp"

namespace eoc {

// Counts in image-branches: a branch computed for a batch of B images counts B.
struct CacheStats {
  std::vector<int64_t> computed;  // branch computations per step
  std::vector<int64_t> reused;    // branch reuses per step
  int64_t peak_cache_bytes = 0;   // the feature cache's size at its largest
  // Gated runs, per image in batch order (batches appended): the fraction of its branches
  // computed, and the steps it reused; the gate's signals at the steps it could reuse.
  std::vector<double> image_computed_fraction;
  std::vector<int64_t> image_reused_steps;
  std::vector<std::string> image_decisions;  // per step 'c' computed, 'r' reused
  std::vector<double> gate_signals;
  // Per image, every step's measured signal (ImageGate::step_signals: NaN where unknown).
  std::vector<std::vector<double>> image_step_signals;
  // Gated runs, per batch (sessions appended): the process CPU seconds of the gate's own work,
  // timed where it happens (CacheSession::gate_work): its signals, and splitting a batch into
  // the images that compute and those that reuse (gathering and scattering their rows, each
  // image's own copy of a computed output). Forecasting the reused images is not in it: any
  // cache pays for its reuse.
  std::vector<double> gate_cpu_seconds;
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
  // A branch just computed: its output (rows, T, D) for the rows that computed it (all of the
  // batch, or with a gate the rows of the images that compute).
  virtual void on_computed(int64_t /*step*/, int64_t /*block*/, Branch /*b*/,
                           const at::Tensor& /*feature*/) {}
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
  // The counts so far (with a gate, the per-image figures too).
  CacheStats stats() const;
  int64_t cache_bytes() const { return cache_.bytes(); }

  // The block loop says at the start of every step how many images the batch holds and how
  // many rows each has (2 with CFG: rows i and images + i). Counts are in image-branches.
  void begin_step(int64_t step, int64_t images, int64_t halves);

  // The block loop's questions, per (step, block, branch), in block order:
  // whether the entry is reused (never in uncached, shadowing and gated sessions);
  bool reuses(int64_t step, int64_t block, Branch b) const;
  // the reused entry as a term of the residual sum under the current `gate`;
  GatedTerm reused_term(int64_t step, int64_t block, Branch b, const at::Tensor& gate);
  // a computed output: counted, stored as the session's kind says, shown to the observer.
  void computed(int64_t step, int64_t block, Branch b, const at::Tensor& feature);

  // A gated session (its plan has a gate). The loop asks, at the rule's decision block
  // (GateSpec::decision_block), for the step's per-image decisions, handing what the rules read:
  // the model input x (images, C, H, W), the embedded tokens and the current tokens (rows, T, D),
  // and block 0's attention shift and scale (rows, D).
  bool gated() const { return gate_.has_value(); }
  struct GateView {
    at::Tensor x, embedded, tokens, shift0, scale0;
  };
  void decide(int64_t step, const GateView& view);
  // The images (indices into the batch) that compute and that reuse (block, *) at `step`: all
  // compute outside the gated blocks.
  struct Split {
    std::vector<int64_t> compute, reuse;
  };
  Split split(int64_t step, int64_t block) const;
  // The rows of `images` in the model batch, conditional half first ((h * images + i) order of
  // the batch is kept: rows of half h, in the order of `images`), on `device`.
  at::Tensor rows_of(const std::vector<int64_t>& images, const at::Device& device) const;
  // The branch output f (rows_of(images), T, D) computed for `images`: counted and cached.
  void computed_images(int64_t step, int64_t block, Branch b, const std::vector<int64_t>& images,
                       const at::Tensor& f);
  // The corrected features of the reused `images`, counted, written into their rows of `out`
  // (the branch's output for the whole batch, (rows, T, D), contiguous).
  void forecast_images(int64_t step, int64_t block, Branch b, const std::vector<int64_t>& images,
                       at::Tensor& out);
  // After the step: the guided output (images, C, H, W) for x (easycache's k).
  void step_output(int64_t step, const at::Tensor& x, const at::Tensor& out);
  // Times a scope as the gate's own work (CacheStats::gate_cpu_seconds): the block loop's row
  // gathers and scatters; decide, computed_images and step_output time themselves.
  ScopedCpuSeconds gate_work() { return ScopedCpuSeconds(gate_cpu_seconds_); }

 private:
  enum class Kind { cached, uncached, shadowing };
  // One image of a gated batch: its gate, its cache (its rows only), and what its rule compares
  // with: fbcache R at the last computed step, teacache m at the previous step, easycache x at
  // the previous step, and x and the output at the last computed step.
  struct ImageState {
    ImageGate gate;
    FeatureCache cache;
    at::Tensor reference, x_prev, x_computed, out_computed;
    int64_t computed_branches = 0;
  };
  CacheSession(Kind kind, CachePlan plan, const Corrector& corrector, FeatureCache cache);
  Kind kind_;
  CachePlan plan_;
  const Corrector* corrector_;
  FeatureCache cache_;
  CacheStats stats_;
  bool stores_;  // whether computed outputs are kept
  BranchObserver* observer_ = nullptr;
  int64_t images_ = 1, halves_ = 1;
  // Gated sessions: per image, made at the first step.
  std::optional<GateSpec> gate_;
  std::vector<ImageState> image_states_;
  std::vector<uint8_t> reuse_now_;  // per image, the current step's decision
  int64_t decided_step_ = -1;
  double gate_cpu_seconds_ = 0.0;
};

}  // namespace eoc

// Cache layer (plan, per-run feature cache, correctors, the block loop and its hook, EOC's
// corrector and calibration; uses model, diffusion and base; knows no files, JSON or flags).
//
// A cache plan: decided before sampling, identical for every image of a batch, it marks each
// (step k, block l, branch b) computed or reused; or a gate (cache/gate.hpp), which decides
// while sampling, per image, and whose static part computes everything. Steps count in sampling
// order (k = 0 first). This file is the one home of plans: every way to make one is a factory below
// (a mask FILE is read by files/mask_file.hpp into the flags `masked` takes), and the layout string
// that priors and run records hold is written and read here only.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eoc/cache/gate.hpp"
#include "eoc/model/dit_model.hpp"

namespace eoc {

class CachePlan {
 public:
  // Computes everything; `spec` names the plan in reports and messages ("fora:3", "mask:m.json").
  CachePlan(int64_t steps, int64_t depth, std::string spec);

  static CachePlan none(int64_t steps, int64_t depth);
  // FORA: with i = S-1-k, step k is computed when i == S-1 or i % interval == 0, else reused.
  // interval >= 1.
  static CachePlan fora(int64_t steps, int64_t depth, int64_t interval);
  // Computes exactly the steps `computed` (every block and branch) and reuses the rest: the
  // schedules of the budget search.
  static CachePlan computing(int64_t steps, int64_t depth, const std::vector<int64_t>& computed,
                             std::string spec);
  // From per-entry reuse flags, indexed (step * depth + block) * 2 + branch (a user's mask),
  // validated: Error naming `spec` when an entry is reused before it was ever computed.
  static CachePlan masked(int64_t steps, int64_t depth, const std::vector<bool>& reuse,
                          std::string spec);
  // A run-time gate; the spec is the gate's text.
  static CachePlan gated(int64_t steps, int64_t depth, const GateSpec& gate);
  // From a layout() string; nothing when it is not one of steps x depth.
  static std::optional<CachePlan> from_layout(int64_t steps, int64_t depth,
                                              const std::string& layout, std::string spec);

  int64_t steps() const { return steps_; }
  int64_t depth() const { return depth_; }
  const std::string& spec() const { return spec_; }
  const std::optional<GateSpec>& gate() const { return gate_; }
  // Whether anything may be reused: a static reuse, or a gate.
  bool may_reuse() const { return gate_.has_value() || reused_total() > 0; }

  bool reuses(int64_t step, int64_t block, Branch b) const {
    return reuse_[index(step, block, b)] != 0;
  }
  void set_reuse(int64_t step, int64_t block, Branch b, bool reuse);
  // Computes every branch of steps 0..k-1 (a warm-up); the spec gains "+warmup:k".
  void compute_first(int64_t k);
  bool step_reuses_any(int64_t step) const;
  int64_t reused_in_step(int64_t step) const;  // branch count
  int64_t reused_total() const;
  // Fraction of the steps * depth * 2 branch computations served from cache.
  double caching_level() const;
  // Error (the plan came from the user's mask) when an entry is reused before its (block,
  // branch) was ever computed.
  void validate() const;
  // Per step, one character per (block, branch): 'c' compute, 'r' reuse; "|" between steps.
  // Stable: priors and run records hold it to detect a plan change (from_layout reads it).
  std::string layout() const;

 private:
  size_t index(int64_t step, int64_t block, Branch b) const {
    return static_cast<size_t>((step * depth_ + block) * 2 + static_cast<int>(b));
  }
  int64_t steps_;
  int64_t depth_;
  std::string spec_;
  std::vector<uint8_t> reuse_;
  std::optional<GateSpec> gate_;
};

}  // namespace eoc

// A cache plan: decided before sampling, identical for every image of a batch, it marks each
// (step k, block l, branch b) computed or reused. Steps count in sampling order (k = 0 first).
// Specs: "none", "fora:N" (FORA's static interval), "mask:FILE.json" (docs/CACHE_MASKS.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "eoc/model.hpp"

namespace eoc {

class CachePlan {
 public:
  CachePlan(int64_t steps, int64_t depth, std::string spec);  // computes everything

  static CachePlan none(int64_t steps, int64_t depth);
  // FORA: with i = S-1-k, step k is computed when i == S-1 or i % interval == 0, else reused.
  static CachePlan fora(int64_t steps, int64_t depth, int64_t interval);
  // Parses a mask document; `source` names it in errors.
  static CachePlan from_mask_json(const std::string& text, const std::string& source,
                                  int64_t steps, int64_t depth);

  int64_t steps() const { return steps_; }
  int64_t depth() const { return depth_; }
  const std::string& spec() const { return spec_; }

  bool reuses(int64_t step, int64_t block, Branch b) const {
    return reuse_[index(step, block, b)] != 0;
  }
  void set_reuse(int64_t step, int64_t block, Branch b, bool reuse);
  bool step_reuses_any(int64_t step) const;
  int64_t reused_in_step(int64_t step) const;  // branch count
  int64_t reused_total() const;
  // Fraction of the steps * depth * 2 branch computations served from cache.
  double caching_level() const;
  // Throws when an entry is reused before its (block, branch) was ever computed.
  void validate() const;
  // Per step, one character per (block, branch): 'c' compute, 'r' reuse; "|" between steps.
  // Stable: priors and run reports record it to detect a plan change.
  std::string layout() const;

 private:
  size_t index(int64_t step, int64_t block, Branch b) const {
    return static_cast<size_t>((step * depth_ + block) * 2 + static_cast<int>(b));
  }
  int64_t steps_;
  int64_t depth_;
  std::string spec_;
  std::vector<uint8_t> reuse_;
};

// Parses "none" | "fora:N" | "mask:PATH"; Error naming the spec when malformed.
CachePlan parse_cache_plan(const std::string& spec, int64_t steps, int64_t depth);

}  // namespace eoc

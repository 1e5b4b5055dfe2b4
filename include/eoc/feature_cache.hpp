// Per-run cache state: for every (block, branch) the last computed un-gated branch output F[r]
// over the whole model batch (with CFG: 2B rows, conditional half first), and where a corrector
// needs it the difference to the computed value before it, F[r] - F[p].
// Memory: one tensor per (block, branch), two when differences are kept.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "eoc/model.hpp"

namespace eoc {

struct CachedFeature {
  at::Tensor value;  // F[r], (rows, T, D)
  at::Tensor delta;  // F[r] - F[p], undefined until two values were stored
  int64_t step = -1;       // r
  int64_t prev_step = -1;  // p, -1 when none
};

class FeatureCache {
 public:
  FeatureCache(int64_t depth, bool keep_delta);
  void store(int64_t step, int64_t block, Branch b, const at::Tensor& feature);
  const CachedFeature& get(int64_t block, Branch b) const;
  bool keeps_delta() const { return keep_delta_; }
  void clear();
  int64_t bytes() const;

 private:
  bool keep_delta_;
  std::vector<CachedFeature> entries_;  // [block * 2 + branch]
};

}  // namespace eoc

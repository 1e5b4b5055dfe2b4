// Per-run cache state: for every (block, branch) the last computed un-gated branch output F[r]
// over the whole model batch (with CFG: 2B rows, conditional half first), and where a corrector
// needs it the computed value before it, F[p] (kept by reference: storing costs no operation).
// Memory: one tensor per (block, branch), two when previous values are kept.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "eoc/model/dit_model.hpp"

namespace eoc {

struct CachedFeature {
  at::Tensor value;  // F[r], (rows, T, D)
  at::Tensor previous;  // F[p], undefined until two values were stored (or not kept)
  int64_t step = -1;       // r
  int64_t prev_step = -1;  // p, -1 when none
};

class FeatureCache {
 public:
  FeatureCache(int64_t depth, bool keep_previous);
  void store(int64_t step, int64_t block, Branch b, const at::Tensor& feature);
  const CachedFeature& get(int64_t block, Branch b) const;
  bool keeps_previous() const { return keep_previous_; }
  void clear();
  int64_t bytes() const;

 private:
  bool keep_previous_;
  std::vector<CachedFeature> entries_;  // [block * 2 + branch]
};

}  // namespace eoc

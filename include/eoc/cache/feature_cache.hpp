// Per-run cache state: for every (block, branch) the last computed un-gated branch output F[r]
// over the whole model batch (with CFG: 2B rows, conditional half first), and what the
// corrector needs beside it (History): the computed value before it, F[p] (kept by reference:
// storing costs no operation), TaylorSeer's finite-difference derivative estimates, or the
// values of the last two steps whether computed or forecast (FoCa's recursion).
// Memory: one tensor per (block, branch); two with F[p]; O + 1 with derivatives of order O;
// up to four with the recursion (F[r], F[p] and the two latest forecasts).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "eoc/model/dit_model.hpp"

namespace eoc {

// Highest forecast order (TaylorSeer's orders 1 to 4).
constexpr int kMaxTaylorOrder = 4;

// What an entry keeps beside F[r].
struct History {
  bool previous = false;   // F[p]: first-order forecasts (taylor, EOC's extrapolate/taylor forms)
  int order = 0;           // derivative estimates D1..D_order (taylor:O, O >= 2); 0 = none
  bool recursive = false;  // the values at the last two steps, forecasts included (foca)
};

struct CachedFeature {
  at::Tensor value;        // F[r], (rows, T, D)
  at::Tensor previous;     // F[p], undefined until two values were stored (or not kept)
  int64_t step = -1;       // r
  int64_t prev_step = -1;  // p, -1 when none
  // D1, D2, ... at step r (as many as earlier computed steps allow, at most History::order):
  // D(i+1) = (Di - Di at the previous computed step) / (r - that step), D0 = F.
  std::vector<at::Tensor> derivatives;
  // With History::recursive: the entry's value at the latest step it was visited (computed:
  // F[r]; reused: the forecast made there) and at the step before (undefined until two steps
  // were visited).
  at::Tensor latest;
  at::Tensor before_latest;
  int64_t latest_step = -1;
};

class FeatureCache {
 public:
  FeatureCache(int64_t depth, History history);
  FeatureCache(int64_t depth, bool keep_previous)
      : FeatureCache(depth, History{keep_previous, 0}) {}
  void store(int64_t step, int64_t block, Branch b, const at::Tensor& feature);
  // A recursive corrector's forecast for a reused entry at `step` (History::recursive only).
  void note_forecast(int64_t step, int64_t block, Branch b, const at::Tensor& forecast);
  const CachedFeature& get(int64_t block, Branch b) const;
  bool keeps_previous() const { return history_.previous; }
  const History& history() const { return history_; }
  void clear();
  int64_t bytes() const;

 private:
  History history_;
  std::vector<CachedFeature> entries_;  // [block * 2 + branch]
};

}  // namespace eoc

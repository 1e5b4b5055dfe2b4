// The hook's residual update: the block loop adds each branch to the tokens as gate * F_hat,
// where F_hat is a computed branch's output or a reused entry corrected (cache/correctors.hpp).
// Consecutive terms wait until a branch needs the tokens, then go in one pass.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "eoc/cache/correctors.hpp"
#include "eoc/cache/feature_cache.hpp"

namespace eoc {

// One term of the block loop's residual sum: gate (rows, D) times F_hat of `entry` under
// `correction` (a computed branch is a term with the default Correction, F_hat = its output).
struct GatedTerm {
  at::Tensor gate;
  Correction correction;
  CachedFeature entry;
};

// tokens + gate_1 * F_hat_1 + gate_2 * F_hat_2 + ..., added in order, each gate broadcast over
// the T tokens. For float32 CPU tensors (features contiguous) it updates `tokens` in place in
// one pass (each term's features read once), with per element the same float operations as
// adding the terms one at a time, and returns it, first copying non-contiguous tokens (the
// embedding's layout) into a new tensor. Otherwise (CUDA, bf16, fp16) it returns a new tensor
// made by one ATen addcmul per term, which rounds as that kernel does (a fused multiply-add
// where the device has one; bf16 and fp16 rounded once per term).
at::Tensor add_gated_terms(at::Tensor tokens, const std::vector<GatedTerm>& terms);

}  // namespace eoc

// Per-element loops over cache entries, for the work a gated session does image by image: each
// image of a gated batch has its own small cache, so a forecast or a store there is a handful of
// tiny tensors, and on the CPU the cost of an ATen operation's dispatch (microseconds) then
// outweighs its arithmetic. These loops do the same float operations in one pass with no
// temporary tensors. Each returns false (having done nothing) where it does not apply, and the
// caller takes the ATen formula instead (CUDA, bf16, fp16, layouts other than below).
//
// Shapes: every tensor is (R, T, D) with each of its R rows contiguous (stride(1) == D,
// stride(2) == 1); rows may be apart (a view of one image's CFG rows in a batch tensor). Per
// element the loops give the same bits whatever R or the batch the rows come from (the file is
// compiled with -ffp-contract=off, so vectorized and scalar elements round alike).
#pragma once
#include <ATen/ATen.h>

#include <cstddef>
#include <vector>

#include "eoc/cache/correctors.hpp"
#include "eoc/cache/feature_cache.hpp"

namespace eoc {

// TaylorSeer's new derivative estimates when F is computed at a step dk after the entry's
// value: D1 = (F - F[r]) / dk, D(i+1) = (Di - Di at r) / dk, for i < levels (levels <= the
// entry's estimates + 1). The same float operations as ATen's sub and div, so the same bits.
// The estimates are rows of one new tensor (levels, R, T, D). Empty when the loop does not
// apply.
std::vector<at::Tensor> derivative_estimates_loop(const at::Tensor& feature,
                                                  const CachedFeature& entry, double dk,
                                                  size_t levels);

// dst = F_hat of `entry` under a coefficient correction with scalar scale and trend or a
// series (the fused residual update's operations, cache/gated_update.cpp). False for vector
// coefficients.
bool write_corrected_loop(at::Tensor& dst, const Correction& c, const CachedFeature& entry);

// dst = FoCa's forecast latest + ((latest - before) + slope) / 2 (cache/correctors.hpp), with
// slope = (F[r] - F[p]) / dk when `has_slope`, else latest - before. False also when the entry
// has no value before the latest (the corrector's case: F_hat = latest).
bool write_foca_loop(at::Tensor& dst, const CachedFeature& entry, bool has_slope, double dk);

}  // namespace eoc

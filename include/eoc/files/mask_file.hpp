// Files layer (eoc's own file formats: cache masks, EOC priors, --out-dir run records, and the
// run settings table they share; uses the layers below it, never runs/ or cli/).
//
// The cache mask format (docs/CACHE_MASKS.md): one entry per sampling step, "compute" /
// "reuse" or per block {"attn": [...], "mlp": [...]}. Reading it gives a CachePlan
// (CachePlan::masked, validated); writing it takes one.
#pragma once
#include <cstdint>
#include <string>

#include "eoc/cache/plan.hpp"

namespace eoc {

// Parses a mask document; `source` (its path) names it in errors and in the plan's spec.
CachePlan plan_from_mask_json(const std::string& text, const std::string& source, int64_t steps,
                              int64_t depth);

// The mask document of `plan` (one "compute"/"reuse" per step, or per-block lists where a step
// mixes), which plan_from_mask_json reads back to the same layout.
std::string mask_json_text(const CachePlan& plan, const std::string& description);

}  // namespace eoc

// Cache plans from --cache: FORA's interval, or a cache mask file (docs/CACHE_MASKS.md): one
// entry per sampling step, "compute" / "reuse" or per block {"attn": [...], "mlp": [...]}.
#pragma once
#include <cstdint>
#include <string>

#include "eoc/cache/plan.hpp"
#include "eoc/runs/options.hpp"

namespace eoc {

// Parses a mask document; `source` (its path) names it in errors and in the plan's spec.
CachePlan plan_from_mask_json(const std::string& text, const std::string& source, int64_t steps,
                              int64_t depth);

// The mask document of `plan` (one "compute"/"reuse" per step, or per-block lists where a step
// mixes), which plan_from_mask_json reads back to the same layout.
std::string mask_json_text(const CachePlan& plan, const std::string& description);

// Error unless 0 <= warmup <= steps (--warmup).
void check_warmup(int64_t warmup, int64_t steps);

// The plan --cache asks for over `steps` x `depth`, with every branch of the first `warmup`
// steps computed (--warmup), validated (nothing reused before it was computed). Error naming the
// mask file when it is missing or malformed.
CachePlan make_cache_plan(const CacheSpec& spec, int64_t steps, int64_t depth,
                          int64_t warmup = 0);

}  // namespace eoc

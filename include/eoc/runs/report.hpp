// What run reports are made of: memory, cache statistics, JSON files (clocks: base/stopwatch.hpp).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "eoc/base/stopwatch.hpp"
#include "eoc/cache/session.hpp"
#include "eoc/model/dit_model.hpp"

namespace eoc {

// The process's peak resident memory so far (bytes; 0 where unknown).
int64_t peak_host_memory_bytes();

// Counts per step, totals, the caching level and the estimated share of FLOPs saved.
nlohmann::json cache_stats_json(const CacheStats& stats, const ModelConfig& config);

// Writes JSON atomically with a trailing newline.
void write_json(const std::string& path, const nlohmann::json& doc);

}  // namespace eoc

// What run reports are made of: clocks, memory, cache statistics, JSON files.
#pragma once
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include "eoc/cache/session.hpp"
#include "eoc/model/dit_model.hpp"

namespace eoc {

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// CPU seconds (user + system, every thread) the process spent since construction: on a shared
// machine whose speed drifts, a steadier measure of work than wall time.
class CpuStopwatch {
 public:
  CpuStopwatch() : start_(process_cpu_seconds()) {}
  double seconds() const { return process_cpu_seconds() - start_; }
  static double process_cpu_seconds();

 private:
  double start_;
};

// The process's peak resident memory so far (bytes; 0 where unknown).
int64_t peak_host_memory_bytes();

// The current time as "2026-11-28T09:30:00Z", for reports and records.
std::string utc_now();

// Counts per step, totals, the caching level and the estimated share of FLOPs saved.
nlohmann::json cache_stats_json(const CacheStats& stats, const ModelConfig& config);

// Writes JSON atomically with a trailing newline.
void write_json(const std::string& path, const nlohmann::json& doc);

}  // namespace eoc

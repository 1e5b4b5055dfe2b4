#include "eoc/runs/report.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <ctime>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "eoc/io/files.hpp"

namespace eoc {

int64_t peak_host_memory_bytes() {
  struct rusage usage {};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

namespace {

// Percentile p (0..100) of `v` by linear interpolation between order statistics.
double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double at = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(at);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (at - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

nlohmann::json spread(const std::vector<double>& v) {
  return {{"min", percentile(v, 0)},
          {"p10", percentile(v, 10)},
          {"median", percentile(v, 50)},
          {"p90", percentile(v, 90)},
          {"max", percentile(v, 100)}};
}

// A gated run's per-image figures: their spread, and each image's decisions (up to a bound,
// so that a 50,000-image report stays small).
constexpr size_t kMaxImagesListed = 4096;

nlohmann::json gate_stats_json(const CacheStats& stats) {
  const auto& f = stats.image_computed_fraction;
  std::vector<double> reused(stats.image_reused_steps.begin(), stats.image_reused_steps.end());
  nlohmann::json per_image = nlohmann::json::array();
  for (size_t i = 0; i < f.size() && i < kMaxImagesListed; ++i)
    per_image.push_back({{"computed_fraction", f[i]},
                         {"reused_steps", stats.image_reused_steps[i]},
                         {"decisions", stats.image_decisions[i]}});
  return {{"images", f.size()},
          {"computed_fraction", spread(f)},
          {"reused_steps", spread(reused)},
          {"signal", spread(stats.gate_signals)},
          {"own_cpu_s",
           {{"total",
             std::accumulate(stats.gate_cpu_seconds.begin(), stats.gate_cpu_seconds.end(), 0.0)},
            {"batches", stats.gate_cpu_seconds}}},
          {"per_image_listed", per_image.size()},
          {"per_image", per_image}};
}

}  // namespace

nlohmann::json cache_stats_json(const CacheStats& stats, const ModelConfig& cfg) {
  // Estimated saving: reused branch FLOPs over all FLOPs of the same forwards.
  const double branch_avg = (cfg.attn_gflops() + cfg.mlp_gflops()) / 2.0;
  const int64_t steps = static_cast<int64_t>(stats.computed.size());
  const double total = stats.total_computed() + stats.total_reused();
  const double forwards = cfg.depth > 0 && total > 0 ? total / (2.0 * cfg.depth) : 0.0;
  const double saved = stats.total_reused() * branch_avg;
  const double all = forwards * cfg.gflops_per_forward();
  nlohmann::json out = {{"caching_level", stats.caching_level()},
                        {"computed_branches", stats.total_computed()},
                        {"reused_branches", stats.total_reused()},
                        {"computed_per_step", stats.computed},
                        {"reused_per_step", stats.reused},
                        {"steps", steps},
                        {"estimated_flops_saved", all > 0 ? saved / all : 0.0},
                        {"peak_cache_bytes", stats.peak_cache_bytes}};
  if (!stats.image_computed_fraction.empty()) out["gate"] = gate_stats_json(stats);
  return out;
}

void write_json(const std::string& path, const nlohmann::json& doc) {
  write_file_atomic(path, doc.dump(2) + "\n");
}

}  // namespace eoc

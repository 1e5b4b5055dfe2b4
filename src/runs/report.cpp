#include "eoc/runs/report.hpp"

#include <sys/resource.h>

#include <ctime>
#include <iomanip>
#include <sstream>

#include "eoc/io/files.hpp"

namespace eoc {

int64_t peak_host_memory_bytes() {
  struct rusage usage {};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

nlohmann::json cache_stats_json(const CacheStats& stats, const ModelConfig& cfg) {
  // Estimated saving: reused branch FLOPs over all FLOPs of the same forwards.
  const double branch_avg = (cfg.attn_gflops() + cfg.mlp_gflops()) / 2.0;
  const int64_t steps = static_cast<int64_t>(stats.computed.size());
  const double total = stats.total_computed() + stats.total_reused();
  const double forwards = cfg.depth > 0 && total > 0 ? total / (2.0 * cfg.depth) : 0.0;
  const double saved = stats.total_reused() * branch_avg;
  const double all = forwards * cfg.gflops_per_forward();
  return {{"caching_level", stats.caching_level()},
          {"computed_branches", stats.total_computed()},
          {"reused_branches", stats.total_reused()},
          {"computed_per_step", stats.computed},
          {"reused_per_step", stats.reused},
          {"steps", steps},
          {"estimated_flops_saved", all > 0 ? saved / all : 0.0},
          {"peak_cache_bytes", stats.peak_cache_bytes}};
}

void write_json(const std::string& path, const nlohmann::json& doc) {
  write_file_atomic(path, doc.dump(2) + "\n");
}

}  // namespace eoc

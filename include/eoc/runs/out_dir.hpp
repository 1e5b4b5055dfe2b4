// The per-image folder of `eoc sample --out-dir DIR` (docs/FID.md):
// DIR/{index:06d}.png   one RGB image per index, written atomically (temp name + rename)
// DIR/eoc-run-{I}-of-{N}.json   one record per shard: the run's settings for records
//     (runs/run_settings.hpp; compared between runs and by `eoc pack`) and informational fields
//     (paths, device, batch size).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "eoc/runs/shard.hpp"

namespace eoc {

constexpr const char* kRunRecordFormat = "eoc-sample-dir";
constexpr int kRunRecordVersion = 1;

std::string image_path(const std::string& dir, int64_t index);  // DIR/{index:06d}.png

// True when the file starts with the PNG signature and ends with the IEND chunk (a file cut
// short by a crash or a full disk fails this check); false when missing or unreadable.
bool png_is_complete(const std::string& path);

struct RunRecord {
  std::string path;
  nlohmann::json doc;  // {"format", "version", "settings", "shard", "info"}
};

// Every DIR/eoc-run-*.json, sorted by name. Error naming the file when one is malformed.
std::vector<RunRecord> read_run_records(const std::string& dir);

// Error naming the field and both files when any two records hold different settings.
void check_records_agree(const std::vector<RunRecord>& records, const std::string& dir);

// What one `eoc sample --out-dir` process makes.
struct OutDirWork {
  std::vector<int64_t> todo;  // indices to sample, increasing
  int64_t present = 0;        // complete images of this shard already in the folder
};

// Refuses a folder whose records hold other settings, removes this shard's stale temp files,
// writes this shard's record (before any sampling) and lists the indices still to make.
// `resume` false samples every owned index (grid or raw outputs need them all).
OutDirWork prepare_out_dir_work(const std::string& dir, const Shard& shard, int64_t num_samples,
                                const nlohmann::json& settings, const nlohmann::json& info,
                                bool resume);

}  // namespace eoc

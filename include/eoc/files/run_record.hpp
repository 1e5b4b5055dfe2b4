// The --out-dir folder's files (docs/FID.md):
// DIR/{index:06d}.png   one RGB image per index, written atomically (temp name + rename)
// DIR/eoc-run-{I}-of-{N}.json   one record per shard: the run's settings for records
//     (files/run_settings.hpp; compared between runs and by `eoc pack`) and informational fields
//     (paths, device, batch size, start time).
// How a sample run uses the folder (what to make, resuming) is runs/out_dir.hpp.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "eoc/setup/shard.hpp"

namespace eoc {

constexpr const char* kRunRecordFormat = "eoc-sample-dir";
constexpr int kRunRecordVersion = 1;

std::string image_path(const std::string& dir, int64_t index);  // DIR/{index:06d}.png
std::string run_record_name(const Shard& shard);                // eoc-run-{I}-of-{N}.json

struct RunRecord {
  std::string path;
  nlohmann::json doc;  // {"format", "version", "settings", "shard", "info"}
};

// Writes DIR/run_record_name(shard) atomically: `settings` (the run settings for records), the
// shard, and `info` with the start time added.
void write_run_record(const std::string& dir, const Shard& shard, const nlohmann::json& settings,
                      const nlohmann::json& info);

// Every DIR/eoc-run-*.json, sorted by name. Error naming the file when one is malformed.
std::vector<RunRecord> read_run_records(const std::string& dir);

// Error naming the field and both files when any two records hold different settings.
void check_records_agree(const std::vector<RunRecord>& records, const std::string& dir);

}  // namespace eoc

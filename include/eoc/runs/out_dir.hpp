// How `eoc sample --out-dir DIR` uses its folder (the folder's files: files/run_record.hpp):
// the records must agree with this run, an interrupted run's temp files go, this shard's record
// is written before sampling, and the images already complete are not made again.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "eoc/setup/shard.hpp"

namespace eoc {

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

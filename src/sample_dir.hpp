// Internal: the per-image folder of `eoc sample --out-dir DIR` (not a public header).
//
// DIR/{index:06d}.png   one RGB image per index, written atomically (temp name + rename)
// DIR/eoc-run-{I}-of-{N}.json   one record per shard: the run's FID-relevant settings (compared
//     between runs and by `eoc pack`) and informational fields (paths, device, batch size).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "eoc/options.hpp"
#include "eoc/shard.hpp"
#include "eoc/vae.hpp"
#include "run_common.hpp"

namespace eoc {

constexpr const char* kRunRecordFormat = "eoc-sample-dir";
constexpr int kRunRecordVersion = 1;

std::string image_path(const std::string& dir, int64_t index);  // DIR/{index:06d}.png

// True when the file starts with the PNG signature and ends with the IEND chunk (a file cut
// short by a crash or a full disk fails this check); false when missing or unreadable.
bool png_is_complete(const std::string& path);

// The settings that move FID: compared between processes and runs writing one folder.
// Paths, device index, batch size and timing are left out (they do not change the images).
nlohmann::json fid_settings(const RunSetup& run, const CacheSetup& cache, const ModelOptions& model,
                            const VaeDecoder* vae, double vae_scale);

struct RunRecord {
  std::string path;
  nlohmann::json doc;  // {"format", "version", "settings", "shard", "info"}
};

// Every DIR/eoc-run-*.json, sorted by name. Error naming the file when one is malformed.
std::vector<RunRecord> read_run_records(const std::string& dir);

// The first field (a dotted path such as "cfg_scale" or "vae.sha256") whose value differs
// between `a` and `b`; "" when they are equal.
std::string first_difference(const nlohmann::json& a, const nlohmann::json& b);

// Error naming the field and both files when any two records hold different settings.
void check_records_agree(const std::vector<RunRecord>& records, const std::string& dir);

// Value of a dotted field path, for messages; "(absent)" when missing.
std::string field_text(const nlohmann::json& settings, const std::string& field);

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

// The shard of a sample run (flag, else launcher variables when writing --out-dir). Refuses
// sharding with outputs that need every image (--out, --out-raw) and with --seed-mode official
// (its stream depends on which images share a run).
Shard sample_shard(const SampleOptions& options, const OutputOptions& output);

// The device of a sharded run: plain "cuda" picks the process's GPU by its local rank.
std::string shard_device(const std::string& device, const Shard& shard);

// Loads --vae (nullptr without it) and checks it, --latent-size and --image-size against the
// model; refuses per-image PNGs of a latent model without a VAE.
std::shared_ptr<const VaeDecoder> prepare_vae(const SampleOptions& options,
                                              const OutputOptions& output, const RunSetup& run);

// The image indices this process samples: with --out-dir this shard's missing ones (after the
// record check), else 0..N-1. Logs the shard and how many are present.
std::vector<int64_t> plan_sample_indices(const SampleOptions& options, const OutputOptions& output,
                                         const RunSetup& run, const CacheSetup& cache,
                                         const VaeDecoder* vae, const Shard& shard);

}  // namespace eoc

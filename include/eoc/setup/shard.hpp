// Sharding a per-image run over processes: shard I of N makes the image indices i with
// i % N == I, so N processes make disjoint parts of one folder and none waits for another.
// The shard comes from `--shard I/N` or from the launcher's environment: torchrun (RANK,
// WORLD_SIZE, LOCAL_RANK) or Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace eoc {

struct Shard {
  int64_t index = 0;            // I, 0-based
  int64_t count = 1;            // N
  int64_t local_rank = -1;      // process index on this machine (picks cuda:L); -1 when unknown
  std::string source = "none";  // "flag" | "torchrun" | "slurm" | "none"

  bool owns(int64_t image_index) const { return image_index % count == index; }
  // Owned indices among 0..num_samples-1, increasing.
  std::vector<int64_t> indices(int64_t num_samples) const;
  std::string describe() const;  // "shard 1/3 (torchrun)"
};

// Reads an environment variable; returns nullptr when unset (std::getenv's contract).
using EnvLookup = std::function<const char*(const char*)>;

// Parses "I/N" (0 <= I < N); Error naming --shard and the value otherwise.
Shard parse_shard(const std::string& text);

// torchrun first (it may itself run under Slurm), then Slurm; count 1 and source "none" when
// neither is set. Error naming the variable when one is set but malformed or inconsistent.
Shard shard_from_env(const EnvLookup& env);

// The run's shard: `flag` (--shard, parsed) wins; the environment is consulted only when
// `use_env` (runs writing --out-dir). The local rank is read from the environment either way.
Shard resolve_shard(const std::optional<Shard>& flag, bool use_env, const EnvLookup& env);

// "cuda" (no index) with a known local rank L becomes "cuda:L", or "cuda:(L % visible_gpus)" when
// fewer GPUs are visible (a launcher that gives each process its own GPU through
// CUDA_VISIBLE_DEVICES makes that cuda:0); anything else is returned unchanged.
// `visible_gpus` <= 0: unknown.
std::string device_for_shard(const std::string& device, const Shard& shard, int64_t visible_gpus);

}  // namespace eoc

#include "eoc/setup/shard.hpp"

#include "eoc/base/error.hpp"

namespace eoc {
namespace {

// Non-negative integer, or -1 when `text` is not one.
int64_t parse_count(const std::string& text) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos)
    return -1;
  return std::stoll(text);
}

// An integer environment variable; -1 when unset, Error when set but not an integer.
int64_t env_int(const EnvLookup& env, const char* name) {
  const char* value = env(name);
  if (!value) return -1;
  const int64_t v = parse_count(value);
  if (v < 0) fail("environment variable ", name, "='", value, "' is not a non-negative integer");
  return v;
}

// Shard from a (rank, size) variable pair; count 0 when the pair is absent.
Shard pair_from_env(const EnvLookup& env, const char* rank_name, const char* size_name,
                    const char* source) {
  const int64_t rank = env_int(env, rank_name), size = env_int(env, size_name);
  Shard s;
  s.count = 0;
  if (rank < 0 && size < 0) return s;
  if (rank < 0 || size < 1 || rank >= size)
    fail("environment variables ", rank_name, "=", env(rank_name) ? env(rank_name) : "(unset)",
         " and ", size_name, "=", env(size_name) ? env(size_name) : "(unset)",
         " do not describe a process (expected 0 <= ", rank_name, " < ", size_name, ")");
  s.index = rank;
  s.count = size;
  s.source = source;
  return s;
}

int64_t local_rank_from_env(const EnvLookup& env) {
  const int64_t torchrun = env_int(env, "LOCAL_RANK");
  return torchrun >= 0 ? torchrun : env_int(env, "SLURM_LOCALID");
}

}  // namespace

std::vector<int64_t> Shard::indices(int64_t num_samples) const {
  std::vector<int64_t> out;
  for (int64_t i = index; i < num_samples; i += count) out.push_back(i);
  return out;
}

std::string Shard::describe() const { return str("shard ", index, "/", count, " (", source, ")"); }

Shard parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  const int64_t i = slash == std::string::npos ? -1 : parse_count(text.substr(0, slash));
  const int64_t n = slash == std::string::npos ? -1 : parse_count(text.substr(slash + 1));
  if (i < 0 || n < 1 || i >= n)
    fail("--shard '", text, "' is not I/N with 0 <= I < N (e.g. 0/4 for the first of 4)");
  Shard s;
  s.index = i;
  s.count = n;
  s.source = "flag";
  return s;
}

Shard shard_from_env(const EnvLookup& env) {
  Shard s = pair_from_env(env, "RANK", "WORLD_SIZE", "torchrun");
  if (s.count == 0) s = pair_from_env(env, "SLURM_PROCID", "SLURM_NTASKS", "slurm");
  if (s.count == 0) s = Shard{};
  return s;
}

Shard resolve_shard(const std::optional<Shard>& flag, bool use_env, const EnvLookup& env) {
  Shard s = flag ? *flag : use_env ? shard_from_env(env) : Shard{};
  if (use_env || flag) s.local_rank = local_rank_from_env(env);
  return s;
}

std::string device_for_shard(const std::string& device, const Shard& shard, int64_t visible_gpus) {
  if (device != "cuda" || shard.local_rank < 0) return device;
  const int64_t index = visible_gpus > 0 ? shard.local_rank % visible_gpus : shard.local_rank;
  return "cuda:" + std::to_string(index);
}

}  // namespace eoc

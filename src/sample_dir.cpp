#include "sample_dir.hpp"

#include <unistd.h>

#include <ATen/Context.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "eoc/error.hpp"
#include "eoc/log.hpp"
#include "eoc/vae.hpp"

namespace eoc {
namespace {

namespace fs = std::filesystem;

constexpr unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
// An empty IEND chunk: length 0, type "IEND", CRC-32 of "IEND".
constexpr unsigned char kPngEnd[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};

std::string record_name(const Shard& shard) {
  return str("eoc-run-", shard.index, "-of-", shard.count, ".json");
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The labels as a scheme: "random", or the shortest cycle the per-image labels repeat.
nlohmann::json label_scheme(const RunSetup& run) {
  if (run.random_labels) return "random";
  const auto& l = run.labels;
  // Prefix function: the shortest period of the sequence is n - pi[n - 1].
  std::vector<size_t> pi(l.size(), 0);
  for (size_t i = 1; i < l.size(); ++i) {
    size_t k = pi[i - 1];
    while (k > 0 && l[i] != l[k]) k = pi[k - 1];
    pi[i] = k + (l[i] == l[k] ? 1 : 0);
  }
  const size_t period = l.empty() ? 0 : l.size() - pi.back();
  return {{"cycle", std::vector<int64_t>(l.begin(), l.begin() + period)}};
}

// "000123.png.tmp.4567" -> 123; -1 for any other name.
int64_t temp_image_index(const std::string& name) {
  const auto dot = name.find(".png.tmp.");
  if (dot == std::string::npos || dot < 6 ||
      name.substr(0, dot).find_first_not_of("0123456789") != std::string::npos)
    return -1;
  return std::stoll(name.substr(0, dot));
}

// Removes temp files a killed process of this shard left behind (only this shard writes them).
void remove_stale_temps(const std::string& dir, const Shard& shard) {
  const std::string record_temp = record_name(shard) + ".tmp.";
  int64_t removed = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const int64_t index = temp_image_index(name);
    if ((index >= 0 && shard.owns(index)) || starts_with(name, record_temp)) {
      std::error_code ec;
      if (fs::remove(entry.path(), ec)) ++removed;
    }
  }
  if (removed > 0) log::info(str("removed ", removed, " temp file(s) of an interrupted run in ", dir));
}

std::string dump_short(const nlohmann::json& value) {
  const std::string text = value.dump();
  return text.size() <= 80 ? text : text.substr(0, 77) + "...";
}

}  // namespace

std::string image_path(const std::string& dir, int64_t index) {
  std::ostringstream name;
  name << std::setw(6) << std::setfill('0') << index << ".png";
  return (fs::path(dir) / name.str()).string();
}

bool png_is_complete(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  unsigned char head[8], tail[12];
  bool ok = std::fread(head, 1, 8, f) == 8 && std::memcmp(head, kPngSignature, 8) == 0 &&
            std::fseek(f, -12, SEEK_END) == 0 && std::ftell(f) >= 8 + 25 &&
            std::fread(tail, 1, 12, f) == 12 && std::memcmp(tail, kPngEnd, 12) == 0;
  std::fclose(f);
  return ok;
}

nlohmann::json fid_settings(const RunSetup& run, const CacheSetup& cache, const ModelOptions& mo,
                            const VaeDecoder* vae, double vae_scale) {
  const auto& c = run.model->config();
  nlohmann::json vae_json = nullptr;
  if (vae)
    vae_json = {{"sha256", vae->sha256()}, {"scale", vae_scale},
                {"latent_channels", vae->latent_channels()}, {"upscale", vae->upscale()},
                {"dtype", "fp32"}};
  return {
      {"model", {{"sha256", run.model->sha256()}, {"name", c.name}, {"input_size", c.input_size},
                 {"in_channels", c.in_channels}, {"num_classes", c.num_classes}}},
      {"device_type", run.device.is_cuda() ? "cuda" : "cpu"},
      {"dtype", mo.dtype},
      {"tf32", mo.tf32 && run.device.is_cuda()},
      {"batch_invariant", run.model->batch_invariant()},
      {"sampler", sampler_name(run.sampler.kind)},
      {"steps", run.schedule.size()},
      {"respacing", run.respacing},
      {"eta", run.sampler.eta},
      {"cfg_scale", run.guidance.scale},
      {"cfg_channels", cfg_channels_name(run.guidance.channels)},
      {"seed", run.seed},
      {"seed_mode", seed_mode_name(run.seed_mode)},
      {"labels", label_scheme(run)},
      {"num_samples", run.num_samples},
      {"cache", {{"spec", cache.plan.spec()}, {"layout", cache.plan.layout()},
                 {"correct", cache.corrector_name},
                 {"prior_sha256", cache.prior_sha256.empty() ? nlohmann::json(nullptr)
                                                             : nlohmann::json(cache.prior_sha256)}}},
      {"vae", vae_json},
      {"pixels", "dit: clamp(127.5 x + 128, 0, 255) truncated to uint8, RGB"},
  };
}

// Checks the fields others read without further checks: format, version, settings.num_samples.
static void check_run_record(const RunRecord& r) {
  const auto& d = r.doc;
  if (!d.is_object() || !d.contains("format") || d["format"] != kRunRecordFormat ||
      !d.contains("settings") || !d["settings"].is_object())
    fail("'", r.path, "' is not an eoc run record (expected format '", kRunRecordFormat, "')");
  if (!d.contains("version") || d["version"] != kRunRecordVersion)
    fail("run record '", r.path, "' has version ", field_text(d, "version"), ", this eoc reads ",
         kRunRecordVersion);
  const auto& settings = d["settings"];
  const auto n = settings.find("num_samples");
  if (n == settings.end() || !n->is_number_integer() || n->get<int64_t>() < 1 ||
      n->get<int64_t>() > kMaxSamples)
    fail("run record '", r.path, "': settings.num_samples is ", field_text(d["settings"], "num_samples"),
         " (expected an integer 1..", kMaxSamples, ")");
}

std::vector<RunRecord> read_run_records(const std::string& dir) {
  std::vector<RunRecord> records;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("folder '", dir, "' does not exist");
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!starts_with(name, "eoc-run-") || !ends_with(name, ".json")) continue;
    RunRecord r{entry.path().string(), nullptr};
    try {
      r.doc = nlohmann::json::parse(read_file(r.path));
    } catch (const nlohmann::json::exception& e) {
      fail("run record '", r.path, "' is not valid JSON (", e.what(), ")");
    }
    check_run_record(r);
    records.push_back(std::move(r));
  }
  std::sort(records.begin(), records.end(),
            [](const RunRecord& a, const RunRecord& b) { return a.path < b.path; });
  return records;
}

std::string first_difference(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_object() && b.is_object()) {
    for (const auto& [key, value] : a.items()) {
      if (!b.contains(key)) return key;
      const std::string sub = first_difference(value, b[key]);
      if (!sub.empty()) return sub == "." ? key : key + "." + sub;
    }
    for (const auto& [key, value] : b.items())
      if (!a.contains(key)) return key;
    return "";
  }
  return a == b ? "" : ".";
}

std::string field_text(const nlohmann::json& settings, const std::string& field) {
  const nlohmann::json* node = &settings;
  std::stringstream path(field);
  std::string part;
  while (std::getline(path, part, '.')) {
    if (!node->is_object() || !node->contains(part)) return "(absent)";
    node = &(*node)[part];
  }
  return dump_short(*node);
}

void check_records_agree(const std::vector<RunRecord>& records, const std::string& dir) {
  for (size_t i = 1; i < records.size(); ++i) {
    const auto& a = records[0].doc["settings"];
    const auto& b = records[i].doc["settings"];
    const std::string field = first_difference(a, b);
    if (field.empty()) continue;
    const std::string where = field == "." ? "settings" : field;
    fail("folder '", dir, "' holds images from different settings: ", where, " is ",
         field_text(a, field), " in '", fs::path(records[0].path).filename().string(), "' but ",
         field_text(b, field), " in '", fs::path(records[i].path).filename().string(), "'");
  }
}

OutDirWork prepare_out_dir_work(const std::string& dir, const Shard& shard, int64_t num_samples,
                                const nlohmann::json& settings, const nlohmann::json& info,
                                bool resume) {
  for (const auto& record : read_run_records(dir)) {
    const std::string field = first_difference(record.doc["settings"], settings);
    if (field.empty()) continue;
    fail("--out-dir '", dir, "' holds images made with other settings: ", field, " is ",
         field_text(record.doc["settings"], field), " in '",
         fs::path(record.path).filename().string(), "' but ", field_text(settings, field),
         " now (use a new folder, or the settings recorded there)");
  }
  remove_stale_temps(dir, shard);
  nlohmann::json record = {
      {"format", kRunRecordFormat}, {"version", kRunRecordVersion}, {"settings", settings},
      {"shard", {{"index", shard.index}, {"count", shard.count}, {"source", shard.source}}},
      {"info", info}};
  record["info"]["started"] = utc_now();
  write_file_atomic((fs::path(dir) / record_name(shard)).string(), record.dump(2) + "\n");

  OutDirWork work;
  for (int64_t i : shard.indices(num_samples)) {
    if (resume && png_is_complete(image_path(dir, i))) ++work.present;
    else work.todo.push_back(i);
  }
  return work;
}

Shard sample_shard(const SampleOptions& o, const OutputOptions& out) {
  const bool dir = !out.dir.empty();
  if (!o.shard.empty() && !dir)
    fail("--shard ", o.shard, " needs --out-dir (shards write one folder of per-image PNGs)");
  const Shard shard = resolve_shard(o.shard, dir, [](const char* name) { return std::getenv(name); });
  if (shard.count == 1) return shard;
  if (o.sampling.seed_mode == "official")
    fail("--seed-mode official cannot be sharded (", shard.describe(),
         "): its noise stream depends on which images share a batch; use --seed-mode per-image");
  if (!out.grid.empty() || !out.raw.empty())
    fail("--out and --out-raw need every image, not one shard (", shard.describe(),
         "); drop them, or run a single process with --shard 0/1");
  return shard;
}

std::string shard_device(const std::string& device, const Shard& shard) {
  const int64_t gpus = torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
  const std::string chosen = device_for_shard(device, shard, gpus);
  if (chosen != device) log::info(str("local rank ", shard.local_rank, ": --device ", chosen));
  return chosen;
}

std::shared_ptr<const VaeDecoder> prepare_vae(const SampleOptions& o, const OutputOptions& out,
                                              const RunSetup& run) {
  const auto& cfg = run.model->config();
  const std::string& model = run.model->path();
  if (o.latent_size > 0 && cfg.input_size != o.latent_size)
    fail("--latent-size ", o.latent_size, ": model '", model, "' has input size ", cfg.input_size,
         " (a config for another resolution?)");
  std::shared_ptr<const VaeDecoder> vae;
  if (!o.vae.path.empty()) {
    if (!(o.vae.scale > 0.0)) fail("--vae-scale ", o.vae.scale, " must be > 0 (DiT: 0.18215)");
    vae = VaeDecoder::load(o.vae.path, run.device);
    if (vae->latent_channels() != cfg.in_channels)
      fail("--vae '", o.vae.path, "' decodes ", vae->latent_channels(), "-channel latents, but model '",
           model, "' has in_channels ", cfg.in_channels);
  }
  const int64_t side = cfg.input_size * (vae ? vae->upscale() : 1);
  if (o.image_size > 0 && side != o.image_size)
    fail("--image-size ", o.image_size, ": model '", model, "'", vae ? " with this VAE" : "",
         " makes ", side, "x", side, " images");
  const int64_t channels = vae ? 3 : cfg.in_channels;
  if (!out.dir.empty() && channels != 1 && channels != 3)
    fail("--out-dir: model '", model, "' makes ", channels, "-channel samples (a latent DiT); give "
         "--vae VAE.ts (from scripts/export_vae.py) to decode them to RGB images");
  return vae;
}

std::vector<int64_t> plan_sample_indices(const SampleOptions& o, const OutputOptions& out,
                                         const RunSetup& run, const CacheSetup& cache,
                                         const VaeDecoder* vae, const Shard& shard) {
  if (out.dir.empty()) return Shard{}.indices(run.num_samples);
  // Official streams depend on the batching, and grid/raw outputs need every image.
  const bool resume = run.seed_mode != SeedMode::official && out.grid.empty() && out.raw.empty();
  char host[256] = "";
  ::gethostname(host, sizeof(host) - 1);
  const nlohmann::json info = {
      {"eoc_version", EOC_VERSION}, {"model_path", run.model->path()},
      {"vae_path", vae ? vae->path() : std::string()}, {"device", run.device.str()},
      {"batch_size", run.batch_size}, {"host", host}, {"pid", static_cast<int64_t>(::getpid())}};
  const auto work = prepare_out_dir_work(out.dir, shard, run.num_samples,
                                         fid_settings(run, cache, o.model, vae, o.vae.scale), info,
                                         resume);
  const int64_t owned = static_cast<int64_t>(shard.indices(run.num_samples).size());
  log::info(str(shard.describe(), ": indices i % ", shard.count, " == ", shard.index, " (", owned,
                " of ", run.num_samples, "); ", work.present, " already in ", out.dir, ", ",
                work.todo.size(), " to sample", resume ? "" : " (no resume: every index is made)"));
  return work.todo;
}

}  // namespace eoc

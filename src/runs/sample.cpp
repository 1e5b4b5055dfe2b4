// `eoc sample`: options -> model (+ VAE) -> schedule -> cache plan -> sampler loop, batch by
// batch -> image sinks + a JSON run report.
#include <unistd.h>

#include <cstdlib>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/files/run_settings.hpp"
#include "eoc/model/device.hpp"
#include "eoc/model/vae.hpp"
#include "eoc/runs/batch_sampling.hpp"
#include "eoc/runs/cache_setup.hpp"
#include "eoc/runs/commands.hpp"
#include "eoc/runs/image_sinks.hpp"
#include "eoc/runs/out_dir.hpp"
#include "eoc/runs/report.hpp"
#include "eoc/setup/run_setup.hpp"

namespace eoc {
namespace {

// The shard of a sample run (flag, else launcher variables when writing --out-dir). Refuses
// sharding with outputs that need every image (--out, --out-raw) and with --seed-mode official
// (its stream depends on which images share a run).
Shard sample_shard(const SampleOptions& o, const OutputOptions& out) {
  const bool dir = !out.dir.empty();
  if (o.shard && !dir)
    fail("--shard ", o.shard->index, "/", o.shard->count,
         " needs --out-dir (shards write one folder of per-image PNGs)");
  const Shard shard =
      resolve_shard(o.shard, dir, [](const char* name) { return std::getenv(name); });
  if (shard.count == 1) return shard;
  if (o.sampling.seed_mode == SeedMode::official)
    fail("--seed-mode official cannot be sharded (", shard.describe(),
         "): its noise stream depends on which images share a batch; use --seed-mode per-image");
  if (!out.grid.empty() || !out.raw.empty())
    fail("--out and --out-raw need every image, not one shard (", shard.describe(),
         "); drop them, or run a single process with --shard 0/1");
  return shard;
}

// The device of a sharded run: plain "cuda" picks the process's GPU by its local rank.
at::Device shard_device(const at::Device& device, const Shard& shard) {
  const std::string chosen = device_for_shard(device.str(), shard, cuda_device_count());
  if (chosen == device.str()) return device;
  log::info(str("local rank ", shard.local_rank, ": --device ", chosen));
  return at::Device(chosen);
}

// Loads --vae (nullptr without it) and checks it, --latent-size and --image-size against the
// model; refuses per-image PNGs of a latent model without a VAE.
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
      fail("--vae '", o.vae.path, "' decodes ", vae->latent_channels(),
           "-channel latents, but model '", model, "' has in_channels ", cfg.in_channels);
  }
  const int64_t side = cfg.input_size * (vae ? vae->upscale() : 1);
  if (o.image_size > 0 && side != o.image_size)
    fail("--image-size ", o.image_size, ": model '", model, "'", vae ? " with this VAE" : "",
         " makes ", side, "x", side, " images");
  const int64_t channels = vae ? 3 : cfg.in_channels;
  if (!out.dir.empty() && channels != 1 && channels != 3)
    fail("--out-dir: model '", model, "' makes ", channels,
         "-channel samples (a latent DiT); give "
         "--vae VAE.ts (from scripts/tools/export_vae.py) to decode them to RGB images");
  return vae;
}

// The image indices this process samples: with --out-dir this shard's missing ones (after the
// record check), else 0..N-1. Logs the shard and how many are present.
std::vector<int64_t> plan_sample_indices(const OutputOptions& out, const RunFacts& facts,
                                         const Shard& shard) {
  const RunSetup& run = facts.run;
  if (out.dir.empty()) return Shard{}.indices(run.num_samples);
  // Official streams depend on the batching, and grid/raw outputs need every image.
  const bool resume = run.seed_mode != SeedMode::official && out.grid.empty() && out.raw.empty();
  char host[256] = "";
  ::gethostname(host, sizeof(host) - 1);
  const nlohmann::json info = {{"eoc_version", EOC_VERSION},
                               {"model_path", run.model->path()},
                               {"vae_path", facts.vae ? facts.vae->path() : std::string()},
                               {"device", run.device.str()},
                               {"batch_size", run.batch_size},
                               {"host", host},
                               {"pid", static_cast<int64_t>(::getpid())}};
  const auto work = prepare_out_dir_work(out.dir, shard, run.num_samples,
                                         run_settings(facts, kInRecord), info, resume);
  const int64_t owned = static_cast<int64_t>(shard.indices(run.num_samples).size());
  log::info(str(shard.describe(), ": indices i % ", shard.count, " == ", shard.index, " (", owned,
                " of ", run.num_samples, "); ", work.present, " already in ", out.dir, ", ",
                work.todo.size(), " to sample", resume ? "" : " (no resume: every index is made)"));
  return work.todo;
}

// What the sampling phase measured.
struct SampleTimes {
  double sample = 0, sample_cpu = 0, write = 0, total = 0;
  std::vector<double> batches;      // per batch, its sinks included
  std::vector<double> batches_cpu;  // the same in CPU seconds
};

// Throughput after the first batch, which alone pays for TorchScript's first runs and for first
// touching the run's memory: what a long run settles at. Null with fewer than two batches.
nlohmann::json steady_images_per_second(const std::vector<std::vector<int64_t>>& batches,
                                        const std::vector<double>& seconds) {
  if (seconds.size() < 2) return nullptr;
  double images = 0, time = 0;
  for (size_t i = 1; i < seconds.size(); ++i) {
    images += static_cast<double>(batches[i].size());
    time += seconds[i];
  }
  return time > 0 ? nlohmann::json(images / time) : nlohmann::json(nullptr);
}

nlohmann::json sample_report(const RunFacts& facts, const CacheSetup& cache, const Shard& shard,
                             const CacheStats& stats,
                             const std::vector<std::vector<int64_t>>& batches,
                             const SampleTimes& times, const ImageSinks& sinks) {
  int64_t count = 0;
  for (const auto& batch : batches) count += static_cast<int64_t>(batch.size());
  return {
      {"command", "sample"},
      {"eoc_version", EOC_VERSION},
      {"settings", run_settings(facts, kInReport)},
      {"paths",
       {{"model", facts.run.model->path()},
        {"vae", facts.vae ? facts.vae->path() : std::string()},
        {"prior", cache.prior_path}}},
      {"shard", {{"index", shard.index}, {"count", shard.count}, {"source", shard.source}}},
      {"cache_stats", cache_stats_json(stats, facts.run.model->config())},
      {"timings_s",
       {{"load", facts.run.load_seconds},
        {"sample", times.sample},
        {"sample_cpu", times.sample_cpu},
        {"write", times.write},
        {"total", times.total},
        {"batches", times.batches},
        {"batches_cpu", times.batches_cpu}}},
      {"images_per_second", count > 0 ? count / times.sample : 0.0},
      {"steady_images_per_second", steady_images_per_second(batches, times.batches)},
      {"memory",
       {{"peak_host_bytes", peak_host_memory_bytes()},
        {"peak_cache_bytes", stats.peak_cache_bytes}}},
      {"outputs", sinks.summary()},
  };
}

void log_run_start(const RunSetup& run, const CacheSetup& cache) {
  const auto& cfg = run.model->config();
  log::info(str("model ", cfg.name, " (", run.model->path(), ") on ", run.device.str(), "; ",
                sampler_name(run.sampler.kind()), " ", run.sampler.steps(), " steps, cfg ",
                run.guidance.scale, ", cache ", cache.plan.spec(), " (",
                cache.plan.gate()
                    ? std::string("a gate: decided per image while sampling")
                    : str(static_cast<int>(100 * cache.plan.caching_level() + 0.5), "% reused"),
                "), correct ", cache.corrector_name));
}

}  // namespace

void run_sample(const SampleOptions& options) {
  Stopwatch total;
  ImageSinks sinks = ImageSinks::open(options.output);
  const OutputOptions& out = sinks.outputs();
  const Shard shard = sample_shard(options, out);
  auto model_options = options.model;
  model_options.device = shard_device(model_options.device, shard);
  const RunSetup run = prepare_run(model_options, options.sampling);
  const CacheSetup cache = prepare_cache(run, options.cache);
  const auto vae = prepare_vae(options, out, run);
  const RunFacts facts = run_facts(run, cache, vae.get(), options.vae.scale);
  log_run_start(run, cache);

  const auto indices = plan_sample_indices(out, facts, shard);
  const int64_t count = static_cast<int64_t>(indices.size());
  const auto batches = make_batches(indices, run.batch_size);
  SampleTimes times;
  log::Progress progress("sampling", count * run.steps(),
                         str("image-steps (", count, " images x ", run.steps(), " steps)"));
  Stopwatch sampling;
  CpuStopwatch sampling_cpu;
  const auto sampled = sample_batches(run, batches, cache.plan, *cache.corrector, progress,
                                      [&](const std::vector<int64_t>& batch, at::Tensor images) {
                                        if (vae) images = vae->decode(images, options.vae.scale);
                                        sinks.add_batch(batch, images);
                                      });
  progress.finish();
  times.sample = sampling.seconds();
  times.sample_cpu = sampling_cpu.seconds();
  times.batches = sampled.seconds;
  times.batches_cpu = sampled.cpu_seconds;
  const CacheStats& stats = sampled.stats;

  Stopwatch writing;
  sinks.finish(run.num_samples);
  times.write = writing.seconds();
  times.total = total.seconds();
  if (!out.report.empty())
    write_json(out.report, sample_report(facts, cache, shard, stats, batches, times, sinks));
  if (count == 0)
    log::info("every image was already there: nothing sampled");
  else
    log::info(str("sampled ", count, " images in ", times.sample, " s (", count / times.sample,
                  " images/s)"));
}

}  // namespace eoc

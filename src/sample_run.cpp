// `eoc sample`: options -> model -> schedule -> cache plan -> sampler loop -> sinks + report.
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "eoc/device.hpp"
#include "eoc/error.hpp"
#include "eoc/image_io.hpp"
#include "eoc/log.hpp"
#include "eoc/npy.hpp"
#include "eoc/pipeline.hpp"
#include "run_common.hpp"
#include "sample_dir.hpp"

namespace eoc {
namespace {

constexpr int64_t kGridMaxImages = 1024;

void prepare_out_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir, ec)) fail("--out-dir '", dir, "' cannot be created");
  check_writable_parent((fs::path(dir) / "x").string(), "--out-dir");
}

// Throughput after the first batch, which alone pays for TorchScript's first runs and for first
// touching the run's memory (docs/BENCHMARKS.md): what a long run settles at. Null with fewer
// than two batches.
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

}  // namespace

void run_sample(const SampleOptions& options) {
  Stopwatch total;
  auto out = options.output;
  if (out.grid.empty() && out.dir.empty() && out.raw.empty()) out.grid = "samples.png";
  if (out.nrow < 1) fail("--nrow ", out.nrow, " must be >= 1");
  for (auto [path, flag] : {std::pair{out.grid, "--out"}, std::pair{out.raw, "--out-raw"},
                            std::pair{out.report, "--report"}})
    if (!path.empty()) check_writable_parent(path, flag);
  if (!out.dir.empty()) prepare_out_dir(out.dir);

  const Shard shard = sample_shard(options, out);
  auto model_options = options.model;
  model_options.device = shard_device(model_options.device, shard);
  const RunSetup run = prepare_run(model_options, options.sampling);
  const CacheSetup cache = prepare_cache(run, options.cache);
  const auto vae = prepare_vae(options, out, run);
  const auto& cfg = run.model->config();
  log::info(str("model ", cfg.name, " (", run.model->path(), ") on ", run.device.str(), "; ",
                sampler_name(run.sampler.kind), " ", run.schedule.size(), " steps, cfg ",
                run.guidance.scale, ", cache ", cache.plan.spec(), " (",
                static_cast<int>(100 * cache.plan.caching_level() + 0.5), "% reused), correct ",
                cache.corrector_name));

  const auto indices = plan_sample_indices(options, out, run, cache, vae.get(), shard);
  const int64_t count = static_cast<int64_t>(indices.size());
  std::vector<at::Tensor> grid_images, raw_images;
  CacheStats stats(run.schedule.size());
  int64_t written = 0;
  const auto batches = make_batches(indices, run.batch_size);
  if (run.seed_mode == SeedMode::official) seed_global(run.seed);
  log::Progress progress("sampling", count * run.schedule.size());
  Stopwatch sampling;
  std::vector<double> batch_seconds;  // per batch, its sinks included
  for (const auto& batch : batches) {
    Stopwatch batch_time;
    auto images = sample_batch(run, batch, cache.plan, *cache.corrector, stats,
                               [&](int64_t) { progress.advance(static_cast<long>(batch.size())); });
    if (vae) images = vae->decode(images, options.vae.scale);
    if (!out.raw.empty()) raw_images.push_back(images.to(at::kFloat).cpu());
    const auto pixels = to_uint8_hwc(images);
    if (!out.grid.empty())
      for (size_t i = 0; i < batch.size() && batch[i] < kGridMaxImages; ++i)
        grid_images.push_back(pixels[i]);
    if (!out.dir.empty())
      for (size_t i = 0; i < batch.size(); ++i) {
        write_png(image_path(out.dir, batch[i]), pixels[i], /*rgb=*/true);
        ++written;
      }
    synchronize(run.device);  // so the batch's time, and the sampling phase's, are complete
    batch_seconds.push_back(batch_time.seconds());
  }
  progress.finish();
  const double sample_seconds = sampling.seconds();

  Stopwatch writing;
  if (!out.grid.empty()) {
    if (run.num_samples > kGridMaxImages)
      log::warn(str("--out grid shows the first ", kGridMaxImages, " of ", run.num_samples, " images"));
    write_png(out.grid, make_grid(at::stack(grid_images), out.nrow));
    log::info("wrote grid " + out.grid);
  }
  if (!out.raw.empty()) {
    write_npy(out.raw, at::cat(raw_images));
    log::info("wrote raw samples " + out.raw);
  }
  if (!out.dir.empty()) log::info(str("wrote ", written, " images to ", out.dir));
  if (!out.report.empty()) {
    nlohmann::json report = {
        {"command", "sample"},
        {"eoc_version", EOC_VERSION},
        {"settings", run.settings()},
        {"cache", cache.settings()},
        {"vae", vae ? nlohmann::json{{"path", vae->path()}, {"sha256", vae->sha256()},
                                     {"scale", options.vae.scale}}
                    : nlohmann::json(nullptr)},
        {"shard", {{"index", shard.index}, {"count", shard.count}, {"source", shard.source}}},
        {"cache_stats", cache_stats_json(stats, cfg)},
        {"timings_s", {{"load", run.load_seconds}, {"sample", sample_seconds},
                       {"write", writing.seconds()}, {"total", total.seconds()},
                       {"batches", batch_seconds}}},
        {"images_per_second", count > 0 ? count / sample_seconds : 0.0},
        {"steady_images_per_second", steady_images_per_second(batches, batch_seconds)},
        {"memory", {{"peak_host_bytes", peak_host_memory_bytes()},
                    {"peak_cache_bytes", stats.peak_cache_bytes}}},
        {"outputs", {{"grid", out.grid}, {"dir", out.dir}, {"raw", out.raw},
                     {"images_written", written}}},
    };
    write_json(out.report, report);
  }
  if (count == 0) log::info("every image was already there: nothing sampled");
  else log::info(str("sampled ", count, " images in ", sample_seconds, " s (",
                     count / sample_seconds, " images/s)"));
}

}  // namespace eoc

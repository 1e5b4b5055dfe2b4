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

// Where a run's images go: the grid and the raw array collect the batches and are written at the
// end; per-image PNGs are written as each batch finishes (so a stopped run keeps them).
class ImageSinks {
 public:
  explicit ImageSinks(OutputOptions out) : out_(std::move(out)) {}

  void add_batch(const std::vector<int64_t>& batch, const at::Tensor& images) {
    if (!out_.raw.empty()) raw_.push_back(images.to(at::kFloat).cpu());
    const auto pixels = to_uint8_hwc(images);
    if (!out_.grid.empty())
      for (size_t i = 0; i < batch.size() && batch[i] < kGridMaxImages; ++i)
        grid_.push_back(pixels[i]);
    if (!out_.dir.empty())
      for (size_t i = 0; i < batch.size(); ++i) {
        write_png(image_path(out_.dir, batch[i]), pixels[i], /*rgb=*/true);
        ++written_;
      }
  }

  void finish(int64_t num_samples) {
    if (!out_.grid.empty()) {
      if (num_samples > kGridMaxImages)
        log::warn(str("--out grid shows the first ", kGridMaxImages, " of ", num_samples, " images"));
      write_png(out_.grid, make_grid(at::stack(grid_), out_.nrow));
      log::info("wrote grid " + out_.grid);
    }
    if (!out_.raw.empty()) {
      write_npy(out_.raw, at::cat(raw_));
      log::info("wrote raw samples " + out_.raw);
    }
    if (!out_.dir.empty()) log::info(str("wrote ", written_, " images to ", out_.dir));
  }

  // The report's "outputs" entry.
  nlohmann::json summary() const {
    return {{"grid", out_.grid}, {"dir", out_.dir}, {"raw", out_.raw}, {"images_written", written_}};
  }

 private:
  OutputOptions out_;
  std::vector<at::Tensor> grid_, raw_;
  int64_t written_ = 0;
};

// The outputs after checking that they can be written: samples.png when none is given.
OutputOptions checked_outputs(OutputOptions out) {
  if (out.grid.empty() && out.dir.empty() && out.raw.empty()) out.grid = "samples.png";
  if (out.nrow < 1) fail("--nrow ", out.nrow, " must be >= 1");
  for (auto [path, flag] : {std::pair{out.grid, "--out"}, std::pair{out.raw, "--out-raw"},
                            std::pair{out.report, "--report"}})
    if (!path.empty()) check_writable_parent(path, flag);
  if (!out.dir.empty()) prepare_out_dir(out.dir);
  return out;
}

// What the sampling phase measured.
struct SampleTimes {
  double sample = 0, write = 0, total = 0;
  std::vector<double> batches;  // per batch, its sinks included
};

nlohmann::json sample_report(const SampleOptions& options, const RunSetup& run,
                             const CacheSetup& cache, const VaeDecoder* vae, const Shard& shard,
                             const CacheStats& stats, const std::vector<std::vector<int64_t>>& batches,
                             const SampleTimes& times, const ImageSinks& sinks) {
  int64_t count = 0;
  for (const auto& batch : batches) count += static_cast<int64_t>(batch.size());
  return {
      {"command", "sample"},
      {"eoc_version", EOC_VERSION},
      {"settings", run.settings()},
      {"cache", cache.settings()},
      {"vae", vae ? nlohmann::json{{"path", vae->path()}, {"sha256", vae->sha256()},
                                   {"scale", options.vae.scale}}
                  : nlohmann::json(nullptr)},
      {"shard", {{"index", shard.index}, {"count", shard.count}, {"source", shard.source}}},
      {"cache_stats", cache_stats_json(stats, run.model->config())},
      {"timings_s", {{"load", run.load_seconds}, {"sample", times.sample},
                     {"write", times.write}, {"total", times.total},
                     {"batches", times.batches}}},
      {"images_per_second", count > 0 ? count / times.sample : 0.0},
      {"steady_images_per_second", steady_images_per_second(batches, times.batches)},
      {"memory", {{"peak_host_bytes", peak_host_memory_bytes()},
                  {"peak_cache_bytes", stats.peak_cache_bytes}}},
      {"outputs", sinks.summary()},
  };
}

void log_run_start(const RunSetup& run, const CacheSetup& cache) {
  const auto& cfg = run.model->config();
  log::info(str("model ", cfg.name, " (", run.model->path(), ") on ", run.device.str(), "; ",
                sampler_name(run.sampler.kind), " ", run.schedule.size(), " steps, cfg ",
                run.guidance.scale, ", cache ", cache.plan.spec(), " (",
                static_cast<int>(100 * cache.plan.caching_level() + 0.5), "% reused), correct ",
                cache.corrector_name));
}

}  // namespace

void run_sample(const SampleOptions& options) {
  Stopwatch total;
  const OutputOptions out = checked_outputs(options.output);
  const Shard shard = sample_shard(options, out);
  auto model_options = options.model;
  model_options.device = shard_device(model_options.device, shard);
  const RunSetup run = prepare_run(model_options, options.sampling);
  const CacheSetup cache = prepare_cache(run, options.cache);
  const auto vae = prepare_vae(options, out, run);
  log_run_start(run, cache);

  const auto indices = plan_sample_indices(options, out, run, cache, vae.get(), shard);
  const int64_t count = static_cast<int64_t>(indices.size());
  const auto batches = make_batches(indices, run.batch_size);
  ImageSinks sinks(out);
  CacheStats stats(run.schedule.size());
  SampleTimes times;
  if (run.seed_mode == SeedMode::official) seed_global(run.seed);
  log::Progress progress("sampling", count * run.schedule.size());
  Stopwatch sampling;
  for (const auto& batch : batches) {
    Stopwatch batch_time;
    auto images = sample_batch(run, batch, cache.plan, *cache.corrector, stats,
                               [&](int64_t) { progress.advance(static_cast<long>(batch.size())); });
    if (vae) images = vae->decode(images, options.vae.scale);
    sinks.add_batch(batch, images);
    synchronize(run.device);  // so the batch's time, and the sampling phase's, are complete
    times.batches.push_back(batch_time.seconds());
  }
  progress.finish();
  times.sample = sampling.seconds();

  Stopwatch writing;
  sinks.finish(run.num_samples);
  times.write = writing.seconds();
  times.total = total.seconds();
  if (!out.report.empty())
    write_json(out.report,
               sample_report(options, run, cache, vae.get(), shard, stats, batches, times, sinks));
  if (count == 0) log::info("every image was already there: nothing sampled");
  else log::info(str("sampled ", count, " images in ", times.sample, " s (",
                     count / times.sample, " images/s)"));
}

}  // namespace eoc

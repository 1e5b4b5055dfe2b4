// `eoc compare`: the same seeds sampled uncached and cached; paired quality and wall times.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/diffusion/image_quality.hpp"
#include "eoc/files/run_settings.hpp"
#include "eoc/io/files.hpp"
#include "eoc/io/png.hpp"
#include "eoc/model/device.hpp"
#include "eoc/runs/batch_sampling.hpp"
#include "eoc/runs/cache_setup.hpp"
#include "eoc/runs/commands.hpp"
#include "eoc/runs/report.hpp"
#include "eoc/setup/run_setup.hpp"

namespace eoc {
namespace {

struct Timed {
  at::Tensor images;  // (N, C, H, W) float32 CPU, from the first run
  std::vector<double> seconds;
  CacheStats stats;
  double median() const {
    auto s = seconds;
    std::sort(s.begin(), s.end());
    return s.size() % 2 ? s[s.size() / 2] : 0.5 * (s[s.size() / 2 - 1] + s[s.size() / 2]);
  }
};

Timed sample_all(const RunSetup& run, const CachePlan& plan, const Corrector& corrector,
                 int repeats, const std::string& label) {
  const std::string unit =
      str("image-steps (", run.num_samples, " images x ", run.steps(), " steps)");
  std::vector<int64_t> indices(run.num_samples);
  for (int64_t i = 0; i < run.num_samples; ++i) indices[i] = i;
  const auto batches = make_batches(indices, run.batch_size);
  Timed t;
  for (int r = 0; r < repeats; ++r) {
    std::vector<at::Tensor> parts;
    log::Progress progress(label, run.num_samples * run.steps(), unit);
    Stopwatch watch;
    const auto sampled = sample_batches(run, batches, plan, corrector, progress,
                                        [&](const std::vector<int64_t>&, at::Tensor images) {
                                          parts.push_back(std::move(images));
                                        });
    t.seconds.push_back(watch.seconds());
    progress.finish();
    if (r == 0) {
      t.images = at::cat(parts).to(at::kFloat).cpu();
      t.stats = sampled.stats;
    }
  }
  return t;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string sci(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

// One row per compared image: uncached | cached | |cached - uncached|, the difference scaled so
// that white is the largest difference over all images (all black when they are identical).
// Returns that largest difference on the images' [-1, 1] scale.
double write_picture(const std::string& path, const at::Tensor& base, const at::Tensor& cached) {
  const auto diff = (cached - base).abs();
  const double top = diff.max().item<double>();
  const auto shown = top > 0 ? (diff * (255.0 / top)).round().clamp(0, 255).to(at::kByte)
                             : at::zeros_like(diff, at::kByte);
  const auto panels = at::stack(
      {to_uint8_hwc(base), to_uint8_hwc(cached), shown.permute({0, 2, 3, 1}).contiguous()},
      1);  // (N, 3, H, W, C)
  const int64_t n = base.size(0);
  write_png(path,
            make_grid(panels.reshape({n * 3, panels.size(2), panels.size(3), panels.size(4)}), 3));
  return top;
}

}  // namespace

void run_compare(const CompareOptions& options) {
  if (options.repeats < 1) fail("--repeats ", options.repeats, " must be >= 1");
  // Same early check as sample: fail before minutes of sampling, not after.
  if (!options.report.empty()) check_writable_parent(options.report, "--report");
  if (!options.picture.empty()) check_writable_parent(options.picture, "--out-picture");
  const RunSetup run = prepare_run(options.model, options.sampling);
  const CacheSetup cache = prepare_cache(run, options.cache);
  const auto none = CachePlan::none(run.steps(), run.model->config().depth);
  const std::string label = cache.plan.spec() + " + " + cache.corrector_name;

  const Timed base = sample_all(run, none, plain_corrector(), options.repeats, "uncached");
  const Timed cached = sample_all(run, cache.plan, *cache.corrector, options.repeats, label);
  const auto q = paired_quality(cached.images, base.images);
  const double speedup = base.median() / cached.median();

  nlohmann::json j = {
      {"command", "compare"},
      {"settings", run_settings(run_facts(run, cache), kInReport)},
      {"paths", {{"model", run.model->path()}, {"prior", cache.prior_path}}},
      {"uncached", {{"seconds", base.seconds}, {"median_s", base.median()}}},
      {"cached",
       {{"seconds", cached.seconds},
        {"median_s", cached.median()},
        {"cache_stats", cache_stats_json(cached.stats, run.model->config())}}},
      {"time_ratio", cached.median() / base.median()},
      {"speedup", speedup},
      {"mse", q.mse},
      {"psnr_db", std::isfinite(q.psnr) ? nlohmann::json(q.psnr) : nlohmann::json("inf")},
      {"ssim", std::isfinite(q.ssim) ? nlohmann::json(q.ssim) : nlohmann::json(nullptr)},
      {"max_abs_diff", q.max_abs},
  };
  if (!options.picture.empty()) {
    const double top = write_picture(options.picture, base.images, cached.images);
    j["picture"] = {{"path", options.picture}, {"white_is_abs_diff", top}};
    log::info("wrote " + options.picture +
              ": uncached | cached | |difference| per image (white = " + sci(top) + ")");
  }
  if (!options.report.empty()) write_json(options.report, j);
  if (options.json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::cout << "images           " << run.num_samples << " (" << sampler_name(run.sampler.kind())
            << "-" << run.sampler.steps() << ", cfg " << run.guidance.scale << ", seed " << run.seed
            << ")\n"
            << "                 uncached      " << label << "\n"
            << "wall time (s)    " << fixed(base.median(), 3) << "         "
            << fixed(cached.median(), 3) << "\n"
            << "speed            1.00x         " << fixed(speedup, 2) << "x\n"
            << "caching level    0%            " << fixed(100 * cached.stats.caching_level(), 1)
            << "%\n"
            << "MSE vs uncached  -             " << sci(q.mse) << "\n"
            << "PSNR (dB)        -             " << fixed(q.psnr, 2) << "\n"
            << "SSIM             -             " << fixed(q.ssim, 4) << "\n";
}

}  // namespace eoc

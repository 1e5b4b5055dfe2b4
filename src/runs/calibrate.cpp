// `eoc calibrate`: checks the options, sets the run up, hands the calibration images to EOC's
// calibration (cache/eoc_calibration.hpp) and writes the prior with the run settings it assumes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/cache/eoc_calibration.hpp"
#include "eoc/io/files.hpp"
#include "eoc/runs/batch_sampling.hpp"
#include "eoc/runs/commands.hpp"
#include "eoc/runs/mask_file.hpp"
#include "eoc/runs/prior_file.hpp"
#include "eoc/runs/report.hpp"
#include "eoc/runs/run_settings.hpp"
#include "eoc/runs/run_setup.hpp"

namespace eoc {
namespace {

std::vector<double> default_thetas() { return {0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5}; }

// --max-order's value, its default resolved.
int max_order(const CalibrateOptions& o) {
  if (o.max_order != 0) return o.max_order;
  const bool searches = o.form == EocForm::taylor && o.judgment == Judgment::trajectory;
  return searches ? kMaxTaylorOrder : 1;
}

// The options that need no model, checked before it loads.
void check_calibrate_options(const CalibrateOptions& o, const std::vector<double>& thetas) {
  if (o.max_order < 0 || o.max_order > kMaxTaylorOrder)
    fail("--max-order ", o.max_order, " is out of range (expected 1..", kMaxTaylorOrder, ")");
  if (max_order(o) > 1 && o.form != EocForm::taylor)
    fail("--max-order ", o.max_order, ": the ", eoc_form_name(o.form),
         " form has no forecast orders (only --eoc-form taylor does)");
  if (max_order(o) > 1 && o.judgment != Judgment::trajectory)
    fail("--max-order ", o.max_order, ": orders are chosen by the trajectory judgment only");
  for (double t : thetas)
    if (!std::isfinite(t) || t < 0.0 || t > 4.0)
      fail("--eoc-thetas: ", t, " is out of range (expected 0..4)");
  const int64_t n = o.sampling.num_samples;
  const bool fits = form_has_vectors(o.form);
  if (o.judge_samples < 1 || o.judge_samples > n - (fits ? 1 : 0))
    fail("--judge-samples ", o.judge_samples, " must be 1..", n - (fits ? 1 : 0), " for ", n,
         " calibration samples", fits ? " (at least one is needed for the fit)" : "");
  check_writable_parent(o.out, "--out");  // fail now, not after the calibration
}

// The first n - judge images are fitted (in batches), the last `judge` are held out.
CalibrationImages calibration_images(const RunSetup& run, int64_t judge, bool fits) {
  CalibrationImages images;
  std::vector<int64_t> fit;
  for (int64_t i = 0; i < run.num_samples; ++i)
    (i < run.num_samples - judge ? fit : images.judge).push_back(i);
  if (fits) images.fit_batches = make_batches(fit, run.batch_size);
  images.start = [&run](const std::vector<int64_t>& indices) { return begin_batch(run, indices); };
  return images;
}

nlohmann::json classes_json(const ClassChoice& classes) {
  switch (classes.kind) {
    case ClassChoice::Kind::spread: return "default";
    case ClassChoice::Kind::random: return "random";
    case ClassChoice::Kind::list: break;
  }
  return classes.labels;
}

void print_summary(const EocPrior& prior) {
  for (const auto& s : prior.judged) {
    double plain = std::numeric_limits<double>::quiet_NaN(), chosen = plain;
    for (size_t i = 0; i < s.candidates.size(); ++i) {
      const bool same_order = s.orders.empty() || s.orders[i] == s.order;
      if (s.candidates[i] == 0.0) plain = s.errors[i];
      if (s.candidates[i] == s.theta && same_order) chosen = s.errors[i];
    }
    char line[160];
    std::snprintf(line, sizeof(line), "step %3lld: plain error %.4g, corrected %.4g, theta %.3g%s",
                  static_cast<long long>(s.step), plain, chosen, s.theta,
                  s.orders.empty() || s.theta == 0.0 ? "" : str(", order ", s.order).c_str());
    log::info(line);
  }
}

}  // namespace

void run_calibrate(const CalibrateOptions& o) {
  Stopwatch total;
  const CalibrationSettings settings{o.form, o.judgment,
                                     o.thetas.empty() ? default_thetas() : o.thetas, max_order(o)};
  check_calibrate_options(o, settings.thetas);

  const RunSetup run = prepare_run(o.model, o.sampling);
  const auto plan = make_cache_plan(o.cache, run.steps(), run.model->config().depth, o.warmup);
  if (plan.reused_total() == 0)
    fail("--cache '", o.cache.text(), "' reuses nothing: there is nothing to calibrate");
  const bool fits = form_has_vectors(o.form);
  const CalibrationImages images = calibration_images(run, o.judge_samples, fits);
  // The official stream is seeded once per run, as sample and compare do: the fit batches, then
  // the judge batch, draw from it in that order.
  if (run.seed_mode == SeedMode::official) seed_global(run.seed);

  PriorFile file;
  file.prior = calibrate_eoc(run.block_loop(), run.sampler, plan, settings, images);
  file.assumes = run_settings(RunFacts{run, plan}, kInPrior);
  int64_t fitted = 0;
  for (const auto& batch : images.fit_batches) fitted += static_cast<int64_t>(batch.size());
  file.calibration = {
      {"eoc_version", EOC_VERSION}, {"num_samples", run.num_samples}, {"fit_samples", fitted},
      {"judge_samples", images.judge.size()}, {"seed", run.seed},
      {"seed_mode", seed_mode_name(run.seed_mode)}, {"classes", classes_json(o.sampling.classes)},
      {"batch_size", run.batch_size}, {"max_order", settings.max_order},
      {"seconds", total.seconds()}};
  save_prior(o.out, file);
  print_summary(file.prior);
  log::info(str("wrote prior ", o.out, " (", eoc_form_name(o.form), " form, ",
                judgment_name(o.judgment), " judgment, ", file.prior.judged.size(),
                " reused steps) in ", total.seconds(), " s"));
}

}  // namespace eoc

// `eoc calibrate`: checks the options, sets the run up, hands the calibration images to EOC's
// calibration (cache/eoc_calibration.hpp) and writes the prior with the run settings it assumes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/cache/eoc_calibration.hpp"
#include "eoc/cache/gate.hpp"
#include "eoc/diffusion/image_quality.hpp"
#include "eoc/files/gate_file.hpp"
#include "eoc/files/mask_file.hpp"
#include "eoc/files/prior_file.hpp"
#include "eoc/files/run_settings.hpp"
#include "eoc/io/files.hpp"
#include "eoc/runs/batch_sampling.hpp"
#include "eoc/runs/cache_setup.hpp"
#include "eoc/runs/commands.hpp"
#include "eoc/runs/report.hpp"
#include "eoc/setup/run_setup.hpp"

namespace eoc {
namespace {

std::vector<double> default_thetas() { return {0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5}; }

// --max-order's value, its default resolved.
int max_order(const CalibrateOptions& o) {
  if (o.max_order) return *o.max_order;
  const bool searches = o.form == EocForm::taylor && o.judgment == Judgment::trajectory;
  return searches ? kMaxTaylorOrder : 1;
}

// The options that need no model, checked before it loads.
void check_calibrate_options(const CalibrateOptions& o, const std::vector<double>& thetas) {
  if (o.max_order && (*o.max_order < 1 || *o.max_order > kMaxTaylorOrder))
    fail("--max-order ", *o.max_order, " is out of range (expected 1..", kMaxTaylorOrder, ")");
  if (max_order(o) > 1 && o.form != EocForm::taylor)
    fail("--max-order ", max_order(o), ": the ", eoc_form_name(o.form),
         " form has no forecast orders (only --eoc-form taylor does)");
  if (max_order(o) > 1 && o.judgment != Judgment::trajectory)
    fail("--max-order ", max_order(o), ": orders are chosen by the trajectory judgment only");
  if (o.foca && (o.form != EocForm::taylor || o.judgment != Judgment::trajectory))
    fail(
        "--foca: FoCa's forecast is one of the taylor form's orders, chosen by the trajectory "
        "judgment (got --eoc-form ",
        eoc_form_name(o.form), " --judgment ", judgment_name(o.judgment), ")");
  for (double t : thetas)
    if (!std::isfinite(t) || t < 0.0 || t > 4.0)
      fail("--eoc-thetas: ", t, " is out of range (expected 0..4)");
  const int64_t n = o.sampling.num_samples;
  const bool fits = form_has_vectors(o.form);
  if (o.judge_samples < 1 || o.judge_samples > n - (fits ? 1 : 0))
    fail("--judge-samples ", o.judge_samples, " must be 1..", n - (fits ? 1 : 0), " for ", n,
         " calibration samples", fits ? " (at least one is needed for the fit)" : "");
  if (o.budget) {
    if (!(*o.budget > 0.0 && *o.budget < 1.0))
      fail("--budget ", *o.budget,
           " is out of range (expected a fraction of computations in (0, 1))");
    if (o.plan.spec)
      fail("--budget searches the cache plan: give it without --cache (got --cache ",
           o.plan.spec->text(), ")");
    if (o.form != EocForm::taylor || o.judgment != Judgment::trajectory)
      fail(
          "--budget searches with the forecast and the trajectory judgment: use --eoc-form "
          "taylor --judgment trajectory (the defaults)");
  }
  check_writable_parent(o.out, "--out");  // fail now, not after the calibration
  if (!o.out_mask.empty()) check_writable_parent(o.out_mask, "--out-mask");
}

// --budget's search, its step counts (cache/schedule_search.hpp) checked against the run's steps
// and warm-up.
BudgetSearch budget_search(double budget, int64_t warmup, int64_t steps, int max_order, bool foca) {
  check_warmup(warmup, steps);
  const BudgetSteps n = budget_steps(budget, warmup, steps);
  if (n.total < n.forced)
    fail("--budget ", budget, " computes ", n.total, " of ", steps, " steps, fewer than the ",
         n.forced, warmup > 1 ? " warm-up steps" : " first step", " that are always computed");
  if (n.total >= steps)
    fail("--budget ", budget, " computes all ", steps, " steps: there is nothing to reuse");
  return BudgetSearch{budget, warmup, max_order, foca};
}

// The plan --cache (default fora:3) and --warmup ask for; Error when it reuses nothing.
CachePlan plan_to_calibrate(const PlanOptions& o, int64_t steps, int64_t depth) {
  const CacheSpec spec = o.spec.value_or(CalibrateOptions::default_plan());
  auto plan = make_cache_plan(spec, steps, depth, o.warmup);
  if (plan.gate())
    fail("--cache '", spec.text(),
         "' is a run-time gate: an EOC prior is fitted to a fixed "
         "schedule (calibrate a fixed plan, or a gate's threshold with --gate)");
  if (plan.reused_total() == 0)
    fail("--cache '", spec.text(), "' reuses nothing: there is nothing to calibrate");
  return plan;
}

nlohmann::json search_json(const SearchedSchedule& s) {
  nlohmann::json shapes = nlohmann::json::array();
  for (const auto& t : s.shapes)
    shapes.push_back(
        {{"name", t.name}, {"computed_steps", t.computed}, {"order", t.order}, {"error", t.error}});
  return {{"computed_steps", s.computed},
          {"order", s.order},
          {"error", s.error},
          {"shapes", shapes},
          {"refinement",
           {{"passes", s.passes}, {"moves_tried", s.moves_tried}, {"moves_taken", s.moves_taken}}}};
}

nlohmann::json cost_json(const CalibrationCost& c) {
  return {{"judge_step_runs", c.step_runs},
          {"uncached_judge_steps", c.reference_step_runs},
          {"multiple_of_uncached_judge_sampling", c.multiple()},
          {"uncached_judge_seconds", c.reference_seconds}};
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
    std::snprintf(
        line, sizeof(line), "step %3lld: plain error %.4g, corrected %.4g, theta %.3g%s",
        static_cast<long long>(s.step), plain, chosen, s.theta,
        s.orders.empty() || s.theta == 0.0 ? "" : str(", order ", forecast_name(s.order)).c_str());
    log::info(line);
  }
}

// TeaCache's rescale, fitted on the judge images' uncached trajectories: per image and
// consecutive evaluations k - 1, k, the gate's measured signal d_in (teacache's relative change
// of block 0's modulated input) against d_out = mean|o_k - o_(k-1)| / mean|o_(k-1)| of the image's
// guided model output (its first C channels: the eps or velocity the update uses).
struct RescaleData {
  std::vector<double> d_in, d_out;
  PolynomialFit fit;
};

// Whether to fit the rescale: --rescale, its auto resolved; Error for one that cannot apply.
bool fits_rescale(const CalibrateOptions& o) {
  const bool teacache = o.gate->rule == GateSpec::Rule::teacache;
  if (o.rescale == GateRescale::fit && !teacache)
    fail("--rescale fit: the rescale polynomial is teacache's (got --gate ", o.gate->rule_name(),
         ")");
  if (o.rescale != GateRescale::automatic && !o.gate->rescale.empty())
    fail("--rescale ", kGateRescaleNames.name(o.rescale),
         ": --gate already gives the rescale polynomial (", o.gate->text(), ")");
  return teacache && o.gate->rescale.empty() && o.rescale != GateRescale::none;
}

nlohmann::json rescale_json(const GateSpec& gate, const std::optional<RescaleData>& data) {
  nlohmann::json j = {{"coefficients", gate.rescale}, {"fitted", data.has_value()}};
  if (!data) return j;
  auto range = [](const std::vector<double>& v) {
    return nlohmann::json::array(
        {*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end())});
  };
  j["pairs"] = data->d_in.size();
  j["rms_residual"] = data->fit.rms_residual;
  j["r2"] = data->fit.r2;
  j["d_in_range"] = range(data->d_in);
  j["d_out_range"] = range(data->d_out);
  return j;
}

// `calibrate --gate RULE --target F`: the threshold whose mean computed fraction on the judge
// images is F, searched (cache/gate.hpp) with the gate's own sampling runs, each against the
// judge images' uncached samples; written with every threshold tried.
void run_calibrate_gate(const CalibrateOptions& o) {
  Stopwatch total;
  if (!o.gate || !o.target)
    fail("--gate and --target go together (e.g. --gate teacache --target 0.4)");
  if (!(*o.target > 0.0 && *o.target < 1.0))
    fail("--target ", *o.target,
         " is out of range (expected a fraction of computations in (0, 1))");
  if (o.budget || o.plan.spec)
    fail("--gate calibrates a gate's threshold: give it without --budget and --cache");
  if (o.correct.kind == CorrectorChoice::eoc)
    fail(
        "--gate: an EOC prior is fitted to a fixed schedule; calibrate the gate with --correct "
        "none|taylor:O|foca");
  if (o.judge_samples < 1 || o.judge_samples > o.sampling.num_samples)
    fail("--judge-samples ", o.judge_samples, " must be 1..", o.sampling.num_samples);
  check_writable_parent(o.out, "--out");

  const bool fit_rescale = fits_rescale(o);

  const RunSetup run = prepare_run(o.model, o.sampling);
  const int64_t steps = run.steps(), depth = run.model->config().depth;
  GateSpec gate = *make_gate_plan(*o.gate, steps, depth, o.plan.warmup, "--gate").gate();
  const auto corrector = make_corrector(o.correct);
  const auto judge = calibration_images(run, o.judge_samples, false).judge;
  const auto batches = make_batches(judge, run.batch_size);

  // The judge images sampled through `session_of()`'s sessions, one per batch, in index order;
  // `on_output` sees each batch's model outputs.
  auto sample_judge = [&](const std::function<CacheSession()>& session_of, CacheStats& stats,
                          const StepOutputFn& on_output = {}) {
    if (run.seed_mode == SeedMode::official) seed_global(run.seed);
    std::vector<at::Tensor> images;
    for (const auto& batch : batches) {
      CacheSession session = session_of();
      images.push_back(sample_batch(run, batch, session, {}, on_output).cpu());
      stats.add(session.stats());
    }
    return at::cat(images, 0);
  };
  Stopwatch uncached_time;
  CacheStats uncached_stats(steps);
  at::Tensor reference;
  std::optional<RescaleData> rescale;
  if (!fit_rescale) {
    reference = sample_judge([&] { return CacheSession::uncached(steps, depth); }, uncached_stats);
  } else {
    // The uncached run as a teacache gate of threshold 0 (it reuses nothing: the same bits),
    // which measures d_in at every step; d_out from the outputs. Per image (in judge order) and
    // evaluation, d_out (NaN at the first).
    const int64_t channels = run.model->config().in_channels;
    std::vector<std::vector<double>> d_out;
    std::vector<at::Tensor> previous;
    size_t first = 0;  // the current batch's first image in d_out
    auto on_output = [&](int64_t k, const at::Tensor& out) {
      const int64_t images = out.size(0);
      if (k == 0) {
        first = d_out.size();
        d_out.resize(first + static_cast<size_t>(images));
        previous.assign(static_cast<size_t>(images), at::Tensor());
      }
      for (int64_t i = 0; i < images; ++i) {
        const auto o = out.narrow(0, i, 1).narrow(1, 0, channels).to(at::kFloat).clone();
        auto& prev = previous[static_cast<size_t>(i)];
        d_out[first + static_cast<size_t>(i)].push_back(
            prev.defined() ? relative_l1((o - prev).abs().sum().item<double>(),
                                         prev.abs().sum().item<double>())
                           : std::numeric_limits<double>::quiet_NaN());
        prev = o;
      }
    };
    GateSpec measure;
    measure.rule = GateSpec::Rule::teacache;
    reference = sample_judge(
        [&] { return CacheSession(CachePlan::gated(steps, depth, measure), plain_corrector()); },
        uncached_stats, on_output);
    EOC_ASSERT(uncached_stats.total_reused() == 0 &&
                   uncached_stats.image_step_signals.size() == d_out.size(),
               "the rescale's measuring run reused branches, or lost images");
    RescaleData data;
    for (size_t i = 0; i < d_out.size(); ++i)
      for (int64_t k = 1; k < steps; ++k) {
        const double din = uncached_stats.image_step_signals[i][static_cast<size_t>(k)];
        const double dout = d_out[i][static_cast<size_t>(k)];
        if (std::isfinite(din) && std::isfinite(dout)) {
          data.d_in.push_back(din);
          data.d_out.push_back(dout);
        }
      }
    data.fit =
        fit_polynomial(data.d_in, data.d_out, static_cast<int>(GateSpec::kRescaleCoefficients) - 1);
    gate.rescale = data.fit.coefficients;
    log::info(str("teacache rescale fitted on ", data.d_in.size(), " step pairs of ", d_out.size(),
                  " judge images: ", gate.text().substr(gate.text().find("poly=")), " (R^2 ",
                  data.fit.r2, ", rms residual ", data.fit.rms_residual, ")"));
    rescale = std::move(data);
  }
  const double uncached_seconds = uncached_time.seconds();
  int64_t step_runs = 0;

  auto trial = [&](double threshold) {
    GateSpec g = gate;
    g.threshold = threshold;
    CacheStats stats(steps);
    const auto images = sample_judge(
        [&] { return CacheSession(CachePlan::gated(steps, depth, g), *corrector); }, stats);
    step_runs += steps;
    double computed = 0;
    for (double f : stats.image_computed_fraction) computed += f;
    computed /= static_cast<double>(stats.image_computed_fraction.size());
    GateTrial t{threshold, computed, mse(images, reference)};
    log::info(str("gate ", g.text(), ": computes ", computed, " of the branches, MSE ", t.error));
    return t;
  };
  // A fifth of a step's worth of one image's computations, averaged over the judge images:
  // held-out images land within about 0.01 more (docs/BENCHMARKS.md).
  const double tolerance = 0.2 / static_cast<double>(steps);
  auto trials = search_gate_threshold(trial, *o.target, tolerance);
  const GateTrial chosen = nearest_trial(trials, *o.target);
  gate.threshold = chosen.threshold;

  GateFile file;
  file.gate = gate;
  file.corrector = kCorrectorNames.name(
      o.correct.kind == CorrectorChoice::automatic ? CorrectorChoice::none : o.correct.kind);
  file.order = o.correct.order;
  file.assumes = run_settings(RunFacts{run, CachePlan::gated(steps, depth, gate)}, kInPrior);
  std::sort(trials.begin(), trials.end(),
            [](const GateTrial& a, const GateTrial& b) { return a.threshold < b.threshold; });
  nlohmann::json table = nlohmann::json::array();
  for (const auto& t : trials)
    table.push_back({{"threshold", t.threshold}, {"computed", t.computed}, {"mse", t.error}});
  file.calibration = {
      {"eoc_version", EOC_VERSION},
      {"target", *o.target},
      {"tolerance", tolerance},
      {"judge_samples", judge.size()},
      {"seed", run.seed},
      {"seed_mode", seed_mode_name(run.seed_mode)},
      {"classes", classes_json(o.sampling.classes)},
      {"chosen",
       {{"threshold", chosen.threshold}, {"computed", chosen.computed}, {"mse", chosen.error}}},
      {"trials", table},
      {"rescale", rescale_json(gate, rescale)},
      {"cost",
       {{"judge_step_runs", step_runs},
        {"multiple_of_uncached_judge_sampling",
         static_cast<double>(step_runs) / static_cast<double>(steps)},
        {"uncached_judge_seconds", uncached_seconds}}},
      {"seconds", total.seconds()}};
  if (gate.rescale.empty()) file.calibration.erase("rescale");
  save_gate_file(o.out, file);
  log::info(str("threshold -> computed fraction -> MSE against uncached (judge images",
                gate.rescale.empty() ? ""
                : rescale            ? "; teacache's signal rescaled by the fitted polynomial"
                                     : "; teacache's signal rescaled by the given polynomial",
                "):"));
  for (const auto& t : trials) {
    char line[160];
    std::snprintf(line, sizeof(line), "  %-12.6g %8.4f %12.4e%s", t.threshold, t.computed, t.error,
                  t.threshold == chosen.threshold ? "   <- chosen" : "");
    log::info(line);
  }
  log::info(str("wrote gate ", o.out, " (", gate.text(), ", correct ", file.corrector,
                o.correct.kind == CorrectorChoice::taylor ? str(":", file.order) : "",
                "): computes ", chosen.computed, " of the branches on ", judge.size(),
                " judge images (target ", *o.target, ") in ", total.seconds(), " s"));
}

}  // namespace

void run_calibrate(const CalibrateOptions& o) {
  if (o.gate || o.target) return run_calibrate_gate(o);
  Stopwatch total;
  const CalibrationSettings settings{
      o.form, o.judgment, o.thetas.empty() ? default_thetas() : o.thetas, max_order(o), o.foca};
  check_calibrate_options(o, settings.thetas);

  const RunSetup run = prepare_run(o.model, o.sampling);
  const int64_t depth = run.model->config().depth;
  const BlockLoop loop = run.block_loop();
  // Everything checked before any image is sampled.
  std::optional<BudgetSearch> budget;
  std::optional<CachePlan> plan;
  if (o.budget)
    budget =
        budget_search(*o.budget, o.plan.warmup, run.steps(), settings.max_order, settings.foca);
  else
    plan = plan_to_calibrate(o.plan, run.steps(), depth);
  const bool fits = form_has_vectors(o.form);
  const CalibrationImages images = calibration_images(run, o.judge_samples, fits);
  // The official stream is seeded once per run, as sample and compare do: the fit batches, then
  // the judge batch, draw from it in that order.
  if (run.seed_mode == SeedMode::official) seed_global(run.seed);

  auto done = budget ? calibrate_eoc_with_budget(loop, *budget, settings, images)
                     : calibrate_eoc(loop, *plan, settings, images);
  PriorFile file;
  file.prior = std::move(done.prior);
  file.assumes = run_settings(RunFacts{run, done.plan}, kInPrior);
  int64_t fitted = 0;
  for (const auto& batch : images.fit_batches) fitted += static_cast<int64_t>(batch.size());
  file.calibration = {{"eoc_version", EOC_VERSION},
                      {"num_samples", run.num_samples},
                      {"fit_samples", fitted},
                      {"judge_samples", images.judge.size()},
                      {"seed", run.seed},
                      {"seed_mode", seed_mode_name(run.seed_mode)},
                      {"classes", classes_json(o.sampling.classes)},
                      {"batch_size", run.batch_size},
                      {"max_order", settings.max_order},
                      {"foca", settings.foca},
                      {"budget", o.budget ? nlohmann::json(*o.budget) : nlohmann::json(nullptr)},
                      {"cost", cost_json(done.cost)},
                      {"seconds", total.seconds()}};
  if (done.search) file.calibration["search"] = search_json(*done.search);
  save_prior(o.out, file);
  if (!o.out_mask.empty())
    write_file_atomic(o.out_mask,
                      mask_json_text(done.plan, str("cache plan of the EOC prior ", o.out, " (",
                                                    done.plan.spec(), ")")));
  print_summary(file.prior);
  if (done.search)
    log::info(str("budget ", *o.budget, ": computes ", done.search->computed.size(), " of ",
                  run.steps(), " steps (", 100.0 * (1.0 - done.plan.caching_level()),
                  "% of the branch computations)"));
  log::info(str("calibration cost: ", done.cost.step_runs, " model steps on the judge batch = ",
                done.cost.multiple(), " x sampling the judge images uncached (that pass took ",
                done.cost.reference_seconds, " s)"));
  log::info(str("wrote prior ", o.out, " (", eoc_form_name(o.form), " form, ",
                judgment_name(o.judgment), " judgment, ", file.prior.judged.size(),
                " reused steps) in ", total.seconds(), " s"));
}

}  // namespace eoc

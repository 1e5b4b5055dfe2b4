// `eoc calibrate`: EOC's prior extraction and judgment (docs/EOC.md).
//  1. Extraction: the UNCACHED sampler runs on the fit samples; at every entry the plan reuses,
//     the caching difference Delta = F[k] - F[r] is accumulated per channel against the base the
//     chosen form corrects (F[r] for `scale`, F[r] - F[p] for `extrapolate`), separately for the
//     conditional and unconditional halves, and fitted by least squares.
//  2. Judgment on held-out samples: each reused step gets a strength theta_k, chosen either by
//     the error of that step's guided output (local) or by the error of the final images
//     (trajectory: greedily in step order along the cached trajectory).
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "eoc/error.hpp"
#include "eoc/log.hpp"
#include "eoc/pipeline.hpp"
#include "run_common.hpp"

namespace eoc {
namespace {

// Fitted coefficients beyond this are clamped: a least-squares ratio with a tiny denominator
// is noise, and the loader refuses priors whose corrections would blow features up.
constexpr double kMaxCoefficient = 10.0;

using Sums = std::pair<at::Tensor, at::Tensor>;  // numerator, denominator: (halves, D) float64

// Follows the target plan beside an uncached run: stores what the cached run would have stored,
// and at every reused entry accumulates the true difference against the stored base.
class DifferenceAccumulator final : public BranchObserver {
 public:
  DifferenceAccumulator(const CachePlan& plan, EocForm form, int64_t halves,
                        std::map<EntryKey, Sums>& sums)
      : plan_(plan), form_(form), halves_(halves), shadow_(plan.depth(), true), sums_(sums) {}

  void on_computed(int64_t step, int64_t block, Branch b, const at::Tensor& f) override {
    if (!plan_.reuses(step, block, b)) {
      shadow_.store(step, block, b, f);
      return;
    }
    const auto& e = shadow_.get(block, b);
    if (form_ != EocForm::scale && !e.previous.defined()) return;  // extrapolation needs F[p]
    const auto base = form_ == EocForm::scale ? e.value : e.value - e.previous;
    const auto halves = [&](const at::Tensor& t) {
      return t.to(at::kDouble).reshape({halves_, -1, t.size(2)});
    };
    const auto delta = halves(f) - halves(e.value);
    const auto basis = halves(base);
    auto& s = sums_[{step, block, static_cast<int>(b)}];
    const auto num = (delta * basis).sum(1), den = (basis * basis).sum(1);
    s.first = s.first.defined() ? s.first + num : num;
    s.second = s.second.defined() ? s.second + den : den;
  }

 private:
  const CachePlan& plan_;
  EocForm form_;
  int64_t halves_;
  FeatureCache shadow_;
  std::map<EntryKey, Sums>& sums_;
};

void fit_vectors(const RunSetup& run, const CachePlan& plan, const std::vector<int64_t>& fit,
                 EocPrior& prior) {
  const int64_t halves = run.guidance.batch_multiplier();
  std::map<EntryKey, Sums> sums;
  const CachedDit dit(*run.model, run.schedule, run.guidance);
  log::Progress progress("extracting caching differences",
                         static_cast<long>(fit.size()) * run.schedule.size());
  for (const auto& batch : make_batches(fit, run.batch_size)) {
    auto start = begin_batch(run, batch);
    DifferenceAccumulator acc(plan, prior.form, halves, sums);
    sample_loop(
        run.sampler, run.schedule, start.x,
        [&](const at::Tensor& x, int64_t k) {
          check_stop();
          return dit.run_uncached(x, k, start.labels, &acc);
        },
        [&](int64_t) { return start.noise->step(draws_noise(run.sampler)); },
        [&](int64_t) { progress.advance(static_cast<long>(batch.size())); });
  }
  progress.finish();
  const int64_t d = run.model->config().hidden_size;
  for (const auto& [key, s] : sums) {
    // Least squares per channel: Delta ~ coef * basis.
    auto coef = at::where(s.second > 1e-12, s.first / s.second.clamp_min(1e-12),
                          at::zeros_like(s.first));
    coef = coef.clamp(-kMaxCoefficient, kMaxCoefficient).to(at::kFloat).cpu();
    // Without guidance only the conditional half exists; store it in both rows.
    prior.vectors[key] = halves == 2 ? coef : at::cat({coef, coef}).reshape({2, d});
  }
}

double mse(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).pow(2).mean().item<double>();
}

// The judge samples as one batch, with every step's noise drawn up front so that every
// candidate trajectory sees the same noise.
struct JudgeBatch {
  at::Tensor x_T, labels;
  std::vector<at::Tensor> noise;  // per step (undefined where the sampler draws none)
  at::Tensor reference;           // the uncached final images
};

JudgeBatch make_judge_batch(const RunSetup& run, const std::vector<int64_t>& indices) {
  auto start = begin_batch(run, indices);
  JudgeBatch j{start.x, start.labels, {}, {}};
  for (int64_t k = 0; k < run.schedule.size(); ++k)
    j.noise.push_back(start.noise->step(draws_noise(run.sampler)));
  return j;
}

// A point on a (cached) trajectory: the state before step `step` and the cache it holds.
struct TrajectoryState {
  int64_t step = 0;
  at::Tensor x;
  FeatureCache cache;
};

// Runs steps [state.step, until) of the cached trajectory under `corrector`.
TrajectoryState advance(const RunSetup& run, const CachedDit& dit, const CachePlan& plan,
                        const Corrector& corrector, const JudgeBatch& j, TrajectoryState s,
                        int64_t until) {
  for (; s.step < until; ++s.step) {
    check_stop();
    const auto out = dit.run(s.x, s.step, j.labels, plan, s.cache, corrector);
    s.x = sampler_step(run.sampler, run.schedule, s.step, s.x, out, j.noise[s.step]);
  }
  return s;
}

std::vector<int64_t> reused_steps(const CachePlan& plan) {
  std::vector<int64_t> steps;
  for (int64_t k = 0; k < plan.steps(); ++k)
    if (plan.step_reuses_any(k)) steps.push_back(k);
  return steps;
}

// Local judgment (the specification's baseline): at each reused step, from the TRUE state and
// the true cached features, the guided output under each candidate strength against the
// uncached output.
void judge_local(const RunSetup& run, const CachePlan& plan, const JudgeBatch& j,
                 EocCorrector& corrector, EocPrior& prior) {
  const CachedDit dit(*run.model, run.schedule, run.guidance);
  const int64_t c = run.model->config().in_channels;
  FeatureCache shadow(plan.depth(), true);
  struct Store final : BranchObserver {
    const CachePlan& plan;
    FeatureCache& cache;
    Store(const CachePlan& p, FeatureCache& f) : plan(p), cache(f) {}
    void on_computed(int64_t k, int64_t l, Branch b, const at::Tensor& f) override {
      if (!plan.reuses(k, l, b)) cache.store(k, l, b, f);
    }
  } store(plan, shadow);
  at::Tensor x = j.x_T;
  log::Progress progress("judging (local)", run.schedule.size());
  for (int64_t k = 0; k < run.schedule.size(); ++k) {
    check_stop();
    std::vector<at::Tensor> candidates;
    if (plan.step_reuses_any(k))
      for (double theta : prior.thetas) {
        corrector.set_step_theta(k, theta);
        candidates.push_back(dit.run(x, k, j.labels, plan, shadow, corrector, nullptr, nullptr, false));
      }
    const auto truth = dit.run_uncached(x, k, j.labels, &store);
    if (!candidates.empty()) {
      StepJudgment s{k, 0.0, prior.thetas, {}};
      for (const auto& out : candidates) s.errors.push_back(mse(out.narrow(1, 0, c), truth.narrow(1, 0, c)));
      s.theta = s.candidates[std::min_element(s.errors.begin(), s.errors.end()) - s.errors.begin()];
      corrector.set_step_theta(k, s.theta);
      prior.step_theta[k] = s.theta;
      prior.judged.push_back(s);
    }
    x = sampler_step(run.sampler, run.schedule, k, x, truth, j.noise[k]);
    progress.advance();
  }
  progress.finish();
}

// Trajectory judgment: in step order, each reused step's strength is chosen by the error of the
// FINAL images of the cached trajectory (earlier steps at their chosen strengths, later ones at
// 1). Candidates: 0 (plain), 1 (the correction as fitted/forecast) and the least-squares optimum
// on the line through their final images, clamped to the theta range. theta = 1's result is the
// previous choice's trajectory, so a step costs one or two runs from that step to the end.
void judge_trajectory(const RunSetup& run, const CachePlan& plan, const JudgeBatch& j,
                      EocCorrector& corrector, EocPrior& prior) {
  const CachedDit dit(*run.model, run.schedule, run.guidance);
  const double lo = *std::min_element(prior.thetas.begin(), prior.thetas.end());
  const double hi = *std::max_element(prior.thetas.begin(), prior.thetas.end());
  const auto steps = reused_steps(plan);
  const int64_t end = run.schedule.size();
  TrajectoryState state{0, j.x_T, FeatureCache(plan.depth(), corrector.needs_previous())};
  at::Tensor current = advance(run, dit, plan, corrector, j, state, end).x;  // all theta = 1
  log::Progress progress("judging (trajectory)", static_cast<long>(steps.size()));
  for (size_t i = 0; i < steps.size(); ++i) {
    const int64_t k = steps[i];
    state = advance(run, dit, plan, corrector, j, state, k);
    auto final_with = [&](double theta) {
      corrector.set_step_theta(k, theta);
      return advance(run, dit, plan, corrector, j, state, end).x;
    };
    const at::Tensor at_one = current, at_zero = final_with(0.0);
    const auto d = at_one - at_zero, r = j.reference - at_zero;
    const double dd = (d * d).sum().item<double>();
    double best = dd > 0 ? std::clamp((r * d).sum().item<double>() / dd, lo, hi) : 1.0;
    StepJudgment s{k, 1.0, {0.0, 1.0}, {mse(at_zero, j.reference), mse(at_one, j.reference)}};
    std::vector<at::Tensor> finals{at_zero, at_one};
    if (std::fabs(best) > 1e-3 && std::fabs(best - 1.0) > 1e-3) {
      finals.push_back(final_with(best));
      s.candidates.push_back(best);
      s.errors.push_back(mse(finals.back(), j.reference));
    }
    const size_t pick = std::min_element(s.errors.begin(), s.errors.end()) - s.errors.begin();
    s.theta = s.candidates[pick];
    current = finals[pick];
    corrector.set_step_theta(k, s.theta);
    prior.step_theta[k] = s.theta;
    prior.judged.push_back(s);
    progress.advance();
  }
  progress.finish();
}

at::Tensor uncached_final(const RunSetup& run, const JudgeBatch& j) {
  const CachedDit dit(*run.model, run.schedule, run.guidance);
  at::Tensor x = j.x_T;
  for (int64_t k = 0; k < run.schedule.size(); ++k) {
    check_stop();
    x = sampler_step(run.sampler, run.schedule, k, x, dit.run_uncached(x, k, j.labels), j.noise[k]);
  }
  return x;
}

void print_summary(const EocPrior& prior) {
  for (const auto& s : prior.judged) {
    double plain = std::numeric_limits<double>::quiet_NaN(), chosen = plain;
    for (size_t i = 0; i < s.candidates.size(); ++i) {
      if (s.candidates[i] == 0.0) plain = s.errors[i];
      if (s.candidates[i] == s.theta) chosen = s.errors[i];
    }
    char line[160];
    std::snprintf(line, sizeof(line), "step %3lld: plain error %.4g, corrected %.4g, theta %.3g",
                  static_cast<long long>(s.step), plain, chosen, s.theta);
    log::info(line);
  }
}

std::vector<double> default_thetas() { return {0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5}; }

}  // namespace

void run_calibrate(const CalibrateOptions& o) {
  Stopwatch total;
  const EocForm form = parse_eoc_form(o.form);
  if (o.judgment != "local" && o.judgment != "trajectory")
    fail("--judgment '", o.judgment, "' is not one of: trajectory, local");
  const auto thetas = o.thetas.empty() ? default_thetas() : o.thetas;
  for (double t : thetas)
    if (!std::isfinite(t) || t < 0.0 || t > 4.0)
      fail("--eoc-thetas: ", t, " is out of range (expected 0..4)");
  const int64_t n = o.sampling.num_samples;
  const bool fits = form_has_vectors(form);
  if (o.judge_samples < 1 || o.judge_samples > n - (fits ? 1 : 0))
    fail("--judge-samples ", o.judge_samples, " must be 1..", n - (fits ? 1 : 0), " for ", n,
         " calibration samples", fits ? " (at least one is needed for the fit)" : "");
  check_writable_parent(o.out, "--out");  // fail now, not after the calibration

  const RunSetup run = prepare_run(o.model, o.sampling);
  const auto plan = parse_cache_plan(o.cache, run.schedule.size(), run.model->config().depth);
  plan.validate();
  if (plan.reused_total() == 0) fail("--cache '", o.cache, "' reuses nothing: there is nothing to calibrate");
  c10::InferenceMode inference;

  EocPrior prior;
  prior.assumes = run.assumptions(plan);
  prior.form = form;
  prior.judgment = o.judgment;
  prior.thetas = thetas;
  prior.step_theta.assign(run.schedule.size(), 0.0);
  for (int64_t k : reused_steps(plan)) prior.step_theta[k] = 1.0;
  std::vector<int64_t> fit, judge;
  for (int64_t i = 0; i < n; ++i) (i < n - o.judge_samples ? fit : judge).push_back(i);
  if (fits) fit_vectors(run, plan, fit, prior);

  EocCorrector corrector(prior, run.device, run.model->dtype());
  JudgeBatch j = make_judge_batch(run, judge);
  j.reference = uncached_final(run, j);
  if (o.judgment == "local") judge_local(run, plan, j, corrector, prior);
  else judge_trajectory(run, plan, j, corrector, prior);

  prior.calibration_json = nlohmann::json({
      {"eoc_version", EOC_VERSION}, {"num_samples", n}, {"fit_samples", fits ? fit.size() : 0},
      {"judge_samples", judge.size()}, {"seed", run.seed}, {"seed_mode", o.sampling.seed_mode},
      {"classes", o.sampling.classes.empty() ? "default" : o.sampling.classes},
      {"batch_size", run.batch_size}, {"seconds", total.seconds()}}).dump();
  save_prior(o.out, prior);
  print_summary(prior);
  log::info(str("wrote prior ", o.out, " (", eoc_form_name(form), " form, ", o.judgment,
                " judgment, ", prior.judged.size(), " reused steps) in ", total.seconds(), " s"));
}

}  // namespace eoc

#include "eoc/cache/eoc_calibration.hpp"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/base/stop.hpp"
#include "eoc/base/stopwatch.hpp"
#include "eoc/diffusion/image_quality.hpp"

namespace eoc {
namespace {

// Fitted coefficients beyond this are clamped: a least-squares ratio with a tiny denominator
// is noise, and the loader refuses priors whose corrections would blow features up.
constexpr double kMaxCoefficient = 10.0;

using Sums = std::pair<at::Tensor, at::Tensor>;  // numerator, denominator: (halves, D) float64

// Sees a shadowing session's true features beside the entries a cached run would reuse, and
// accumulates their difference against the base the form corrects.
class DifferenceAccumulator final : public BranchObserver {
 public:
  DifferenceAccumulator(EocForm form, int64_t halves, std::map<EntryKey, Sums>& sums)
      : form_(form), halves_(halves), sums_(sums) {}

  void on_shadowed(int64_t step, int64_t block, Branch b, const at::Tensor& f,
                   const CachedFeature& e) override {
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
  EocForm form_;
  int64_t halves_;
  std::map<EntryKey, Sums>& sums_;
};

struct Calibration {
  const BlockLoop& loop;
  const CachePlan& plan;
  int64_t steps() const { return loop.evaluations(); }
};

void fit_vectors(const Calibration& cal, const CalibrationImages& images, EocPrior& prior) {
  const int64_t halves = cal.loop.guidance().batch_multiplier();
  std::map<EntryKey, Sums> sums;
  int64_t count = 0;
  for (const auto& batch : images.fit_batches) count += static_cast<int64_t>(batch.size());
  log::Progress progress("extracting caching differences", count * cal.steps(),
                         str("image-steps (", count, " images x ", cal.steps(), " steps)"));
  for (const auto& batch : images.fit_batches) {
    auto start = images.start(batch);
    DifferenceAccumulator acc(prior.form, halves, sums);
    auto shadow = CacheSession::shadowing(cal.plan);
    shadow.watch(acc);
    sample_loop(
        cal.loop.sampler(), start.x,
        [&](const at::Tensor& x, int64_t k) {
          check_stop();
          return cal.loop.run(x, k, start.labels, shadow);
        },
        [&](int64_t e) { return start.noise->for_evaluation(cal.loop.sampler(), e); },
        [&](int64_t) { progress.advance(static_cast<long>(batch.size())); });
  }
  progress.finish();
  const int64_t d = cal.loop.model().config().hidden_size;
  for (const auto& [key, s] : sums) {
    // Least squares per channel: Delta ~ coef * basis.
    auto coef =
        at::where(s.second > 1e-12, s.first / s.second.clamp_min(1e-12), at::zeros_like(s.first));
    coef = coef.clamp(-kMaxCoefficient, kMaxCoefficient).to(at::kFloat).cpu();
    // Without guidance only the conditional half exists; store it in both rows.
    prior.vectors[key] = halves == 2 ? coef : at::cat({coef, coef}).reshape({2, d});
  }
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
void judge_local(const CachePlan& plan, JudgeRuns& runs, EocCorrector& corrector, EocPrior& prior) {
  const BlockLoop& loop = runs.loop();
  const int64_t c = loop.model().config().in_channels;
  auto truth = CacheSession::shadowing(plan);
  log::Progress progress("judging (local)", runs.steps(), "steps");
  // The true trajectory; at each reused step the candidates run from its state first.
  runs.run_steps(
      SamplerState{runs.x_T(), {}, {}}, 0, runs.steps(), [&](const at::Tensor& x, int64_t k) {
        check_stop();
        std::vector<at::Tensor> candidates;
        if (plan.step_reuses_any(k))
          for (double theta : prior.thetas) {
            corrector.set_step_theta(k, theta);
            auto trial = truth.cached_from_here(corrector);
            candidates.push_back(loop.run(x, k, runs.labels(), trial));
            runs.count_step_run();
          }
        auto out = loop.run(x, k, runs.labels(), truth);
        runs.count_step_run();
        if (!candidates.empty()) {
          StepJudgment s{k, 0.0, prior.thetas, {}, 1, {}};
          for (const auto& cand : candidates)
            s.errors.push_back(mse(cand.narrow(1, 0, c), out.narrow(1, 0, c)));
          s.theta =
              s.candidates[std::min_element(s.errors.begin(), s.errors.end()) - s.errors.begin()];
          corrector.set_step_theta(k, s.theta);
          prior.step_theta[k] = s.theta;
          if (s.theta == 0.0) prior.step_order[k] = 0;
          prior.judged.push_back(s);
        }
        progress.advance();
        return out;
      });
  progress.finish();
}

// Trajectory judgment: in step order, each reused step's strength (and, with max_order > 1, its
// forecast order) is chosen by the error of the FINAL images of the cached trajectory (earlier
// steps at their choices, later ones at theta 1 with the base order). Orders: the base order is
// the fixed order whose trajectory (every reused step at theta 1) ends closest to the uncached
// images, so the search starts from the best fixed forecast and never ends worse than it on the
// judge images (by the cost-weighted error: see kOrderCost, which every choice among
// candidates of different orders uses). Candidates per step: theta 0 (plain), theta 1 at the base
// order (the previous choice's trajectory, no run), theta 1 at every other order, and the
// least-squares optimum on the line from theta 0 to theta 1 of the best of those orders (the final
// image is close to affine in theta), clamped to the theta range. With max_order 1 a step costs one
// or two runs from that step to the end; each further order adds one.
void judge_trajectory(const CachePlan& plan, JudgeRuns& runs, EocCorrector& corrector,
                      const std::vector<int>& orders, EocPrior& prior) {
  const double lo = *std::min_element(prior.thetas.begin(), prior.thetas.end());
  const double hi = *std::max_element(prior.thetas.begin(), prior.thetas.end());
  const auto steps = reused_steps(plan);
  const TrajectoryState start = runs.start(CacheSession(plan, corrector));
  auto all_at = [&](int order) {
    for (const int64_t k : steps) corrector.set_step(k, 1.0, order);
    return runs.finish(start);
  };
  const bool search = orders.size() > 1;
  int base = 1;
  at::Tensor current = all_at(1);
  if (search) {
    prior.fixed_order_errors = {runs.error(current)};
    std::vector<at::Tensor> finals{current};
    for (size_t i = 1; i < orders.size(); ++i) {
      finals.push_back(all_at(orders[i]));
      prior.fixed_order_errors.push_back(runs.error(finals.back()));
    }
    const auto& e = prior.fixed_order_errors;
    size_t best = 0;
    for (size_t i = 1; i < orders.size(); ++i)
      if (cost_weighted_error(e[i], orders[i]) < cost_weighted_error(e[best], orders[best]))
        best = i;
    base = orders[best];
    current = finals[best];
    for (const int64_t k : steps) corrector.set_step(k, 1.0, base);
    std::string errors;
    for (size_t i = 0; i < orders.size(); ++i)
      errors += str(i ? ", " : "", forecast_name(orders[i]), ": ", e[i]);
    log::info(str("judging (trajectory): final-image errors of the fixed forecasts (", errors,
                  "); starting from ", forecast_name(base)));
  }
  TrajectoryState state = start;
  log::Progress progress("judging (trajectory)", static_cast<long>(steps.size()), "reused steps");
  for (const int64_t k : steps) {
    state = runs.advance(std::move(state), k);
    auto final_with = [&](double theta, int order) {
      corrector.set_step(k, theta, order);
      return runs.finish(state);
    };
    StepJudgment s{k, 1.0, {}, {}, base, {}};
    std::vector<at::Tensor> finals;
    auto add = [&](double theta, int order, const at::Tensor& final) {
      s.candidates.push_back(theta);
      s.orders.push_back(theta == 0.0 ? 0 : order);
      s.errors.push_back(runs.error(final));
      finals.push_back(final);
    };
    add(0.0, base, final_with(0.0, base));
    add(1.0, base, current);
    for (const int o : orders)
      if (o != base) add(1.0, o, final_with(1.0, o));
    // With an order search, candidates are compared by their cost-weighted errors. The best
    // order at theta 1 gives the line's far end.
    auto weighted = [&](size_t i) {
      return search ? cost_weighted_error(s.errors[i], s.orders[i]) : s.errors[i];
    };
    size_t far = 1;
    for (size_t i = 2; i < s.errors.size(); ++i)
      if (weighted(i) < weighted(far)) far = i;
    const int far_order = s.orders[far];
    const auto d = finals[far] - finals[0], r = runs.reference() - finals[0];
    const double dd = (d * d).sum().item<double>();
    const double best = dd > 0 ? std::clamp((r * d).sum().item<double>() / dd, lo, hi) : 1.0;
    if (std::fabs(best) > 1e-3 && std::fabs(best - 1.0) > 1e-3)
      add(best, far_order, final_with(best, far_order));
    size_t pick = 0;
    for (size_t i = 1; i < s.errors.size(); ++i)
      if (weighted(i) < weighted(pick)) pick = i;
    s.theta = s.candidates[pick];
    s.order = s.orders[pick];
    current = finals[pick];
    corrector.set_step(k, s.theta, s.theta == 0.0 ? base : s.order);
    prior.step_theta[k] = s.theta;
    prior.step_order[k] = s.order;
    if (!search) s.orders.clear();  // every candidate is order 1: the prior stays as before
    prior.judged.push_back(s);
    progress.advance();
  }
  progress.finish();
}

// The prior before judgment: every step of `reused` at theta 1 with room for max_order.
EocPrior initial_prior(const CalibrationSettings& settings, int64_t steps,
                       const std::vector<int64_t>& reused) {
  EocPrior prior;
  prior.form = settings.form;
  prior.judgment = settings.judgment;
  prior.thetas = settings.thetas;
  prior.step_theta.assign(steps, 0.0);
  prior.step_order.assign(steps, 0);
  for (int64_t k : reused) {
    prior.step_theta[k] = 1.0;
    prior.step_order[k] = settings.max_order;  // the corrector keeps what the search may use
  }
  return prior;
}

void judge(const CachePlan& plan, const CalibrationSettings& settings, JudgeRuns& runs,
           EocCorrector& corrector, EocPrior& prior) {
  if (settings.judgment == Judgment::local)
    judge_local(plan, runs, corrector, prior);
  else
    judge_trajectory(plan, runs, corrector, forecast_orders(settings.max_order, settings.foca),
                     prior);
}

void check_settings(const CalibrationSettings& settings) {
  EOC_ASSERT(!settings.thetas.empty(), "calibration without candidates");
  EOC_ASSERT(settings.max_order >= 1 && settings.max_order <= kMaxTaylorOrder &&
                 ((settings.max_order == 1 && !settings.foca) ||
                  (settings.form == EocForm::taylor && settings.judgment == Judgment::trajectory)),
             "a forecast order search up to ", settings.max_order, settings.foca ? " and FoCa" : "",
             " for this form or judgment");
}

CalibrationCost cost_of(const JudgeRuns& runs, const Stopwatch& watch) {
  return {runs.step_runs(), runs.steps(), watch.seconds(), runs.reference_seconds()};
}

}  // namespace

Calibrated calibrate_eoc(const BlockLoop& loop, const CachePlan& plan,
                         const CalibrationSettings& settings, const CalibrationImages& images) {
  check_settings(settings);
  EOC_ASSERT(!images.judge.empty() && plan.reused_total() > 0,
             "calibration without judge images or reused entries");
  c10::InferenceMode inference;
  const Stopwatch watch;
  const Calibration cal{loop, plan};
  Calibrated out{plan, initial_prior(settings, plan.steps(), reused_steps(plan)), std::nullopt, {}};
  if (form_has_vectors(settings.form)) fit_vectors(cal, images, out.prior);
  const auto corrector = make_eoc_corrector(out.prior, loop, settings.foca);
  JudgeRuns runs(loop, images.start(images.judge));
  judge(plan, settings, runs, *corrector, out.prior);
  out.cost = cost_of(runs, watch);
  return out;
}

Calibrated calibrate_eoc_with_budget(const BlockLoop& loop, const BudgetSearch& budget,
                                     const CalibrationSettings& settings,
                                     const CalibrationImages& images) {
  check_settings(settings);
  EOC_ASSERT(settings.form == EocForm::taylor && settings.judgment == Judgment::trajectory &&
                 images.fit_batches.empty() && !images.judge.empty(),
             "a budget search outside the taylor form's trajectory judgment");
  EOC_ASSERT(budget.max_order == settings.max_order && budget.foca == settings.foca,
             "search and judgment orders differ");
  c10::InferenceMode inference;
  const Stopwatch watch;
  const int64_t steps = loop.evaluations(), depth = loop.model().config().depth;
  std::vector<int64_t> every(steps);
  for (int64_t k = 0; k < steps; ++k) every[k] = k;
  // The search's forecasts: theta 1 everywhere, series up to max_order.
  const auto forecast =
      make_eoc_corrector(initial_prior(settings, steps, every), loop, settings.foca);
  JudgeRuns runs(loop, images.start(images.judge));
  auto found = search_schedule(runs, depth, budget, *forecast);
  Calibrated out{
      found.plan, initial_prior(settings, steps, reused_steps(found.plan)), std::move(found), {}};
  const auto corrector = make_eoc_corrector(out.prior, loop, settings.foca);
  judge(out.plan, settings, runs, *corrector, out.prior);
  out.cost = cost_of(runs, watch);
  return out;
}

}  // namespace eoc

#include "eoc/cache/schedule_search.hpp"

#include <algorithm>
#include <cmath>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/cache/eoc_corrector.hpp"

namespace eoc {
namespace {

constexpr int kMaxPasses = 4;
const double kWarps[] = {0.5, 0.7, 1.0, 1.4, 2.0};

// Makes `p` strictly increasing within [lo, hi] (its size fits there).
void spread_out(std::vector<int64_t>& p, int64_t lo, int64_t hi) {
  const auto m = static_cast<int64_t>(p.size());
  for (int64_t i = 0; i < m; ++i) p[i] = std::max(p[i], i == 0 ? lo : p[i - 1] + 1);
  for (int64_t i = m - 1; i >= 0; --i) p[i] = std::min(p[i], i == m - 1 ? hi : p[i + 1] - 1);
}

struct Searcher {
  JudgeRuns& runs;
  int64_t depth;
  const BudgetSearch& settings;
  EocCorrector& corrector;
  int64_t forced;  // steps 0..forced-1 are always computed
  int64_t total;   // computed steps allowed

  int64_t steps() const { return runs.steps(); }

  std::vector<int64_t> with_forced(std::vector<int64_t> free) const {
    std::vector<int64_t> c;
    for (int64_t k = 0; k < forced; ++k) c.push_back(k);
    c.insert(c.end(), free.begin(), free.end());
    return c;
  }

  // Power warp of an even spread of the free steps over [forced, S-1]: gamma > 1 packs them
  // early. Anchored at the start (the first free step computed) or at the end (the last step).
  std::vector<int64_t> warp(double gamma, bool end) const {
    const int64_t m = total - forced, range = steps() - forced;
    std::vector<int64_t> p(m);
    for (int64_t i = 0; i < m; ++i) {
      const double u = end ? static_cast<double>(i + 1) / m : static_cast<double>(i) / m;
      const double at = (end ? range - 1 : range) * std::pow(u, gamma);
      p[i] = forced + static_cast<int64_t>(end ? std::lround(at) : std::floor(at));
    }
    spread_out(p, forced, steps() - 1);
    return with_forced(p);
  }

  // Power warp of an even spread of ALL computed steps over [0, S-1] from step 0 (the forced
  // ones kept): unlike warp(), the step after the forced ones need not be computed.
  std::vector<int64_t> uniform(double gamma) const {
    std::vector<int64_t> p(total);
    for (int64_t i = 0; i < total; ++i) {
      const double u = static_cast<double>(i) / total;
      p[i] = i < forced ? i : static_cast<int64_t>(std::floor(steps() * std::pow(u, gamma)));
    }
    spread_out(p, 0, steps() - 1);
    return p;
  }

  std::vector<int> orders() const { return forecast_orders(settings.max_order, settings.foca); }
  void set_order(int order) {
    for (int64_t k = 0; k < steps(); ++k) corrector.set_step(k, 1.0, order);
  }

  CachePlan plan_of(const std::vector<int64_t>& computed) const {
    return CachePlan::computing(steps(), depth, computed, "budget-search");
  }

  double score(const std::vector<int64_t>& computed, int order) {
    set_order(order);
    return runs.error(runs.finish(runs.start(CacheSession(plan_of(computed), corrector))));
  }

  std::vector<ShapeTried> shapes() const {
    std::vector<ShapeTried> s;
    auto add = [&](std::string name, std::vector<int64_t> c) {
      for (const auto& t : s)
        if (t.computed == c) return;  // the same schedule under another name
      s.push_back({std::move(name), std::move(c), 1, 0.0});
    };
    add("even", warp(1.0, false));
    if (total > forced) {
      for (double g : kWarps) add(str("warp:", g), warp(g, false));
      for (double g : kWarps) add(str("warp-end:", g), warp(g, true));
      for (double g : kWarps) add(str("uniform:", g), uniform(g));
    }
    for (int64_t n = 2; n < steps(); ++n) {
      const auto fora = CachePlan::fora(steps(), 1, n);
      std::vector<int64_t> c;
      for (int64_t k = 0; k < steps(); ++k)
        if (k < forced || !fora.step_reuses_any(k)) c.push_back(k);
      if (static_cast<int64_t>(c.size()) == total) add(str("fora:", n), c);
    }
    return s;
  }

  void try_shapes(SearchedSchedule& out) {
    auto s = shapes();
    log::Progress progress("budget search: shapes", static_cast<long>(s.size()), "schedules");
    // The even spread at every order finds the order the other shapes are tried at.
    // Orders are compared by their cost-weighted errors (cache/eoc_calibration.hpp).
    int order = 1;
    double best = 0.0;
    for (const int o : orders()) {
      const double e = score(s[0].computed, o);
      out.shapes.push_back({s[0].name, s[0].computed, o, e});
      if (o == 1 || cost_weighted_error(e, o) < cost_weighted_error(best, order))
        best = e, order = o;
    }
    progress.advance();
    size_t pick = 0;
    for (size_t i = 1; i < s.size(); ++i) {
      s[i].order = order;
      s[i].error = score(s[i].computed, order);
      out.shapes.push_back(s[i]);
      if (s[i].error < best) best = s[i].error, pick = i;
      progress.advance();
    }
    progress.finish();
    out.computed = s[pick].computed;
    out.order = order;
    out.error = best;
    if (pick == 0) return;  // the even spread was tried at every order already
    for (const int o : orders()) {
      if (o == order) continue;
      const double e = score(s[pick].computed, o);
      out.shapes.push_back({s[pick].name, s[pick].computed, o, e});
      if (cost_weighted_error(e, o) < cost_weighted_error(out.error, out.order))
        out.error = e, out.order = o;
    }
  }

  // One pass of coordinate descent with moves of d steps; returns the moves taken.
  int64_t refine_pass(SearchedSchedule& out, int64_t d) {
    auto& c = out.computed;
    set_order(out.order);
    TrajectoryState state = runs.start(CacheSession(plan_of(c), corrector));
    int64_t taken = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      if (c[i] < forced) continue;
      const int64_t lo = std::max(forced, i > 0 ? c[i - 1] + 1 : 0);
      const int64_t hi = i + 1 < c.size() ? c[i + 1] - 1 : steps() - 1;
      const int64_t from = std::max(lo, c[i] - d);
      state = runs.advance(std::move(state), from);
      int64_t best_at = c[i];
      for (const int64_t to : {c[i] - d, c[i] + d}) {
        if (to < lo || to > hi) continue;
        auto trial = c;
        trial[i] = to;
        ++out.moves_tried;
        TrajectoryState s{state.step, state.at, state.session.replanned(plan_of(trial))};
        const double e = runs.error(runs.finish(std::move(s)));
        if (e < out.error) out.error = e, best_at = to;
      }
      if (best_at != c[i]) {
        c[i] = best_at;
        state.session = state.session.replanned(plan_of(c));
        ++taken;
      }
    }
    out.moves_taken += taken;
    return taken;
  }

  void refine(SearchedSchedule& out) {
    const int64_t free = total - forced;
    if (free <= 0) return;
    int64_t d = std::max<int64_t>(1, (steps() - forced) / free / 2);
    while (out.passes < kMaxPasses) {
      ++out.passes;
      const int64_t taken = refine_pass(out, d);
      log::info(str("budget search: pass ", out.passes, " (moves of ", d, " steps): ", taken,
                    " moves taken, error ", out.error));
      if (taken == 0 && d == 1) break;
      if (taken == 0) d = std::max<int64_t>(1, d / 2);
    }
  }
};

}  // namespace

BudgetSteps budget_steps(double budget, int64_t warmup, int64_t steps) {
  return {static_cast<int64_t>(std::floor(budget * static_cast<double>(steps) + 1e-9)),
          std::max<int64_t>(1, warmup), steps};
}

SearchedSchedule search_schedule(JudgeRuns& runs, int64_t depth, const BudgetSearch& settings,
                                 EocCorrector& corrector) {
  const int64_t steps = runs.steps();
  const BudgetSteps n = budget_steps(settings.budget, settings.warmup, steps);
  EOC_ASSERT(n.fits(), "a budget of ", n.total, " computed steps of ", steps, " with ", n.forced,
             " forced");
  Searcher s{runs, depth, settings, corrector, n.forced, n.total};
  SearchedSchedule out{CachePlan(steps, depth, ""), {}, 1, 0.0, {}, 0, 0, 0};
  s.try_shapes(out);
  log::info(
      str("budget search: best shape error ", out.error, " at order ", forecast_name(out.order)));
  s.refine(out);
  out.plan = CachePlan::computing(steps, depth, out.computed, str("budget:", settings.budget));
  if (settings.warmup > 0) out.plan.compute_first(settings.warmup);
  return out;
}

}  // namespace eoc

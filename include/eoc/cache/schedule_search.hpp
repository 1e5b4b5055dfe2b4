// The budget search (docs/EOC.md, "Budget-searched schedules"): which sampling steps to compute,
// at most a fraction `budget` of them, so that the judge images' final images under the forecast
// come closest to the uncached ones. The schedule is judged WITH its correction (TaylorSeer's
// forecast at the order that suits it best), since where computations pay off depends on what
// the reused ones are corrected to; EOC's per-step judgment then runs on the result.
//
//  1. Shapes: the computed steps spread by power warps of an even spacing (denser early, even,
//     denser late): over the steps after the warm-up from the first of them or up to the last
//     step, or over all steps from step 0; and FORA's own schedule where its count fits. The even
//     spread is tried at every order up to max_order; the others at its best order; the best shape
//     then at every order.
//  2. Refinement: coordinate descent moving one computed step at a time by d steps (d = half
//     the mean gap, halved each pass down to 1), each move scored from the step it changes on,
//     accepted when the final images get closer; until a pass changes nothing.
// Cost: shapes ~ (2 max_order + 15) trajectories; a refinement pass ~ (computed steps)
// trajectories from the middle on. Both grow linearly with the step count in trajectories.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "eoc/cache/judge_runs.hpp"
#include "eoc/cache/plan.hpp"

namespace eoc {

struct BudgetSearch {
  double budget = 0.4;  // fraction of branch computations, in (0, 1)
  int64_t warmup = 0;   // steps computed whatever the search finds (counted in the budget)
  int max_order = 1;    // forecast orders tried, 1..max_order
  bool foca = false;    // and FoCa's forecast (kFocaOrder)
};

// The steps a budget computes over `steps`: `total` = floor(budget * steps), of which the first
// `forced` = max(1, warmup) are always computed. The search needs forced <= total < steps;
// calibrate states these counts in its messages.
struct BudgetSteps {
  int64_t total = 0;
  int64_t forced = 0;
  int64_t steps = 0;
  bool fits() const { return total >= forced && total < steps; }
};
BudgetSteps budget_steps(double budget, int64_t warmup, int64_t steps);

struct ShapeTried {
  std::string name;               // "even", "warp:1.5", "fora:3", "warp-end:0.75", ...
  std::vector<int64_t> computed;  // computed steps
  int order = 1;
  double error = 0.0;  // final-image MSE of the judge images
};

struct SearchedSchedule {
  CachePlan plan;  // spec "budget:F" (+warmup:K)
  std::vector<int64_t> computed;
  int order = 1;  // the forecast order the schedule was judged with (kFocaOrder: FoCa)
  double error = 0.0;
  std::vector<ShapeTried> shapes;  // phase 1, in the order tried
  int64_t moves_tried = 0, moves_taken = 0, passes = 0;
};

// `depth`: the model's block count. EOC's corrector `corrector` (a taylor-form prior with
// theta 1 everywhere and series up to max_order) forecasts; its step orders are changed here.
SearchedSchedule search_schedule(JudgeRuns& runs, int64_t depth, const BudgetSearch& settings,
                                 class EocCorrector& corrector);

}  // namespace eoc

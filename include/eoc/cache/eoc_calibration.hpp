// How an EOC prior is made (docs/EOC.md), from a model, a sampler, a cache plan and calibration
// images; writing it to a file is the runs layer's job (runs/prior_file.hpp).
//  1. Extraction: the UNCACHED sampler runs on the fit images beside a shadowing cache session
//     (cache/session.hpp); at every entry the plan reuses, the caching difference
//     Delta = F[k] - F[r] is accumulated per channel against the base the form corrects (F[r]
//     for `scale`, F[r] - F[p] for `extrapolate`), separately for the conditional and
//     unconditional halves, and fitted by least squares.
//  2. Judgment on held-out images: each reused step gets a strength theta_k, chosen either by
//     the error of that step's guided output (local) or by the error of the final images
//     (trajectory: greedily in step order along the cached trajectory). The trajectory judgment
//     of the taylor form also chooses each step's forecast order, up to max_order.
// With a budget instead of a plan, the schedule is searched first (cache/schedule_search.hpp)
// on the judge images, and judged as above.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "eoc/cache/block_loop.hpp"
#include "eoc/cache/eoc_corrector.hpp"
#include "eoc/cache/plan.hpp"
#include "eoc/cache/schedule_search.hpp"
#include "eoc/diffusion/sampler.hpp"
#include "eoc/diffusion/seeds.hpp"

namespace eoc {

struct CalibrationSettings {
  EocForm form = EocForm::taylor;
  Judgment judgment = Judgment::trajectory;
  std::vector<double> thetas;  // local: the candidates; trajectory: their range bounds theta
  int max_order = 1;           // taylor form, trajectory judgment: orders 1..max_order
  bool foca = false;           // and FoCa's forecast (kFocaOrder) beside them
};

// The calibration images, by index, and how a batch of them starts. Batches are started in
// order (fit batches, then the judge batch), as a seed stream that depends on order needs.
struct CalibrationImages {
  std::vector<std::vector<int64_t>> fit_batches;  // empty for the taylor form (nothing to fit)
  std::vector<int64_t> judge;                     // held out from the fit; judged in one batch
  std::function<BatchStart(const std::vector<int64_t>& indices)> start;
};

// What a calibration cost: block-loop steps run on the judge batch, against the steps of one
// uncached pass over it (the unit: "sampling the judge images uncached"), and seconds, whole
// and of that uncached pass. Fit batches are not counted in the steps.
struct CalibrationCost {
  int64_t step_runs = 0;
  int64_t reference_step_runs = 0;
  double seconds = 0.0;
  double reference_seconds = 0.0;
  double multiple() const {
    return reference_step_runs ? static_cast<double>(step_runs) / reference_step_runs : 0.0;
  }
};

struct Calibrated {
  CachePlan plan;  // the plan the prior is for (searched with a budget)
  EocPrior prior;
  std::optional<SearchedSchedule> search;  // with a budget: how the plan was found
  CalibrationCost cost;
};

Calibrated calibrate_eoc(const BlockLoop& loop, const CachePlan& plan,
                         const CalibrationSettings& settings, const CalibrationImages& images);

// Searches the schedule within `budget`, then judges it; taylor form, trajectory judgment,
// no fit batches, budget.max_order == settings.max_order.
Calibrated calibrate_eoc_with_budget(const BlockLoop& loop, const BudgetSearch& budget,
                                     const CalibrationSettings& settings,
                                     const CalibrationImages& images);

}  // namespace eoc

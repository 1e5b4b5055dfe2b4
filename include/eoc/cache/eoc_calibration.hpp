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
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "eoc/cache/block_loop.hpp"
#include "eoc/cache/eoc_corrector.hpp"
#include "eoc/cache/plan.hpp"
#include "eoc/diffusion/sampler.hpp"
#include "eoc/diffusion/seeds.hpp"

namespace eoc {

struct CalibrationSettings {
  EocForm form = EocForm::taylor;
  Judgment judgment = Judgment::trajectory;
  std::vector<double> thetas;  // local: the candidates; trajectory: their range bounds theta
  int max_order = 1;           // taylor form, trajectory judgment: orders 1..max_order
};

// The calibration images, by index, and how a batch of them starts. Batches are started in
// order (fit batches, then the judge batch), as a seed stream that depends on order needs.
struct CalibrationImages {
  std::vector<std::vector<int64_t>> fit_batches;  // empty for the taylor form (nothing to fit)
  std::vector<int64_t> judge;                     // held out from the fit; judged in one batch
  std::function<BatchStart(const std::vector<int64_t>& indices)> start;
};

EocPrior calibrate_eoc(const BlockLoop& loop, const SamplerOptions& sampler,
                       const CachePlan& plan, const CalibrationSettings& settings,
                       const CalibrationImages& images);

}  // namespace eoc

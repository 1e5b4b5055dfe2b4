// Error-Optimized Cache (docs/EOC.md): the prior's content and the corrector that applies it.
// (The prior FILE, with the run settings it assumes, is runs/prior_file.hpp; how a prior is
// made is cache/eoc_calibration.hpp.)
//
// A prior holds, for one model + sampler + step count + cfg + cache plan, the correction form,
// per sampling step the chosen strength theta_k (0 = leave that step plain) and, for the taylor
// form, the forecast order, with the errors that chose them, and per reused (step, block,
// branch) the fitted per-channel coefficient vectors of the conditional and unconditional halves
// (forms `scale` and `extrapolate`).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "eoc/base/names.hpp"
#include "eoc/cache/correctors.hpp"

namespace eoc {

enum class EocForm {
  scale,        // F[r] * (1 + theta E)
  extrapolate,  // F[r] + theta W (F[r] - F[p])
  taylor,  // order 1: F[r] + theta tau (F[r] - F[p]); order O: F[r] + theta sum_i Di dt^i / i!;
           // kFocaOrder: F[r] + theta (FoCa's forecast - F[r])
};

// The taylor form's per-step "order" that names FoCa's recursive forecast (cache/correctors.hpp)
// instead of a Taylor series: calibrate --foca adds it to the orders searched. Its cost is
// counted as order 2's (one more tensor written per reused entry).
constexpr int kFocaOrder = kMaxTaylorOrder + 1;
// "foca" for kFocaOrder, else the order's number (logs and messages).
std::string forecast_name(int order);
// The forecasts an order search tries, in this order: 1..max_order, then kFocaOrder with `foca`.
std::vector<int> forecast_orders(int max_order, bool foca);
inline constexpr Names<EocForm, 3> kEocFormNames{{{{EocForm::scale, "scale"},
                                                   {EocForm::extrapolate, "extrapolate"},
                                                   {EocForm::taylor, "taylor"}}}};
inline const char* eoc_form_name(EocForm f) { return kEocFormNames.name(f); }
// Whether the form has fitted coefficient vectors (taylor has none: its forecast is fixed).
bool form_has_vectors(EocForm f);

// How each reused step's strength was chosen (cache/eoc_calibration.hpp).
enum class Judgment {
  trajectory,  // by the error of the final images, greedily in step order
  local,       // by the error of that step's guided output
};
inline constexpr Names<Judgment, 2> kJudgmentNames{
    {{{Judgment::trajectory, "trajectory"}, {Judgment::local, "local"}}}};
inline const char* judgment_name(Judgment j) { return kJudgmentNames.name(j); }

using EntryKey = std::tuple<int64_t, int64_t, int>;  // (step, block, branch)

// How one reused step's strength (and order) was chosen: the candidates tried and the error of
// each (local judgment: guided-output MSE at that step; trajectory: final-image MSE).
// `orders` pairs with `candidates` when the judgment searched forecast orders (empty otherwise:
// every candidate was order 1).
struct StepJudgment {
  int64_t step = 0;
  double theta = 0.0;
  std::vector<double> candidates;
  std::vector<double> errors;
  int order = 1;
  std::vector<int> orders;
};

struct EocPrior {
  EocForm form = EocForm::taylor;
  Judgment judgment = Judgment::trajectory;
  std::vector<double> thetas;      // the candidate grid (trajectory: its range bounds theta)
  std::vector<double> step_theta;  // per sampling step (S entries)
  // Taylor form: the forecast order per sampling step (S entries, 1..kMaxTaylorOrder or
  // kFocaOrder where theta != 0); empty = order 1 everywhere (priors made before orders were
  // searched).
  std::vector<int> step_order;
  // Trajectory judgment over orders: the final-image error with every reused step at order
  // o = 1, 2, ... and theta 1 (the fixed forecasts the search starts from), then FoCa's when
  // it was searched (calibrate --foca); empty otherwise.
  std::vector<double> fixed_order_errors;
  std::vector<StepJudgment> judged;  // reused steps only
  // (step, block, branch) -> (2, D) float32 CPU: row 0 conditional half, row 1 unconditional
  // (both the conditional fit without guidance).
  std::map<EntryKey, at::Tensor> vectors;
  int order_at(int64_t step) const { return step_order.empty() ? 1 : step_order[step]; }
  // The highest Taylor order a step with theta != 0 uses (0 when none; FoCa steps not counted).
  int highest_order() const;
  // Whether a step with theta != 0 uses FoCa's forecast.
  bool uses_foca() const;
};

// The `eoc` corrector: `form` with per-step strengths. Vectors are moved to the device and
// dtype of the features and pre-scaled by theta, so each reused entry costs one fused op.
// `halves` is the run's CFG batch multiplier (2 with guidance: rows [conditional;
// unconditional], each with its own vectors; 1 without). A taylor-form prior whose highest
// order is 1 keeps F[p] and forms the trend inside the fused update; one with higher orders
// keeps derivative estimates up to it (cache/feature_cache.hpp) and corrects with their series.
// A prior with FoCa steps (or a corrector made with `room_for_foca`, which calibration sets
// steps to FoCa in) is recursive: it keeps F[p] and the latest two values too, and every
// reused entry's forecast is made as a tensor (correct()).
class EocCorrector final : public Corrector {
 public:
  EocCorrector(const EocPrior& prior, int64_t halves, const at::Device& device,
               at::ScalarType dtype, bool room_for_foca = false);
  std::string name() const override { return "eoc"; }
  History history() const override;
  Correction correction(int64_t step, int64_t block, Branch b,
                        const CachedFeature& e) const override;
  at::Tensor correct(int64_t step, int64_t block, Branch b, const CachedFeature& e) const override;
  // Calibration tries strengths (and orders, up to the prior's highest one at construction) one
  // step at a time.
  void set_step_theta(int64_t step, double theta);
  void set_step(int64_t step, double theta, int order);
  double step_theta(int64_t step) const { return theta_[step]; }
  int step_order(int64_t step) const { return order_[step]; }

 private:
  EocForm form_;
  std::vector<double> theta_;
  std::vector<int> order_;
  int series_order_;  // 0: order 1 through F[p]; else the derivative estimates kept
  bool foca_;         // FoCa's recursion kept (steps may be set to kFocaOrder)
  int64_t halves_;
  std::map<EntryKey, at::Tensor> vectors_;  // unscaled, (halves, 1, 1, D) on the device
  std::map<EntryKey, at::Tensor> coefs_;    // pre-scaled by theta (scale form: 1 + theta E)
};

// The corrector of `prior` for runs through `loop`: its CFG halves, device and dtype.
class BlockLoop;
std::unique_ptr<EocCorrector> make_eoc_corrector(const EocPrior& prior, const BlockLoop& loop,
                                                 bool room_for_foca = false);

// What a forecast order costs, for the order search's choices: plain reuse and order 1 read
// F[r] (and F[p], kept by reference) in the fused pass, measured the same; each order above 1
// keeps and reads one more derivative estimate per entry, a few % of cached sampling at
// DiT-XL/2's width in all (docs/BENCHMARKS.md). So a candidate of order o competes with
// error * (1 + kOrderCost * max(0, o - 1)) (theta 0, plain reuse, counts as order 0): an order
// above 1 is chosen over a lower one only when its final-image error is lower by more than
// about 1% per order.
constexpr double kOrderCost = 0.01;
inline double cost_weighted_error(double error, int order) {
  const int cost = order == kFocaOrder ? 2 : order;
  return error * (1.0 + kOrderCost * (cost > 1 ? cost - 1 : 0));
}

}  // namespace eoc

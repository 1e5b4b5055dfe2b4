// Error-Optimized Cache (docs/EOC.md): the prior's content and the corrector that applies it.
// (The prior FILE, with the run settings it assumes, is runs/prior_file.hpp; how a prior is
// made is cache/eoc_calibration.hpp.)
//
// A prior holds, for one model + sampler + step count + cfg + cache plan, the correction form,
// per sampling step the chosen strength theta_k (0 = leave that step plain) with the errors that
// chose it, and per reused (step, block, branch) the fitted per-channel coefficient vectors of
// the conditional and unconditional halves (forms `scale` and `extrapolate`).
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
  taylor,       // F[r] + theta tau (F[r] - F[p])
};
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

// How one reused step's strength was chosen: the candidates tried and the error of each
// (local judgment: guided-output MSE at that step; trajectory: final-image MSE).
struct StepJudgment {
  int64_t step = 0;
  double theta = 0.0;
  std::vector<double> candidates;
  std::vector<double> errors;
};

struct EocPrior {
  EocForm form = EocForm::taylor;
  Judgment judgment = Judgment::trajectory;
  std::vector<double> thetas;        // the candidate grid (trajectory: its range bounds theta)
  std::vector<double> step_theta;    // per sampling step (S entries)
  std::vector<StepJudgment> judged;  // reused steps only
  // (step, block, branch) -> (2, D) float32 CPU: row 0 conditional half, row 1 unconditional
  // (both the conditional fit without guidance).
  std::map<EntryKey, at::Tensor> vectors;
};

// The `eoc` corrector: `form` with per-step strengths. Vectors are moved to the device and
// dtype of the features and pre-scaled by theta, so each reused entry costs one fused op.
// `halves` is the run's CFG batch multiplier (2 with guidance: rows [conditional;
// unconditional], each with its own vectors; 1 without).
class EocCorrector final : public Corrector {
 public:
  EocCorrector(const EocPrior& prior, int64_t halves, const at::Device& device,
               at::ScalarType dtype);
  std::string name() const override { return "eoc"; }
  bool needs_previous() const override { return form_ != EocForm::scale; }
  Correction correction(int64_t step, int64_t block, Branch b, const CachedFeature& e) const override;
  // Calibration tries strengths one step at a time.
  void set_step_theta(int64_t step, double theta);
  double step_theta(int64_t step) const { return theta_[step]; }

 private:
  EocForm form_;
  std::vector<double> theta_;
  int64_t halves_;
  std::map<EntryKey, at::Tensor> vectors_;  // unscaled, (halves, 1, 1, D) on the device
  std::map<EntryKey, at::Tensor> coefs_;    // pre-scaled by theta (scale form: 1 + theta E)
};

}  // namespace eoc

// Error-Optimized Cache: the prior file and the corrector that applies it (docs/EOC.md).
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

#include "eoc/cache_plan.hpp"
#include "eoc/correctors.hpp"

namespace eoc {

enum class EocForm {
  scale,        // F[r] * (1 + theta E)
  extrapolate,  // F[r] + theta W (F[r] - F[p])
  taylor,       // F[r] + theta tau (F[r] - F[p])
};
const char* eoc_form_name(EocForm f);
EocForm parse_eoc_form(const std::string& text);
bool form_has_vectors(EocForm f);

using EntryKey = std::tuple<int64_t, int64_t, int>;  // (step, block, branch)

// Everything a prior assumes about the run it corrects; a mismatch refuses the prior.
struct PriorAssumptions {
  std::string model_sha256;
  std::string model_name;
  int64_t depth = 0;
  int64_t hidden_size = 0;
  std::string sampler;
  int64_t steps = 0;
  std::string respacing;
  double eta = 0.0;
  double cfg_scale = 1.0;
  std::string cfg_channels;
  std::string cache_spec;
  std::string cache_layout;  // CachePlan::layout()
};

// How one reused step's strength was chosen: the candidates tried and the error of each
// (local judgment: guided-output MSE at that step; trajectory: final-image MSE).
struct StepJudgment {
  int64_t step = 0;
  double theta = 0.0;
  std::vector<double> candidates;
  std::vector<double> errors;
};

struct EocPrior {
  static constexpr const char* kFormat = "eoc-prior";
  static constexpr int kVersion = 1;
  PriorAssumptions assumes;
  EocForm form = EocForm::taylor;
  std::string judgment;              // "local" | "trajectory"
  std::vector<double> thetas;        // the candidate grid (trajectory: its range bounds theta)
  std::vector<double> step_theta;    // per sampling step (S entries)
  std::vector<StepJudgment> judged;  // reused steps only
  // (step, block, branch) -> (2, D) float32 CPU: row 0 conditional half, row 1 unconditional.
  std::map<EntryKey, at::Tensor> vectors;
  std::string calibration_json;  // the calibration settings, recorded verbatim
};

// Writes atomically; coefficient vectors as base64 of little-endian float32 with their shape;
// a content checksum guards against truncation and hand edits.
void save_prior(const std::string& path, const EocPrior& prior);
// Throws eoc::Error naming the file and what is wrong; never returns a partly read prior.
EocPrior load_prior(const std::string& path);
// Throws eoc::Error naming every assumption that differs from the run's.
void check_prior_matches(const EocPrior& prior, const PriorAssumptions& run,
                         const std::string& prior_path);

// The `eoc` corrector: `form` with per-step strengths. Vectors are moved to the device and
// dtype of the features and pre-scaled by theta, so each reused entry costs one fused op.
class EocCorrector final : public Corrector {
 public:
  EocCorrector(const EocPrior& prior, const at::Device& device, at::ScalarType dtype);
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

std::unique_ptr<Corrector> make_eoc_corrector(const EocPrior& prior, const at::Device& device,
                                              at::ScalarType dtype);

}  // namespace eoc

// Diffusion layer (schedule, samplers, guidance, seeds; uses only the base layer, knows no
// models or caches). The diffusion process DiT samples with (the IDDPM code it ships): 1000
// training steps, linear betas 1e-4..0.02, respaced to the sampling step count. All arrays are
// float64, indexed by the respaced step index j = 0..S-1 in INCREASING time (j = S-1 is the
// noisiest, sampled first).
#pragma once
#include <cstdint>
#include <vector>

#include "eoc/base/names.hpp"

namespace eoc {

enum class Respacing {
  even,  // space_timesteps(1000, "N"): round(k * 999 / (N - 1)), ties to even
  ddim,  // space_timesteps(1000, "ddimN"): range(0, 1000, stride), the smallest stride giving N
};
inline constexpr Names<Respacing, 2> kRespacingNames{
    {{{Respacing::even, "even"}, {Respacing::ddim, "ddim"}}}};
inline const char* respacing_name(Respacing r) { return kRespacingNames.name(r); }

// The kept original timesteps, increasing. Error when N is out of range or has no exact spacing.
std::vector<int64_t> respaced_timesteps(int64_t train_steps, int64_t steps, Respacing respacing);

struct DiffusionSchedule {
  std::vector<int64_t> timesteps;  // original t fed to the model, per j
  std::vector<double> betas, alphas_cumprod, alphas_cumprod_prev;
  std::vector<double> sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod;
  std::vector<double> posterior_variance, posterior_log_variance_clipped;
  std::vector<double> posterior_mean_coef1, posterior_mean_coef2;
  std::vector<double> log_betas;
  int64_t size() const { return static_cast<int64_t>(timesteps.size()); }
};

// The respaced process; betas recomputed as 1 - abar[t_j] / abar[t_{j-1}] as IDDPM does.
DiffusionSchedule make_schedule(int64_t steps, Respacing respacing, int64_t train_steps = 1000);

// The base process's linear betas (np.linspace semantics: i * step + start, last = end).
std::vector<double> linear_betas(int64_t train_steps);

}  // namespace eoc

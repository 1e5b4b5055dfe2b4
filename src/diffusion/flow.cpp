#include "eoc/diffusion/flow.hpp"

#include <cmath>

#include "eoc/base/error.hpp"

namespace eoc {

std::vector<float> flow_grid(SamplerKind kind, int64_t points, double last_step_size) {
  EOC_ASSERT(is_flow_sampler(kind) && points >= 2, "a flow grid of ", points, " points");
  const bool sde = kind == SamplerKind::sde || kind == SamplerKind::sde_heun;
  return torch_linspace<float>(0.0f, sde ? static_cast<float>(1.0 - last_step_size) : 1.0f, points);
}

at::Tensor euler_step(const at::Tensor& x, const at::Tensor& v, float dt) { return x + dt * v; }

at::Tensor heun_step(const at::Tensor& x, const at::Tensor& k1, const at::Tensor& k2, float dt) {
  return x + dt * (0.5f * k1 + 0.5f * k2);
}

at::Tensor sde_drift(const at::Tensor& x, const at::Tensor& v, float t, float norm) {
  const float sigma = 1.0f - t;
  const float denominator = sigma * sigma + t * sigma;
  const auto score = (t * v - x) / denominator;
  return v + (norm * sigma) * score;
}

at::Tensor sde_noise_term(const at::Tensor& z, float t, float dt, double norm) {
  const float scale = std::sqrt(2.0f * (static_cast<float>(norm) * (1.0f - t)));
  return scale * (z * std::sqrt(dt));
}

at::Tensor euler_maruyama_step(const at::Tensor& x, const at::Tensor& drift, const at::Tensor& z,
                               float t, float dt, double norm) {
  EOC_ASSERT(z.defined(), "an SDE step without noise");
  return (x + drift * dt) + sde_noise_term(z, t, dt, norm);
}

}  // namespace eoc

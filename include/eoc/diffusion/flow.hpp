// The flow samplers' math (SiT's transport on its Linear path, checked against
// scripts/testing/reference_flow.py, which matches the official SiT code): x_t = t x1 + (1 - t) x0
// with x0 the noise and x1 the data, so t = 0 is noise and t = 1 is data; the model predicts the
// velocity v = x1 - x0. Floats are float32 as the official code computes its 0-dim time tensors.
//  - ODE (`euler`, `heun`): torchdiffeq's fixed-grid euler and heun2 on linspace(0, 1, N) (t0 = 0,
//    t1 = 1 for a velocity model), N - 1 steps: y += dt v; heun2: k1 = v(t, y),
//    k2 = v(t + dt, y + dt k1), y += dt (k1 / 2 + k2 / 2).
//  - SDE (`sde`, `sde-heun`, parse_sde_args' defaults): diffusion w(t) = norm (1 - t) ("sigma"
//    form), drift f = v + w score with score = (t v - x) / ((1 - t)^2 + t (1 - t)); grid
//    linspace(0, 1 - last, N) with one dt = grid[1] - grid[0]; N - 1 noisy steps, then the Mean
//    step x += f(x, 1 - last) last. Euler-Maruyama: x = (x + f dt) + sqrt(2 w) (z sqrt(dt));
//    Heun: xhat = x + sqrt(2 w) (z sqrt(dt)), then a Heun step of the drift from xhat.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "eoc/diffusion/sampler.hpp"

namespace eoc {

// torch.linspace(start, end, n) as its CPU kernel computes it in T: step = (end - start) /
// (n - 1); start + i step for i < n / 2, end - (n - 1 - i) step after.
template <typename T>
std::vector<T> torch_linspace(T start, T end, int64_t n) {
  std::vector<T> out(static_cast<size_t>(n));
  if (n == 1) out[0] = start;
  if (n <= 1) return out;
  const T step = (end - start) / static_cast<T>(n - 1);
  const int64_t halfway = n / 2;
  for (int64_t i = 0; i < n; ++i)
    out[i] =
        i < halfway ? start + step * static_cast<T>(i) : end - step * static_cast<T>(n - 1 - i);
  return out;
}

// SiT's time grid of a flow sampler with N points: linspace(0, 1, N) for the ODE samplers,
// linspace(0, 1 - last_step_size, N) for the SDE samplers, in float32.
std::vector<float> flow_grid(SamplerKind kind, int64_t points, double last_step_size);

at::Tensor euler_step(const at::Tensor& x, const at::Tensor& v, float dt);
at::Tensor heun_step(const at::Tensor& x, const at::Tensor& k1, const at::Tensor& k2, float dt);
// The SDE drift f = v + w(t) score at (x, t).
at::Tensor sde_drift(const at::Tensor& x, const at::Tensor& v, float t, float norm);
// sqrt(2 w(t)) (z sqrt(dt)): the noise an SDE step adds.
at::Tensor sde_noise_term(const at::Tensor& z, float t, float dt, double norm);
// (x + f dt) + sqrt(2 w(t)) (z sqrt(dt)).
at::Tensor euler_maruyama_step(const at::Tensor& x, const at::Tensor& drift, const at::Tensor& z,
                               float t, float dt, double norm);

}  // namespace eoc

#include "eoc/diffusion/schedule.hpp"

#include <cmath>
#include <set>

#include "eoc/base/error.hpp"

namespace eoc {

std::vector<double> linear_betas(int64_t train_steps) {
  // np.linspace(1e-4 * s, 0.02 * s, n) with s = 1000 / n: y[i] = i * step + start, y[-1] = end.
  const double scale = 1000.0 / static_cast<double>(train_steps);
  const double start = scale * 0.0001, end = scale * 0.02;
  const double step = (end - start) / static_cast<double>(train_steps - 1);
  std::vector<double> betas(train_steps);
  for (int64_t i = 0; i < train_steps; ++i) betas[i] = static_cast<double>(i) * step + start;
  betas.back() = end;
  return betas;
}

std::vector<int64_t> respaced_timesteps(int64_t train_steps, int64_t steps, Respacing respacing) {
  if (steps < 1 || steps > train_steps)
    fail("the step count ", steps, " is out of range (expected 1..", train_steps, ")");
  std::set<int64_t> kept;
  if (respacing == Respacing::ddim) {
    // IDDPM's "ddimN": the smallest stride whose range(0, train_steps, stride) has N entries.
    for (int64_t stride = 1; stride < train_steps && kept.empty(); ++stride)
      if ((train_steps + stride - 1) / stride == steps)
        for (int64_t t = 0; t < train_steps; t += stride) kept.insert(t);
    if (kept.empty())
      fail(steps, " steps have no exact DDIM spacing of ", train_steps, " steps (no stride gives ",
           steps, " steps); use even respacing");
  } else if (steps == 1) {
    kept.insert(0);
  } else {
    // IDDPM accumulates the fractional stride by repeated addition and rounds half to even.
    const double stride = static_cast<double>(train_steps - 1) / static_cast<double>(steps - 1);
    double cur = 0.0;
    for (int64_t k = 0; k < steps; ++k) {
      kept.insert(static_cast<int64_t>(std::nearbyint(cur)));
      cur += stride;
    }
  }
  return {kept.begin(), kept.end()};
}

DiffusionSchedule make_schedule(int64_t steps, Respacing respacing, int64_t train_steps) {
  const auto base_betas = linear_betas(train_steps);
  DiffusionSchedule s;
  s.timesteps = respaced_timesteps(train_steps, steps, respacing);
  double base_cumprod = 1.0, last_kept = 1.0;
  size_t next = 0;
  for (int64_t t = 0; t < train_steps && next < s.timesteps.size(); ++t) {
    base_cumprod *= 1.0 - base_betas[t];
    if (t == s.timesteps[next]) {
      s.betas.push_back(1.0 - base_cumprod / last_kept);
      last_kept = base_cumprod;
      ++next;
    }
  }
  const size_t n = s.betas.size();
  double cumprod = 1.0;
  for (size_t j = 0; j < n; ++j) {
    s.alphas_cumprod_prev.push_back(cumprod);
    cumprod *= 1.0 - s.betas[j];
    s.alphas_cumprod.push_back(cumprod);
  }
  for (size_t j = 0; j < n; ++j) {
    const double ac = s.alphas_cumprod[j], prev = s.alphas_cumprod_prev[j], b = s.betas[j];
    s.sqrt_recip_alphas_cumprod.push_back(std::sqrt(1.0 / ac));
    s.sqrt_recipm1_alphas_cumprod.push_back(std::sqrt(1.0 / ac - 1.0));
    s.posterior_variance.push_back(b * (1.0 - prev) / (1.0 - ac));
    s.posterior_mean_coef1.push_back(b * std::sqrt(prev) / (1.0 - ac));
    s.posterior_mean_coef2.push_back((1.0 - prev) * std::sqrt(1.0 - b) / (1.0 - ac));
    s.log_betas.push_back(std::log(b));
  }
  // The posterior variance is 0 at j = 0; IDDPM clips its log by repeating entry 1.
  for (size_t j = 0; j < n; ++j) {
    const double v = (j == 0 && n > 1) ? s.posterior_variance[1] : s.posterior_variance[j];
    s.posterior_log_variance_clipped.push_back(std::log(v));
  }
  return s;
}

}  // namespace eoc

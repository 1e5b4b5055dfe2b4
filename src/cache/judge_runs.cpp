#include "eoc/cache/judge_runs.hpp"

#include <chrono>

#include "eoc/base/stop.hpp"

namespace eoc {

double mse(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).pow(2).mean().item<double>();
}

JudgeRuns::JudgeRuns(const BlockLoop& loop, const SamplerOptions& sampler, const BatchStart& start)
    : loop_(loop), sampler_(sampler), x_T_(start.x), labels_(start.labels) {
  for (int64_t k = 0; k < steps(); ++k) noise_.push_back(start.noise->step(draws_noise(sampler)));
  const auto begin = std::chrono::steady_clock::now();
  reference_ = finish(this->start(CacheSession::uncached(steps(), loop.model().config().depth)));
  reference_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
}

TrajectoryState JudgeRuns::advance(TrajectoryState s, int64_t until) {
  for (; s.step < until; ++s.step) {
    check_stop();
    const auto out = loop_.run(s.x, s.step, labels_, s.session);
    ++step_runs_;
    s.x = step(s.step, s.x, out);
  }
  return s;
}

at::Tensor JudgeRuns::step(int64_t k, const at::Tensor& x, const at::Tensor& out) const {
  return sampler_step(sampler_, loop_.schedule(), k, x, out, noise_[k]);
}

double JudgeRuns::error(const at::Tensor& final) const { return mse(final, reference_); }

}  // namespace eoc

#include "eoc/cache/judge_runs.hpp"

#include <algorithm>

#include "eoc/base/stop.hpp"
#include "eoc/base/stopwatch.hpp"
#include "eoc/diffusion/image_quality.hpp"

namespace eoc {

JudgeRuns::JudgeRuns(const BlockLoop& loop, const BatchStart& start)
    : loop_(loop), x_T_(start.x), labels_(start.labels) {
  for (int64_t k = 0; k < steps(); ++k)
    noise_.push_back(start.noise->for_evaluation(loop.sampler(), k));
  const Stopwatch watch;
  reference_ = finish(this->start(CacheSession::uncached(steps(), loop.model().config().depth)));
  reference_seconds_ = watch.seconds();
}

SamplerState JudgeRuns::run_steps(SamplerState state, int64_t first, int64_t last,
                                  const DenoiseFn& denoise) const {
  return sample_steps(loop_.sampler(), std::move(state), first, last, denoise,
                      [this](int64_t k) { return noise_[k]; });
}

TrajectoryState JudgeRuns::advance(TrajectoryState s, int64_t until) {
  s.at = run_steps(std::move(s.at), s.step, until, [&](const at::Tensor& x, int64_t k) {
    check_stop();
    auto out = loop_.run(x, k, labels_, s.session);
    ++step_runs_;
    return out;
  });
  s.step = std::max(s.step, until);
  return s;
}

double JudgeRuns::error(const at::Tensor& final) const { return mse(final, reference_); }

}  // namespace eoc

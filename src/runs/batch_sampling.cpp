#include "eoc/runs/batch_sampling.hpp"

#include <c10/core/InferenceMode.h>

#include "eoc/base/error.hpp"
#include "eoc/base/stop.hpp"
#include "eoc/base/stopwatch.hpp"
#include "eoc/model/device.hpp"

namespace eoc {
namespace {

// The first branch whose addition made the token state non-finite at one step.
struct NonFiniteFinder final : BranchObserver {
  int64_t step = -1, block = -1;
  Branch branch = Branch::attn;
  void on_added(int64_t k, int64_t l, Branch b, const at::Tensor& tokens) override {
    if (k == step && block < 0 && !at::isfinite(tokens).all().item<bool>()) {
      block = l;
      branch = b;
    }
  }
};

// The batch's steps [0, last) from x_T; `finite` (when given) records per step whether the
// model output was finite, on the device (no per-step host sync).
at::Tensor run_steps(const RunSetup& run, const std::vector<int64_t>& indices,
                     CacheSession& session, int64_t last, const StepDoneFn& step_done,
                     at::Tensor* finite, const StepOutputFn& on_output = {}) {
  auto start = begin_batch(run, indices);
  const BlockLoop loop = run.block_loop();
  auto denoise = [&](const at::Tensor& xk, int64_t k) {
    check_stop();
    auto out = run.whole_forward ? loop.run_whole_forward(xk, k, start.labels)
                                 : loop.run(xk, k, start.labels, session);
    if (finite) (*finite)[k].copy_(at::isfinite(out).all());
    if (on_output) on_output(k, out);
    return out;
  };
  return sample_steps(
             run.sampler, SamplerState{start.x, {}, {}}, 0, last, denoise,
             [&](int64_t e) { return start.noise->for_evaluation(run.sampler, e); }, step_done)
      .x;
}

// Names where step `bad` first went non-finite: replays the batch up to that step (sampling is
// deterministic) with a check after every branch, so the normal loop never pays for them.
[[noreturn]] void fail_non_finite(const RunSetup& run, const std::vector<int64_t>& indices,
                                  const CacheSession& batch, int64_t bad) {
  NonFiniteFinder finder;
  finder.step = bad;
  if (!run.whole_forward) {
    CacheSession replay(batch.plan(), batch.corrector());
    replay.watch(finder);
    run_steps(run, indices, replay, bad + 1, {}, nullptr);
  }
  const std::string where =
      finder.block >= 0
          ? str(" after block ", finder.block, "'s ", branch_name(finder.branch), " branch")
      : run.whole_forward ? std::string(" (--whole-forward: blocks not checked)")
                          : std::string(" in the final layer");
  fail("the model output holds NaN or Inf at sampling step ", bad,
       " (t = ", run.sampler.model_time(bad), ")", where, ", cache '", batch.plan().spec(),
       "'; check the model and prior, or pass --no-check-finite to skip this check");
}

}  // namespace

std::vector<std::vector<int64_t>> make_batches(const std::vector<int64_t>& indices,
                                               int64_t batch_size) {
  std::vector<std::vector<int64_t>> batches;
  for (size_t i = 0; i < indices.size(); i += batch_size)
    batches.emplace_back(indices.begin() + i,
                         indices.begin() + std::min(indices.size(), i + batch_size));
  return batches;
}

BatchStart begin_batch(const RunSetup& run, const std::vector<int64_t>& indices) {
  BatchStart b;
  b.noise = std::make_shared<BatchNoise>(run.seed_mode, run.seed, indices, run.image_shape(),
                                         run.guidance.batch_multiplier(), run.device);
  b.x = b.noise->initial();
  if (run.random_labels) {
    b.labels = b.noise->random_labels(run.model->config().num_classes);
  } else {
    std::vector<int64_t> labels;
    for (int64_t i : indices) labels.push_back(run.labels[i]);
    b.labels = at::tensor(labels, at::kLong).to(run.device);
  }
  return b;
}

at::Tensor sample_batch(const RunSetup& run, const std::vector<int64_t>& indices,
                        CacheSession& session, const StepDoneFn& step_done,
                        const StepOutputFn& on_output) {
  c10::InferenceMode inference;
  // Finiteness is recorded on the device per step and read once per batch.
  auto finite = at::ones({run.steps()}, at::TensorOptions().dtype(at::kBool).device(run.device));
  auto x0 = run_steps(run, indices, session, run.steps(), step_done,
                      run.check_finite ? &finite : nullptr, on_output);
  if (run.check_finite && !finite.all().item<bool>())
    fail_non_finite(run, indices, session, (~finite).nonzero()[0].item<int64_t>());
  return x0;
}

BatchesRun sample_batches(const RunSetup& run, const std::vector<std::vector<int64_t>>& batches,
                          const CachePlan& plan, const Corrector& corrector,
                          log::Progress& progress, const BatchDoneFn& done) {
  BatchesRun out{CacheStats(run.steps()), {}, {}};
  if (run.seed_mode == SeedMode::official) seed_global(run.seed);
  for (const auto& batch : batches) {
    const Stopwatch batch_time;
    const CpuStopwatch batch_cpu;
    CacheSession session(plan, corrector);
    auto images = sample_batch(run, batch, session,
                               [&](int64_t) { progress.advance(static_cast<long>(batch.size())); });
    out.stats.add(session.stats());
    done(batch, std::move(images));
    synchronize(run.device);  // so the batch's time, and the caller's, are complete
    out.seconds.push_back(batch_time.seconds());
    out.cpu_seconds.push_back(batch_cpu.seconds());
  }
  return out;
}

}  // namespace eoc

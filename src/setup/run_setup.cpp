#include "eoc/setup/run_setup.hpp"

#include <filesystem>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/base/process.hpp"
#include "eoc/base/stopwatch.hpp"
#include "eoc/io/files.hpp"
#include "eoc/model/device.hpp"

namespace eoc {
namespace {

constexpr const char* kDefaultModelFile = "fmnist-dit-s4.ts";

// Per image index: the default spread, or the given list, cycled; checked against the model.
std::vector<int64_t> image_labels(const ClassChoice& classes, int64_t num_classes, int64_t n) {
  std::vector<int64_t> cycle = classes.labels;
  if (classes.kind == ClassChoice::Kind::spread) {
    if (num_classes == 1000)
      cycle = {207, 360, 387, 974, 88, 979, 417, 279};  // sample.py's
    else
      for (int64_t c = 0; c < num_classes; ++c) cycle.push_back(c);
  }
  EOC_ASSERT(!cycle.empty(), "no labels to cycle (the CLI refuses an empty --classes)");
  for (int64_t v : cycle)
    if (v < 0 || v >= num_classes)
      fail("--classes: label ", v, " is out of range for a model with ", num_classes,
           " classes (expected 0..", num_classes - 1, ")");
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = cycle[i % cycle.size()];
  return labels;
}

void check_sampling(const SamplingOptions& so) {
  const bool flow = is_flow_sampler(so.sampler);
  if (so.steps < (flow ? 2 : 1) || so.steps > 1000)
    fail("--steps ", so.steps, " is out of range (expected ", flow ? 2 : 1, "..1000",
         flow ? str("; --sampler ", sampler_name(so.sampler),
                    " counts SiT's grid points: N - 1 "
                    "steps")
              : std::string(),
         ")");
  if (!(so.eta >= 0.0 && so.eta <= 1.0)) fail("--eta ", so.eta, " is out of range (expected 0..1)");
  if (so.eta > 0.0 && so.sampler != SamplerKind::ddim) fail("--eta applies to --sampler ddim only");
  if (!(so.cfg_scale >= 1.0))
    fail("--cfg-scale ", so.cfg_scale, " is out of range (expected >= 1; 1 = no guidance)");
  if (so.cfg_interval) {
    const auto& i = *so.cfg_interval;
    if (!flow)
      fail(
          "--cfg-interval applies to the flow samplers (euler, heun, sde, sde-heun), not "
          "--sampler ",
          sampler_name(so.sampler));
    if (!(0.0 <= i.low && i.low <= i.high && i.high <= 1.0))
      fail("--cfg-interval ", i.low, ",", i.high,
           " is out of range (expected 0 <= LOW <= HIGH <= 1, "
           "in REPA's time: 1 = noise, 0 = data)");
    if (!(so.cfg_scale > 1.0)) fail("--cfg-interval needs guidance (--cfg-scale > 1)");
  }
  if (so.num_samples < 1 || so.num_samples > kMaxSamples)
    fail("--num-samples ", so.num_samples, " is out of range (expected 1..", kMaxSamples, ")");
  if (so.batch_size < 1) fail("--batch-size ", so.batch_size, " must be >= 1");
}

// Error unless the sampler fits what the model predicts.
void check_prediction(SamplerKind sampler, const DitModel& model) {
  const auto& cfg = model.config();
  const bool velocity = cfg.prediction == "velocity";
  if (is_flow_sampler(sampler) == velocity) return;
  if (velocity)
    fail("--sampler ", sampler_name(sampler), " needs a model that predicts eps (DiT), but model '",
         model.path(), "' predicts velocity (", cfg.family,
         "): use --sampler euler, heun, sde "
         "or sde-heun");
  fail("--sampler ", sampler_name(sampler),
       " integrates a flow-matching model's velocity, but "
       "model '",
       model.path(), "' predicts eps (", cfg.family, "): use --sampler ddim or ddpm");
}

// The device, checked, with the CPU thread and TF32 settings applied.
at::Device configure_device(const ModelOptions& mo) {
  const at::Device device = checked_device(mo.device);
  if (mo.threads < 0) fail("--threads ", mo.threads, " must be >= 0 (0 = all cores)");
  set_cpu_threads(mo.threads);
  if (mo.tf32 && !device.is_cuda()) fail("--tf32 applies to CUDA devices only");
  if (device.is_cuda()) allow_tf32(mo.tf32);
  return device;
}

}  // namespace

at::Device checked_device(at::Device device) {
  if (!device.is_cuda()) return device;
  const int64_t count = cuda_device_count();
  if (count == 0) fail("--device ", device.str(), ": CUDA is not available on this machine");
  if (!device.has_index()) device.set_index(0);
  if (device.index() >= count)
    fail("--device ", device.str(), ": this machine has ", count, " CUDA device(s)");
  return device;
}

std::vector<int64_t> RunSetup::image_shape() const {
  const auto& c = model->config();
  return {c.in_channels, c.input_size, c.input_size};
}

RunSetup prepare_run(const ModelOptions& mo, const SamplingOptions& so) {
  // Cheap checks first, so a bad flag never waits for a model to load.
  check_sampling(so);
  RunSetup run;
  run.respacing = so.respacing;
  run.guidance = Guidance{so.cfg_scale, so.cfg_channels, so.cfg_interval};
  run.num_samples = so.num_samples;
  run.batch_size = so.batch_size;
  run.seed = so.seed;
  run.seed_mode = so.seed_mode;
  run.check_finite = so.check_finite;
  run.whole_forward = so.whole_forward;
  SamplerOptions sampler;
  sampler.kind = so.sampler;
  sampler.eta = so.eta;
  if (is_flow_sampler(so.sampler)) {
    run.sampler = Sampler(sampler, so.steps);
  } else {
    try {
      run.sampler = Sampler(sampler, make_schedule(so.steps, so.respacing));
    } catch (const Error& e) {
      fail("--steps ", so.steps, " --respacing ", respacing_name(so.respacing), ": ", e.what());
    }
  }
  run.device = configure_device(mo);
  run.tf32 = mo.tf32;

  Stopwatch load;
  const std::string path = mo.model_path.empty() ? default_model_path() : mo.model_path;
  const bool invariant = mo.batch_invariant == BatchInvariance::automatic
                             ? run.seed_mode == SeedMode::per_image && !run.device.is_cuda()
                             : mo.batch_invariant == BatchInvariance::on;
  run.model = DitModel::load(path, run.device, mo.dtype, invariant);
  check_prediction(so.sampler, *run.model);
  run.load_seconds = load.seconds();
  run.random_labels = so.classes.kind == ClassChoice::Kind::random;
  if (!run.random_labels)
    run.labels = image_labels(so.classes, run.model->config().num_classes, so.num_samples);
  return run;
}

std::string default_model_path() {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  const std::string exe = executable_path();
  if (!exe.empty()) {
    const fs::path prefix = fs::path(exe).parent_path().parent_path();
    candidates.push_back(prefix / EOC_MODEL_SUBDIR / kDefaultModelFile);
  }
  candidates.push_back(fs::path(EOC_SOURCE_MODEL_DIR) / kDefaultModelFile);
  std::error_code ec;
  for (const auto& c : candidates)
    if (fs::is_regular_file(c, ec)) return c.string();
  fail("the built-in model '", kDefaultModelFile, "' was not found (looked in ",
       candidates.front().parent_path().string(), "); pass --model");
}

}  // namespace eoc

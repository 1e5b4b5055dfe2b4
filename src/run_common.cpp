#include "run_common.hpp"

#include <c10/core/InferenceMode.h>

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <iomanip>
#include <filesystem>
#include <sstream>

#include "eoc/device.hpp"
#include "eoc/error.hpp"
#include "eoc/log.hpp"
#include "eoc/pipeline.hpp"
#include "eoc/sha256.hpp"

namespace eoc {
namespace {

std::atomic<int> g_stop_signal{0};

// "" -> the default spread, "random", or a comma list; validated against the class count.
std::vector<int64_t> parse_labels(const std::string& text, int64_t num_classes, int64_t n) {
  std::vector<int64_t> cycle;
  if (text.empty()) {
    if (num_classes == 1000) cycle = {207, 360, 387, 974, 88, 979, 417, 279};  // sample.py's
    else for (int64_t c = 0; c < num_classes; ++c) cycle.push_back(c);
  } else {
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
      size_t used = 0;
      long long v = -1;
      try {
        v = std::stoll(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (item.empty() || used != item.size())
        fail("--classes '", text, "': '", item, "' is not an integer label (or use 'random')");
      if (v < 0 || v >= num_classes)
        fail("--classes: label ", v, " is out of range for a model with ", num_classes,
             " classes (expected 0..", num_classes - 1, ")");
      cycle.push_back(v);
    }
    if (cycle.empty()) fail("--classes '", text, "' names no label");
  }
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = cycle[i % cycle.size()];
  return labels;
}

}  // namespace

void request_stop(int signal_number) { g_stop_signal.store(signal_number); }
int stop_signal() { return g_stop_signal.load(); }

// Probes the folder with a temporary file of its own, so an existing output is never touched.
void check_writable_parent(const std::string& path, const char* flag) {
  namespace fs = std::filesystem;
  const auto parent = fs::absolute(path).parent_path();
  std::error_code ec;
  if (!fs::is_directory(parent, ec))
    fail(flag, " '", path, "': folder '", parent.string(), "' does not exist");
  const std::string probe = (parent / (".eoc-write-test-" + std::to_string(::getpid()))).string();
  try {
    write_file_atomic(probe, "");
  } catch (const Error&) {
    fail(flag, " '", path, "': folder '", parent.string(), "' is not writable");
  }
  fs::remove(probe, ec);
}

int64_t peak_host_memory_bytes() {
  struct rusage usage {};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::ostringstream text;
  text << std::put_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  return text.str();
}

void check_stop() {
  if (const int s = stop_signal()) throw Interrupted(s);
}

std::vector<int64_t> RunSetup::image_shape() const {
  const auto& c = model->config();
  return {c.in_channels, c.input_size, c.input_size};
}

nlohmann::json RunSetup::settings() const {
  const auto& c = model->config();
  return {
      {"model", {{"path", model->path()}, {"sha256", model->sha256()}, {"name", c.name},
                 {"depth", c.depth}, {"hidden_size", c.hidden_size}, {"patch_size", c.patch_size},
                 {"input_size", c.input_size}, {"in_channels", c.in_channels},
                 {"num_classes", c.num_classes}}},
      {"device", device.str()},
      {"dtype", std::string(c10::toString(model->dtype()))},
      {"batch_invariant", model->batch_invariant()},
      {"sampler", sampler_name(sampler.kind)},
      {"steps", schedule.size()},
      {"respacing", respacing},
      {"eta", sampler.eta},
      {"cfg_scale", guidance.scale},
      {"cfg_channels", cfg_channels_name(guidance.channels)},
      {"seed", seed},
      {"seed_mode", seed_mode_name(seed_mode)},
      {"labels", random_labels ? nlohmann::json("random") : nlohmann::json(labels)},
      {"num_samples", num_samples},
      {"batch_size", batch_size},
  };
}

PriorAssumptions RunSetup::assumptions(const CachePlan& plan) const {
  PriorAssumptions a;
  a.model_sha256 = model->sha256();
  a.model_name = model->config().name;
  a.depth = model->config().depth;
  a.hidden_size = model->config().hidden_size;
  a.sampler = sampler_name(sampler.kind);
  a.steps = schedule.size();
  a.respacing = respacing;
  a.eta = sampler.eta;
  a.cfg_scale = guidance.scale;
  a.cfg_channels = cfg_channels_name(guidance.channels);
  a.cache_spec = plan.spec();
  a.cache_layout = plan.layout();
  return a;
}

RunSetup prepare_run(const ModelOptions& mo, const SamplingOptions& so) {
  RunSetup run;
  // Cheap checks first, so a bad flag never waits for a model to load.
  run.sampler.kind = parse_sampler(so.sampler);
  if (so.steps < 1 || so.steps > 1000) fail("--steps ", so.steps, " is out of range (expected 1..1000)");
  const auto respacing = parse_respacing(so.respacing);
  run.respacing = respacing_name(respacing);
  if (!(so.eta >= 0.0 && so.eta <= 1.0)) fail("--eta ", so.eta, " is out of range (expected 0..1)");
  if (so.eta > 0.0 && run.sampler.kind != SamplerKind::ddim) fail("--eta applies to --sampler ddim only");
  run.sampler.eta = so.eta;
  if (!(so.cfg_scale >= 1.0))
    fail("--cfg-scale ", so.cfg_scale, " is out of range (expected >= 1; 1 = no guidance)");
  run.guidance.scale = so.cfg_scale;
  run.guidance.channels = parse_cfg_channels(so.cfg_channels);
  if (so.num_samples < 1 || so.num_samples > kMaxSamples)
    fail("--num-samples ", so.num_samples, " is out of range (expected 1..", kMaxSamples, ")");
  if (so.batch_size < 1) fail("--batch-size ", so.batch_size, " must be >= 1");
  run.num_samples = so.num_samples;
  run.batch_size = so.batch_size;
  run.seed = so.seed;
  run.seed_mode = parse_seed_mode(so.seed_mode);
  run.check_finite = so.check_finite;
  run.whole_forward = so.whole_forward;
  run.schedule = make_schedule(so.steps, respacing);
  run.device = parse_device(mo.device);
  const auto dtype = parse_dtype(mo.dtype);
  configure_runtime(mo, run.device);

  Stopwatch load;
  const std::string path = mo.model_path.empty() ? default_model_path() : mo.model_path;
  bool invariant = run.seed_mode == SeedMode::per_image && !run.device.is_cuda();
  if (mo.batch_invariant == "on") invariant = true;
  else if (mo.batch_invariant == "off") invariant = false;
  else if (mo.batch_invariant != "auto")
    fail("--batch-invariant '", mo.batch_invariant, "' is not one of: auto, on, off");
  run.model = DitModel::load(path, run.device, dtype, invariant);
  run.load_seconds = load.seconds();
  run.random_labels = so.classes == "random";
  if (!run.random_labels)
    run.labels = parse_labels(so.classes, run.model->config().num_classes, so.num_samples);
  return run;
}

CacheSetup prepare_cache(const RunSetup& run, const CacheOptions& o) {
  const auto& cfg = run.model->config();
  CacheSetup c{parse_cache_plan(o.cache, run.schedule.size(), cfg.depth), nullptr, "", "", ""};
  c.plan.validate();
  if (run.whole_forward && c.plan.reused_total() > 0)
    fail("--whole-forward runs the module's forward and cannot cache: use it with --cache none");
  std::string name = o.correct.empty() ? (o.prior.empty() ? "none" : "eoc") : o.correct;
  if (name == "eoc" && o.prior.empty()) fail("--correct eoc needs --prior PRIOR.json (from eoc calibrate)");
  if (name != "eoc" && !o.prior.empty())
    fail("--prior is used by --correct eoc only (got --correct ", name, ")");
  if (name == "none") {
    c.corrector = make_plain_corrector();
  } else if (name == "taylor") {
    c.corrector = make_taylor_corrector();
  } else if (name == "eoc") {
    const auto prior = load_prior(o.prior);
    check_prior_matches(prior, run.assumptions(c.plan), o.prior);
    c.corrector = make_eoc_corrector(prior, run.device, run.model->dtype());
    c.prior_path = o.prior;
    c.prior_sha256 = sha256_hex(read_file(o.prior));
  } else {
    fail("--correct '", name, "' is not one of: none, taylor, eoc");
  }
  if (name != "none" && c.plan.reused_total() == 0)
    log::warn("--correct " + name + " has no effect: cache plan '" + o.cache + "' reuses nothing");
  c.corrector_name = name;
  return c;
}

nlohmann::json CacheSetup::settings() const {
  nlohmann::json j = {{"cache", plan.spec()}, {"correct", corrector_name},
                      {"caching_level", plan.caching_level()}};
  if (!prior_path.empty()) j["prior"] = {{"path", prior_path}, {"sha256", prior_sha256}};
  return j;
}

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

namespace {

// The first branch whose addition made the token state non-finite at one step.
struct NonFiniteFinder final : BranchObserver {
  int64_t step = -1, block = -1;
  Branch branch = Branch::attn;
  void on_computed(int64_t, int64_t, Branch, const at::Tensor&) override {}
  void on_added(int64_t k, int64_t l, Branch b, const at::Tensor& tokens) override {
    if (k == step && block < 0 && !at::isfinite(tokens).all().item<bool>()) {
      block = l;
      branch = b;
    }
  }
};

struct ReplayDone {};

// The batch's sampling loop; `observer` sees every block, `last_step` >= 0 ends it after that step.
at::Tensor run_batch(const RunSetup& run, const std::vector<int64_t>& indices, const CachePlan& plan,
                     const Corrector& corrector, CacheStats& stats, const StepDoneFn& step_done,
                     at::Tensor* finite, BranchObserver* observer = nullptr, int64_t last_step = -1) {
  auto start = begin_batch(run, indices);
  const CachedDit dit(*run.model, run.schedule, run.guidance);
  FeatureCache cache(run.model->config().depth, corrector.needs_previous());
  const bool store = plan.reused_total() > 0;  // an uncached run keeps no features alive
  auto denoise = [&](const at::Tensor& xk, int64_t k) {
    check_stop();
    auto out = run.whole_forward
                   ? dit.run_whole_forward(xk, k, start.labels)
                   : dit.run(xk, k, start.labels, plan, cache, corrector, &stats, observer, store);
    stats.peak_cache_bytes = std::max(stats.peak_cache_bytes, cache.bytes());
    if (finite) (*finite)[k].copy_(at::isfinite(out).all());
    if (k == last_step) throw ReplayDone{};
    return out;
  };
  return sample_loop(run.sampler, run.schedule, start.x, denoise,
                     [&](int64_t) { return start.noise->step(draws_noise(run.sampler)); }, step_done);
}

// Names where step `bad` first went non-finite: replays the batch (sampling is deterministic)
// with a check after every branch, so the normal loop never pays for per-block checks.
[[noreturn]] void fail_non_finite(const RunSetup& run, const std::vector<int64_t>& indices,
                                  const CachePlan& plan, const Corrector& corrector, int64_t bad) {
  NonFiniteFinder finder;
  finder.step = bad;
  if (!run.whole_forward) {
    CacheStats scratch(run.schedule.size());
    try {
      run_batch(run, indices, plan, corrector, scratch, {}, nullptr, &finder, bad);
    } catch (const ReplayDone&) {
    }
  }
  const std::string where =
      finder.block >= 0 ? str(" after block ", finder.block, "'s ", branch_name(finder.branch), " branch")
      : run.whole_forward ? std::string(" (--whole-forward: blocks not checked)")
                          : std::string(" in the final layer");
  fail("the model output holds NaN or Inf at sampling step ", bad, " (t = ",
       CachedDit(*run.model, run.schedule, run.guidance).timestep(bad), ")", where, ", cache '",
       plan.spec(), "'; check the model and prior, or pass --no-check-finite to skip this check");
}

}  // namespace

at::Tensor sample_batch(const RunSetup& run, const std::vector<int64_t>& indices,
                        const CachePlan& plan, const Corrector& corrector, CacheStats& stats,
                        const StepDoneFn& step_done) {
  c10::InferenceMode inference;
  // Finiteness is recorded on the device per step and read once per batch (no per-step sync).
  auto finite = at::ones({run.schedule.size()}, at::TensorOptions().dtype(at::kBool).device(run.device));
  auto x0 = run_batch(run, indices, plan, corrector, stats, step_done,
                      run.check_finite ? &finite : nullptr);
  if (run.check_finite && !finite.all().item<bool>())
    fail_non_finite(run, indices, plan, corrector, (~finite).nonzero()[0].item<int64_t>());
  return x0;
}

nlohmann::json cache_stats_json(const CacheStats& stats, const ModelConfig& cfg) {
  // Estimated saving: reused branch FLOPs over all FLOPs of the same forwards.
  const double branch_avg = (cfg.attn_gflops() + cfg.mlp_gflops()) / 2.0;
  const int64_t steps = static_cast<int64_t>(stats.computed.size());
  const double total = stats.total_computed() + stats.total_reused();
  const double forwards = cfg.depth > 0 && total > 0 ? total / (2.0 * cfg.depth) : 0.0;
  const double saved = stats.total_reused() * branch_avg;
  const double all = forwards * cfg.gflops_per_forward();
  return {{"caching_level", stats.caching_level()},
          {"computed_branches", stats.total_computed()},
          {"reused_branches", stats.total_reused()},
          {"computed_per_step", stats.computed},
          {"reused_per_step", stats.reused},
          {"steps", steps},
          {"estimated_flops_saved", all > 0 ? saved / all : 0.0},
          {"peak_cache_bytes", stats.peak_cache_bytes}};
}

void write_json(const std::string& path, const nlohmann::json& doc) {
  write_file_atomic(path, doc.dump(2) + "\n");
}

}  // namespace eoc

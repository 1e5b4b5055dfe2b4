// Internal: what every subcommand that samples shares (not a public header).
#pragma once
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "eoc/cache_plan.hpp"
#include "eoc/cached_dit.hpp"
#include "eoc/correctors.hpp"
#include "eoc/diffusion.hpp"
#include "eoc/eoc_prior.hpp"
#include "eoc/guidance.hpp"
#include "eoc/model.hpp"
#include "eoc/options.hpp"
#include "eoc/sampler.hpp"
#include "eoc/seeds.hpp"

namespace eoc {

// Everything resolved and validated from the model and sampling options.
struct RunSetup {
  std::shared_ptr<const DitModel> model;
  at::Device device{at::kCPU};
  DiffusionSchedule schedule;
  SamplerOptions sampler;
  Guidance guidance;
  SeedMode seed_mode = SeedMode::per_image;
  uint64_t seed = 0;
  bool random_labels = false;
  std::vector<int64_t> labels;  // per image index (empty when random)
  int64_t num_samples = 0;
  int64_t batch_size = 0;
  bool check_finite = true;
  bool whole_forward = false;
  std::string respacing;
  double load_seconds = 0;

  std::vector<int64_t> image_shape() const;  // (C, H, W)
  nlohmann::json settings() const;           // every resolved setting, for reports
  PriorAssumptions assumptions(const CachePlan& plan) const;
};

RunSetup prepare_run(const ModelOptions& model, const SamplingOptions& sampling);

struct CacheSetup {
  CachePlan plan;
  std::unique_ptr<Corrector> corrector;
  std::string corrector_name;
  std::string prior_path, prior_sha256;
  nlohmann::json settings() const;
};

CacheSetup prepare_cache(const RunSetup& run, const CacheOptions& options);

// The start of one batch: x_T (B, C, H, W), labels (B,), and its noise stream.
struct BatchStart {
  at::Tensor x;
  at::Tensor labels;
  std::shared_ptr<BatchNoise> noise;
};
BatchStart begin_batch(const RunSetup& run, const std::vector<int64_t>& indices);

// Samples one batch of image indices -> (B, C, H, W) float32 on the run's device.
at::Tensor sample_batch(const RunSetup& run, const std::vector<int64_t>& indices,
                        const CachePlan& plan, const Corrector& corrector, CacheStats& stats,
                        const StepDoneFn& step_done = {});

// Index batches of at most batch_size, in order.
std::vector<std::vector<int64_t>> make_batches(const std::vector<int64_t>& indices,
                                               int64_t batch_size);

nlohmann::json cache_stats_json(const CacheStats& stats, const ModelConfig& config);

// Most images one run may ask for (FID-50K needs 50,000); bounds loops over run records too.
constexpr int64_t kMaxSamples = 100000000;

// The process's peak resident memory so far (bytes; 0 where unknown).
int64_t peak_host_memory_bytes();

// The current time as "2026-11-28T09:30:00Z", for reports and records.
std::string utc_now();

// Fails early (before any sampling) when `path` cannot be created: its folder is missing or
// not writable. `flag` names the option in the message.
void check_writable_parent(const std::string& path, const char* flag);

// Throws eoc::Interrupted-style Error when a stop signal arrived.
void check_stop();

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Writes JSON atomically with a trailing newline.
void write_json(const std::string& path, const nlohmann::json& doc);

}  // namespace eoc

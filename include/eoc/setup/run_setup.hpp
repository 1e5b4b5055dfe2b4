// A run, resolved from the typed options: the model loaded, the schedule made, the labels and
// seeds fixed, the cache plan and corrector chosen. Every check a flag needs beyond its syntax
// happens here, cheap ones before the model loads.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "eoc/cache/block_loop.hpp"
#include "eoc/diffusion/guidance.hpp"
#include "eoc/diffusion/sampler.hpp"
#include "eoc/diffusion/seeds.hpp"
#include "eoc/model/dit_model.hpp"
#include "eoc/setup/options.hpp"

namespace eoc {

// Most images one run may ask for (FID-50K needs 50,000); bounds loops over run records too.
constexpr int64_t kMaxSamples = 100000000;

struct RunSetup {
  std::shared_ptr<const DitModel> model;
  at::Device device{at::kCPU};
  bool tf32 = false;
  Respacing respacing = Respacing::even;  // DDPM/DDIM only
  Sampler sampler{SamplerOptions{}, DiffusionSchedule{}};
  Guidance guidance;
  SeedMode seed_mode = SeedMode::per_image;
  uint64_t seed = 0;
  bool random_labels = false;
  std::vector<int64_t> labels;  // per image index (empty when random)
  int64_t num_samples = 0;
  int64_t batch_size = 0;
  bool check_finite = true;
  bool whole_forward = false;
  double load_seconds = 0;

  std::vector<int64_t> image_shape() const;  // (C, H, W)
  // Model evaluations per image: what a cache plan's steps count (DDPM/DDIM: the steps).
  int64_t steps() const { return sampler.evaluations(); }
  BlockLoop block_loop() const { return BlockLoop(*model, sampler, guidance); }
};

RunSetup prepare_run(const ModelOptions& model, const SamplingOptions& sampling);

// A CUDA device that exists (plain "cuda" is device 0); Error naming --device otherwise.
at::Device checked_device(at::Device device);

// Where the built-in default model lives: next to the executable's install prefix
// (share/eoc/models), then in the source tree it was built from. Error if neither exists.
std::string default_model_path();

}  // namespace eoc

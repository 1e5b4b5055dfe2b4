// Random streams (docs/FID.md says what each scheme guarantees). Two schemes:
//  per-image (default): image i draws everything from its own CPU generator seeded with
//    image_seed(seed, i), so an image does not depend on batch size, neighbours or sharding;
//  official: one global generator seeded once per run, drawing exactly what DiT's sample.py
//    draws (z for the batch, then noise for the whole doubled CFG batch at every step), so images
//    can be checked one for one against the official code.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "eoc/base/names.hpp"
#include "eoc/diffusion/sampler.hpp"

namespace eoc {

enum class SeedMode { per_image, official };
inline constexpr Names<SeedMode, 2> kSeedModeNames{
    {{{SeedMode::per_image, "per-image"}, {SeedMode::official, "official"}}}};
inline const char* seed_mode_name(SeedMode m) { return kSeedModeNames.name(m); }

uint64_t splitmix64(uint64_t x);
uint64_t image_seed(uint64_t seed, uint64_t index);
int64_t random_label(uint64_t seed, uint64_t index, int64_t num_classes);

// Seeds the global generators (CPU and every CUDA device) as torch.manual_seed does.
void seed_global(uint64_t seed);

// The noise of one batch of images. Shape (C, H, W) per image; results are float32 on `device`.
class BatchNoise {
 public:
  BatchNoise(SeedMode mode, uint64_t seed, std::vector<int64_t> indices,
             std::vector<int64_t> image_shape, int64_t rows_per_image_draw, at::Device device);
  at::Tensor initial();  // x_T, (B, C, H, W); call first
  // Official mode with random labels: drawn from the global stream right after x_T, as
  // sample_ddp.py does. Per-image mode: random_label(seed, index).
  at::Tensor random_labels(int64_t num_classes);
  // Noise for one sampler step, (B, C, H, W). The official stream draws at every step whether
  // or not the sampler uses it (IDDPM's p_sample and ddim_sample both call randn_like);
  // per-image streams draw only when `needed`, else return an undefined tensor.
  at::Tensor step(bool needed);
  // The noise of the sampler's evaluation e, as the official code of its family draws it: DiT's
  // at every step (step()), SiT's only where its SDE adds noise (none for the ODE samplers, a
  // Heun step's second evaluation or the Mean step); undefined where none is drawn.
  at::Tensor for_evaluation(const Sampler& sampler, int64_t e);

 private:
  at::Tensor draw_per_image();
  SeedMode mode_;
  uint64_t seed_;
  std::vector<int64_t> indices_;
  std::vector<int64_t> shape_;
  int64_t rows_per_draw_;  // official: 2 with CFG (randn_like of the doubled batch), else 1
  at::Device device_;
  std::vector<at::Generator> generators_;
};

// Where one batch of images starts: x_T (B, C, H, W), labels (B,) int64, and the noise
// stream its steps draw from.
struct BatchStart {
  at::Tensor x;
  at::Tensor labels;
  std::shared_ptr<BatchNoise> noise;
};

}  // namespace eoc

#include "eoc/diffusion/seeds.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include "eoc/base/error.hpp"

namespace eoc {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  uint64_t z = x;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t image_seed(uint64_t seed, uint64_t index) { return splitmix64(splitmix64(seed) ^ index); }

int64_t random_label(uint64_t seed, uint64_t index, int64_t num_classes) {
  // "label_id" in ASCII keeps the label stream apart from the noise stream.
  const uint64_t h = splitmix64(image_seed(seed, index) ^ 0x6C6162656C5F6964ULL);
  return static_cast<int64_t>(h % static_cast<uint64_t>(num_classes));
}

void seed_global(uint64_t seed) { at::manual_seed(seed); }

BatchNoise::BatchNoise(SeedMode mode, uint64_t seed, std::vector<int64_t> indices,
                       std::vector<int64_t> image_shape, int64_t rows_per_image_draw,
                       at::Device device)
    : mode_(mode),
      seed_(seed),
      indices_(std::move(indices)),
      shape_(std::move(image_shape)),
      rows_per_draw_(rows_per_image_draw),
      device_(device) {
  if (mode_ == SeedMode::per_image)
    for (int64_t i : indices_)
      generators_.push_back(at::make_generator<at::CPUGeneratorImpl>(image_seed(seed_, i)));
}

at::Tensor BatchNoise::draw_per_image() {
  std::vector<at::Tensor> rows;
  rows.reserve(generators_.size());
  for (auto& g : generators_) rows.push_back(at::randn(shape_, g, at::kFloat));
  return at::stack(rows).to(device_, /*non_blocking=*/true);
}

at::Tensor BatchNoise::initial() {
  if (mode_ == SeedMode::per_image) return draw_per_image();
  std::vector<int64_t> full{static_cast<int64_t>(indices_.size())};
  full.insert(full.end(), shape_.begin(), shape_.end());
  return at::randn(full, at::TensorOptions().dtype(at::kFloat).device(device_));
}

at::Tensor BatchNoise::random_labels(int64_t num_classes) {
  const int64_t b = static_cast<int64_t>(indices_.size());
  if (mode_ == SeedMode::official)
    return at::randint(0, num_classes, {b}, at::TensorOptions().dtype(at::kLong).device(device_));
  std::vector<int64_t> labels;
  for (int64_t i : indices_) labels.push_back(random_label(seed_, i, num_classes));
  return at::tensor(labels, at::kLong).to(device_);
}

at::Tensor BatchNoise::step(bool needed) {
  if (mode_ == SeedMode::per_image) return needed ? draw_per_image() : at::Tensor();
  const int64_t b = static_cast<int64_t>(indices_.size());
  std::vector<int64_t> full{b * rows_per_draw_};
  full.insert(full.end(), shape_.begin(), shape_.end());
  // randn_like over the doubled CFG batch; only the first half drives the sample.
  return at::randn(full, at::TensorOptions().dtype(at::kFloat).device(device_)).narrow(0, 0, b);
}

at::Tensor BatchNoise::for_evaluation(const Sampler& sampler, int64_t e) {
  const bool needed = sampler.draws_noise(e);
  if (sampler.is_flow() && !needed) return at::Tensor();
  return step(needed);
}

}  // namespace eoc

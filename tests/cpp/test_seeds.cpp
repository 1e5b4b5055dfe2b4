// Seed derivation and the two noise streams.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <set>
#include <vector>

#include "eoc/base/error.hpp"
#include "eoc/cli/flag_values.hpp"
#include "eoc/diffusion/seeds.hpp"

namespace {

using eoc::BatchNoise;
using eoc::SeedMode;

TEST(Seeds, Splitmix64KnownValues) {
  // Reference values of SplitMix64 (Steele et al.): one step from the given state.
  EXPECT_EQ(eoc::splitmix64(0), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(eoc::splitmix64(1), 0x910A2DEC89025CC1ULL);
  EXPECT_EQ(eoc::splitmix64(2), 0x975835DE1C9756CEULL);
  EXPECT_EQ(eoc::splitmix64(42), 0xBDD732262FEB6E95ULL);
  EXPECT_EQ(eoc::splitmix64(0xFFFFFFFFFFFFFFFFULL), 0xE4D971771B652C20ULL);
}

TEST(Seeds, ImageSeedDistinctPerIndexAndSeed) {
  std::set<uint64_t> seen;
  for (uint64_t i = 0; i < 1000; ++i) seen.insert(eoc::image_seed(0, i));
  EXPECT_EQ(seen.size(), 1000u);
  for (uint64_t i = 0; i < 1000; ++i) seen.insert(eoc::image_seed(1, i));
  EXPECT_EQ(seen.size(), 2000u);
  EXPECT_EQ(eoc::image_seed(7, 3), eoc::image_seed(7, 3));
  EXPECT_NE(eoc::image_seed(0, 1), eoc::image_seed(1, 0));
}

TEST(Seeds, RandomLabelInRangeAndDeterministic) {
  std::set<int64_t> labels;
  for (uint64_t i = 0; i < 2000; ++i) {
    const int64_t l = eoc::random_label(3, i, 10);
    ASSERT_GE(l, 0);
    ASSERT_LT(l, 10);
    EXPECT_EQ(l, eoc::random_label(3, i, 10));
    labels.insert(l);
  }
  EXPECT_EQ(labels.size(), 10u);  // every class shows up in 2000 draws
  for (uint64_t i = 0; i < 100; ++i) {
    const int64_t l = eoc::random_label(11, i, 1000);
    EXPECT_GE(l, 0);
    EXPECT_LT(l, 1000);
  }
  EXPECT_EQ(eoc::random_label(5, 9, 1), 0);
}

TEST(Seeds, ParseSeedMode) {
  EXPECT_EQ(eoc::cli::parse_choice("--seed-mode", "per-image", eoc::kSeedModeNames),
            SeedMode::per_image);
  EXPECT_EQ(eoc::cli::parse_choice("--seed-mode", "official", eoc::kSeedModeNames),
            SeedMode::official);
  EXPECT_STREQ(eoc::seed_mode_name(SeedMode::per_image), "per-image");
  EXPECT_STREQ(eoc::seed_mode_name(SeedMode::official), "official");
  EXPECT_THROW(eoc::cli::parse_choice("--seed-mode", "global", eoc::kSeedModeNames), eoc::Error);
}

TEST(BatchNoise, PerImageIndependentOfBatchComposition) {
  const std::vector<int64_t> shape = {2, 4, 4};
  BatchNoise five(SeedMode::per_image, 123, {10, 11, 12, 13, 14}, shape, 2, at::kCPU);
  BatchNoise one(SeedMode::per_image, 123, {13}, shape, 1, at::kCPU);
  BatchNoise other(SeedMode::per_image, 123, {20, 13}, shape, 1, at::kCPU);
  const auto z5 = five.initial(), z1 = one.initial(), z2 = other.initial();
  ASSERT_EQ(z5.sizes(), (at::IntArrayRef{5, 2, 4, 4}));
  ASSERT_EQ(z1.sizes(), (at::IntArrayRef{1, 2, 4, 4}));
  EXPECT_EQ(z5.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(z5[3], z1[0]));
  EXPECT_TRUE(at::equal(z2[1], z1[0]));
  EXPECT_FALSE(at::equal(z5[0], z5[1]));
  // Step noise continues each image's own stream, also bitwise.
  const auto n5 = five.step(true), n1 = one.step(true);
  ASSERT_TRUE(n5.defined());
  EXPECT_TRUE(at::equal(n5[3], n1[0]));
  EXPECT_FALSE(at::equal(n1[0], z1[0]));
  // Not needed: nothing drawn, so the next draw is still in step with a batch that skipped none.
  EXPECT_FALSE(one.step(false).defined());
  EXPECT_FALSE(five.step(false).defined());
  EXPECT_TRUE(at::equal(five.step(true)[3], one.step(true)[0]));
}

TEST(BatchNoise, PerImageDependsOnSeed) {
  BatchNoise a(SeedMode::per_image, 1, {0}, {1, 3, 3}, 1, at::kCPU);
  BatchNoise b(SeedMode::per_image, 2, {0}, {1, 3, 3}, 1, at::kCPU);
  EXPECT_FALSE(at::equal(a.initial(), b.initial()));
}

TEST(BatchNoise, PerImageIgnoresGlobalGenerator) {
  eoc::seed_global(1);
  BatchNoise a(SeedMode::per_image, 9, {4}, {1, 3, 3}, 1, at::kCPU);
  const auto za = a.initial();
  eoc::seed_global(2);
  (void)at::randn({17});
  BatchNoise b(SeedMode::per_image, 9, {4}, {1, 3, 3}, 1, at::kCPU);
  EXPECT_TRUE(at::equal(za, b.initial()));
}

TEST(BatchNoise, PerImageRandomLabels) {
  BatchNoise n(SeedMode::per_image, 5, {0, 7, 9}, {1, 2, 2}, 1, at::kCPU);
  n.initial();
  const auto labels = n.random_labels(1000);
  ASSERT_EQ(labels.sizes(), (at::IntArrayRef{3}));
  EXPECT_EQ(labels.scalar_type(), at::kLong);
  EXPECT_EQ(labels[0].item<int64_t>(), eoc::random_label(5, 0, 1000));
  EXPECT_EQ(labels[1].item<int64_t>(), eoc::random_label(5, 7, 1000));
  EXPECT_EQ(labels[2].item<int64_t>(), eoc::random_label(5, 9, 1000));
}

TEST(BatchNoise, OfficialStreamMatchesGlobalRandn) {
  const std::vector<int64_t> shape = {2, 4, 4};
  // What sample.py draws: z for the batch, then randn_like of the doubled batch every step.
  eoc::seed_global(77);
  const auto z = at::randn({3, 2, 4, 4});
  const auto step0 = at::randn({6, 2, 4, 4});
  const auto step1 = at::randn({6, 2, 4, 4});

  eoc::seed_global(77);
  BatchNoise n(SeedMode::official, 77, {0, 1, 2}, shape, 2, at::kCPU);
  EXPECT_TRUE(at::equal(n.initial(), z));
  // The official stream draws whether or not the sampler needs the noise.
  const auto got0 = n.step(false);
  const auto got1 = n.step(true);
  ASSERT_TRUE(got0.defined());
  ASSERT_EQ(got1.sizes(), (at::IntArrayRef{3, 2, 4, 4}));
  EXPECT_TRUE(at::equal(got0, step0.narrow(0, 0, 3)));
  EXPECT_TRUE(at::equal(got1, step1.narrow(0, 0, 3)));
}

TEST(BatchNoise, OfficialWithoutCfgDrawsBatchRows) {
  eoc::seed_global(5);
  const auto z = at::randn({2, 1, 3, 3});
  const auto s0 = at::randn({2, 1, 3, 3});
  eoc::seed_global(5);
  BatchNoise n(SeedMode::official, 5, {0, 1}, {1, 3, 3}, 1, at::kCPU);
  EXPECT_TRUE(at::equal(n.initial(), z));
  EXPECT_TRUE(at::equal(n.step(true), s0));
}

TEST(BatchNoise, OfficialRandomLabelsFollowInitialNoise) {
  eoc::seed_global(3);
  const auto z = at::randn({4, 1, 2, 2});
  const auto y = at::randint(0, 1000, {4}, at::kLong);
  eoc::seed_global(3);
  BatchNoise n(SeedMode::official, 3, {0, 1, 2, 3}, {1, 2, 2}, 2, at::kCPU);
  EXPECT_TRUE(at::equal(n.initial(), z));
  EXPECT_TRUE(at::equal(n.random_labels(1000), y));
}

}  // namespace

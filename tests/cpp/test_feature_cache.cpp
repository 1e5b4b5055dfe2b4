// FeatureCache bookkeeping: last value, difference to the value before it, memory accounting.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "eoc/base/error.hpp"
#include "eoc/cache/feature_cache.hpp"

namespace {

using eoc::Branch;
using eoc::FeatureCache;

at::Tensor feature(float base) {
  return at::arange(2 * 3 * 4, at::kFloat).reshape({2, 3, 4}) * 0.5 + base;
}

TEST(FeatureCache, StoreThenGet) {
  FeatureCache cache(3, /*keep_previous=*/true);
  const auto a = feature(1.0f);
  cache.store(4, 2, Branch::mlp, a);
  const auto& e = cache.get(2, Branch::mlp);
  EXPECT_TRUE(at::equal(e.value, a));
  EXPECT_EQ(e.step, 4);
  EXPECT_EQ(e.prev_step, -1);
  EXPECT_FALSE(e.previous.defined());
  // Entries are per (block, branch).
  EXPECT_THROW(cache.get(2, Branch::attn), eoc::InternalError);
  EXPECT_THROW(cache.get(0, Branch::mlp), eoc::InternalError);
}

TEST(FeatureCache, PreviousAndPrevStepAfterTwoStores) {
  FeatureCache cache(2, true);
  const auto a = feature(1.0f), b = feature(-2.5f) * 3.0;
  cache.store(0, 1, Branch::attn, a);
  cache.store(3, 1, Branch::attn, b);
  const auto& e = cache.get(1, Branch::attn);
  EXPECT_TRUE(at::equal(e.value, b));
  ASSERT_TRUE(e.previous.defined());
  EXPECT_TRUE(at::equal(e.previous, a));
  EXPECT_EQ(e.step, 3);
  EXPECT_EQ(e.prev_step, 0);
  // A third store moves the window: previous = F[3], p = 3.
  const auto c = feature(7.0f);
  cache.store(5, 1, Branch::attn, c);
  const auto& e2 = cache.get(1, Branch::attn);
  EXPECT_TRUE(at::equal(e2.previous, b));
  EXPECT_EQ(e2.step, 5);
  EXPECT_EQ(e2.prev_step, 3);
}

TEST(FeatureCache, NoPreviousWhenNotKept) {
  FeatureCache cache(1, false);
  EXPECT_FALSE(cache.keeps_previous());
  cache.store(0, 0, Branch::mlp, feature(0.0f));
  cache.store(2, 0, Branch::mlp, feature(1.0f));
  const auto& e = cache.get(0, Branch::mlp);
  EXPECT_FALSE(e.previous.defined());
  EXPECT_EQ(e.prev_step, -1);
  EXPECT_EQ(e.step, 2);
  EXPECT_EQ(cache.bytes(), 2 * 3 * 4 * 4);
}

TEST(FeatureCache, BytesAndClear) {
  FeatureCache cache(2, true);
  EXPECT_TRUE(cache.keeps_previous());
  EXPECT_EQ(cache.bytes(), 0);
  cache.store(0, 0, Branch::attn, feature(0.0f));  // 24 floats
  EXPECT_EQ(cache.bytes(), 24 * 4);
  cache.store(1, 0, Branch::attn, feature(1.0f));  // value + previous
  EXPECT_EQ(cache.bytes(), 2 * 24 * 4);
  cache.store(1, 1, Branch::mlp, at::zeros({2, 3, 4}, at::kHalf));
  EXPECT_EQ(cache.bytes(), 2 * 24 * 4 + 24 * 2);
  cache.clear();
  EXPECT_EQ(cache.bytes(), 0);
  EXPECT_THROW(cache.get(0, Branch::attn), eoc::InternalError);
  // After clear the next store starts a fresh window (no stale p).
  cache.store(6, 0, Branch::attn, feature(2.0f));
  EXPECT_EQ(cache.get(0, Branch::attn).prev_step, -1);
  EXPECT_FALSE(cache.get(0, Branch::attn).previous.defined());
}

}  // namespace

// The cache session (cache/session.hpp): what each kind stores, counts and shows its observer,
// and how copies fork a trajectory. No model: the block loop's questions are asked by hand.
#include <gtest/gtest.h>

#include <vector>

#include "eoc/cache/correctors.hpp"
#include "eoc/cache/plan.hpp"
#include "eoc/cache/session.hpp"

namespace {

using eoc::Branch;
using eoc::CachePlan;
using eoc::CacheSession;

// A feature (rows 1, T 2, D 3) filled with v.
at::Tensor feature(float v) { return at::full({1, 2, 3}, v); }
at::Tensor gate() { return at::ones({1, 3}); }

// Runs step k of a 2-block plan by hand: computes the entries the session computes (feature
// 10 k + block), takes the reused ones as terms; returns the reused entries' values.
std::vector<float> run_step(CacheSession& s, int64_t k) {
  std::vector<float> reused;
  for (int64_t l = 0; l < s.plan().depth(); ++l)
    for (Branch b : {Branch::attn, Branch::mlp}) {
      if (s.reuses(k, l, b)) {
        const auto term = s.reused_term(k, l, b, gate());
        reused.push_back(term.entry.value.flatten()[0].item<float>());
      } else {
        s.computed(k, l, b, feature(static_cast<float>(10 * k + l)));
      }
    }
  return reused;
}

struct Shadowed : eoc::BranchObserver {
  std::vector<std::pair<float, float>> seen;  // (truth, cached) at reused entries
  void on_shadowed(int64_t, int64_t, Branch, const at::Tensor& truth,
                   const eoc::CachedFeature& cached) override {
    seen.emplace_back(truth.flatten()[0].item<float>(), cached.value.flatten()[0].item<float>());
  }
};

TEST(CacheSession, CachedRunReusesTheLastComputedFeatureAndCounts) {
  CacheSession s(CachePlan::fora(4, 2, 2), eoc::plain_corrector());  // computes 0, 1, 3
  EXPECT_TRUE(run_step(s, 0).empty());
  EXPECT_TRUE(run_step(s, 1).empty());
  EXPECT_EQ(run_step(s, 2), (std::vector<float>{10, 10, 11, 11}));  // step 1's features
  EXPECT_TRUE(run_step(s, 3).empty());
  EXPECT_EQ(s.stats().computed, (std::vector<int64_t>{4, 4, 0, 4}));
  EXPECT_EQ(s.stats().reused, (std::vector<int64_t>{0, 0, 4, 0}));
  EXPECT_DOUBLE_EQ(s.stats().caching_level(), 4.0 / 16.0);
  // One feature per (block, branch), 6 floats each.
  EXPECT_EQ(s.stats().peak_cache_bytes, 4 * 6 * 4);
}

TEST(CacheSession, UncachedAndReuseFreeRunsKeepNothing) {
  auto u = CacheSession::uncached(3, 2);
  for (int64_t k = 0; k < 3; ++k) EXPECT_TRUE(run_step(u, k).empty());
  EXPECT_EQ(u.cache_bytes(), 0);
  EXPECT_EQ(u.stats().total_computed(), 12);
  CacheSession none(CachePlan::none(3, 2), eoc::plain_corrector());
  for (int64_t k = 0; k < 3; ++k) run_step(none, k);
  EXPECT_EQ(none.cache_bytes(), 0);
  EXPECT_EQ(none.stats().peak_cache_bytes, 0);
}

TEST(CacheSession, ShadowingComputesEverythingAndShowsWhatWouldBeReused) {
  auto s = CacheSession::shadowing(CachePlan::fora(4, 2, 2));
  Shadowed seen;
  s.watch(seen);
  for (int64_t k = 0; k < 4; ++k) EXPECT_TRUE(run_step(s, k).empty());
  EXPECT_EQ(s.stats().total_reused(), 0);
  EXPECT_EQ(s.stats().total_computed(), 16);
  // Step 2: the truth (20, 21) beside the entries a cached run holds (step 1's: 10, 11).
  const std::vector<std::pair<float, float>> want{{20, 10}, {20, 10}, {21, 11}, {21, 11}};
  EXPECT_EQ(seen.seen, want);
}

TEST(CacheSession, CopiesForkTheTrajectory) {
  CacheSession a(CachePlan::fora(4, 1, 2), eoc::plain_corrector());
  run_step(a, 0);
  run_step(a, 1);
  CacheSession b = a;  // the fork shares step 1's features
  run_step(a, 2);
  EXPECT_EQ(run_step(b, 2), (std::vector<float>{10, 10}));
  EXPECT_EQ(a.stats().reused[2], 2);
  EXPECT_EQ(b.stats().reused[2], 2);
  run_step(a, 3);  // a stores step 3's features; b's cache is untouched
  EXPECT_EQ(b.stats().computed[3], 0);
  EXPECT_EQ(run_step(b, 2), (std::vector<float>{10, 10}));
}

TEST(CacheSession, CachedFromHereContinuesAShadowingSessionsCache) {
  auto s = CacheSession::shadowing(CachePlan::fora(4, 1, 2));
  run_step(s, 0);
  run_step(s, 1);
  auto cached = s.cached_from_here(eoc::plain_corrector());
  EXPECT_EQ(run_step(cached, 2), (std::vector<float>{10, 10}));
  EXPECT_FALSE(s.reuses(2, 0, Branch::attn));  // the shadowing session still computes
}

TEST(CacheSession, ReplannedKeepsFeaturesAndCountsUnderTheNewPlan) {
  CacheSession s(CachePlan::computing(5, 1, {0, 2}, "a"), eoc::plain_corrector());
  run_step(s, 0);
  EXPECT_EQ(run_step(s, 1), (std::vector<float>{0, 0}));
  auto moved = s.replanned(CachePlan::computing(5, 1, {0, 3}, "b"));
  EXPECT_EQ(moved.plan().spec(), "b");
  EXPECT_EQ(moved.stats().reused[1], 2);                      // counts so far carried over
  EXPECT_EQ(run_step(moved, 2), (std::vector<float>{0, 0}));  // step 2 reused under the new plan
  EXPECT_TRUE(run_step(moved, 3).empty());
  EXPECT_EQ(run_step(moved, 4), (std::vector<float>{30, 30}));
}

TEST(CacheStats, AddSumsCountsAndKeepsThePeak) {
  eoc::CacheStats a(2), b(2);
  a.computed = {1, 2};
  a.reused = {0, 1};
  a.peak_cache_bytes = 10;
  b.computed = {3, 0};
  b.reused = {1, 4};
  b.peak_cache_bytes = 7;
  a.add(b);
  EXPECT_EQ(a.computed, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(a.reused, (std::vector<int64_t>{1, 5}));
  EXPECT_EQ(a.peak_cache_bytes, 10);
  EXPECT_DOUBLE_EQ(a.caching_level(), 6.0 / 12.0);
}

}  // namespace

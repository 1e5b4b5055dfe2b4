// The per-element loops of cache/entry_loops.hpp against the ATen formulas they replace: the
// derivative estimates bit for bit, the corrections and FoCa's forecast to rounding, into
// rows that lie apart in a batch tensor, and refusing what they do not handle.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "eoc/cache/correctors.hpp"
#include "eoc/cache/entry_loops.hpp"
#include "eoc/cache/feature_cache.hpp"

namespace {

using eoc::Branch;
using eoc::CachedFeature;

at::Tensor random(int64_t seed, int64_t rows = 2) {
  auto g = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(static_cast<uint64_t>(seed));
  }
  return at::randn({rows, 5, 48}, at::kFloat);
}

// Entry with three derivative estimates, stored by the cache (steps 0, 3, 5, 6).
CachedFeature entry_with_derivatives() {
  eoc::FeatureCache cache(1, eoc::History{true, 3});
  int64_t seed = 1;
  for (int64_t step : {0, 3, 5, 6}) cache.store(step, 0, Branch::attn, random(seed++));
  return cache.get(0, Branch::attn);
}

TEST(EntryLoops, DerivativeEstimatesHaveATensBits) {
  const auto e = entry_with_derivatives();
  ASSERT_EQ(e.derivatives.size(), 3u);
  const auto f = random(9);
  const double dk = 3.0;
  const auto loop = eoc::derivative_estimates_loop(f, e, dk, 4);
  ASSERT_EQ(loop.size(), 4u);
  at::Tensor now = f;
  for (size_t i = 0; i < 4; ++i) {
    const auto& before = i == 0 ? e.value : e.derivatives[i - 1];
    const auto expected = at::sub(now, before).div_(dk);
    EXPECT_TRUE(at::equal(loop[i], expected)) << "level " << i + 1;
    now = expected;
  }
  // Doubles are the ATen path's.
  auto d = e;
  d.value = e.value.to(at::kDouble);
  EXPECT_TRUE(eoc::derivative_estimates_loop(f.to(at::kDouble), d, dk, 1).empty());
}

TEST(EntryLoops, CorrectionsIntoRowsApartMatchTheFormula) {
  const auto e = entry_with_derivatives();
  auto with_previous = e;
  with_previous.previous = random(11);
  with_previous.prev_step = 2;
  std::vector<eoc::Correction> cases(4);
  cases[1].trend = 0.75;
  cases[2].scale = 1.1;
  cases[2].trend = -0.5;
  cases[3].series = {1.5, 0.25, -0.125};
  for (const auto& c : cases) {
    // Two images of CFG rows in a (4, T, D) batch tensor: image 1's rows are 1 and 3.
    auto batch = at::full({4, 5, 48}, 7.f);
    auto rows = batch.view({2, 2, 5, 48}).select(1, 1);
    ASSERT_TRUE(eoc::write_corrected_loop(rows, c, with_previous));
    const auto expected = eoc::corrected_feature(c, with_previous);
    EXPECT_TRUE(at::allclose(rows, expected, 1e-5, 1e-6));
    EXPECT_TRUE(at::equal(batch.view({2, 2, 5, 48}).select(1, 0), at::full({2, 5, 48}, 7.f)));
  }
  eoc::Correction vector;
  vector.scale_vec = at::ones({2, 1, 1, 48});
  auto out = at::empty({2, 5, 48});
  EXPECT_FALSE(eoc::write_corrected_loop(out, vector, with_previous));
}

TEST(EntryLoops, FocaMatchesItsFormula) {
  CachedFeature e;
  e.value = random(21);
  e.step = 4;
  e.previous = random(22);
  e.prev_step = 2;
  e.latest = random(23);
  e.before_latest = random(24);
  e.latest_step = 5;
  const auto local = e.latest - e.before_latest;
  const auto slope = (e.value - e.previous) / 2.0;
  auto out = at::empty({2, 5, 48});
  ASSERT_TRUE(eoc::write_foca_loop(out, e, true, 2.0));
  EXPECT_TRUE(at::allclose(out, e.latest + 0.5 * (local + slope), 1e-5, 1e-6));
  ASSERT_TRUE(eoc::write_foca_loop(out, e, false, 1.0));
  EXPECT_TRUE(at::allclose(out, e.latest + local, 1e-5, 1e-6));
  // The corrector takes the loop, into a tensor or into rows apart: the same bits.
  const auto foca = eoc::make_foca_corrector();
  const auto whole = foca->correct(6, 0, Branch::attn, e);
  auto batch = at::zeros({4, 5, 48});
  auto rows = batch.view({2, 2, 5, 48}).select(1, 0);
  foca->correct_into(6, 0, Branch::attn, e, rows);
  EXPECT_TRUE(at::equal(rows, whole));
  EXPECT_TRUE(at::allclose(whole, e.latest + 0.5 * (local + slope), 1e-5, 1e-6));
  // One value so far: the loop declines, and the corrector's forecast is that value.
  e.before_latest = at::Tensor();
  EXPECT_FALSE(eoc::write_foca_loop(out, e, true, 2.0));
  EXPECT_TRUE(at::equal(foca->correct(6, 0, Branch::attn, e), e.latest));
  foca->correct_into(6, 0, Branch::attn, e, rows);
  EXPECT_TRUE(at::equal(rows, e.latest));
}

}  // namespace

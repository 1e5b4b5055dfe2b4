// Classifier-free guidance as DiT's forward_with_cfg: the 3-channel quirk, `all`, and scale 1.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <vector>

#include "eoc/base/error.hpp"
#include "eoc/cli/flag_values.hpp"
#include "eoc/diffusion/guidance.hpp"

namespace {

using eoc::CfgChannels;
using eoc::Guidance;

// (2B, O, H, W) with distinct values per element; rows [0, B) conditional, [B, 2B) unconditional.
at::Tensor doubled_output(int64_t b, int64_t channels) {
  return at::arange(2 * b * channels * 2 * 2, at::kFloat).reshape({2 * b, channels, 2, 2}) * 0.37 -
         3.0;
}

TEST(Guidance, ThreeChannelRuleOnEightChannels) {
  const Guidance g{4.0, CfgChannels::first3};
  const auto out = doubled_output(2, 8);
  const auto got = eoc::apply_guidance(out, g);
  ASSERT_EQ(got.sizes(), (at::IntArrayRef{2, 8, 2, 2}));
  const auto acc = out.accessor<float, 4>();
  const auto got_c = got.contiguous();
  const auto res = got_c.accessor<float, 4>();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t c = 0; c < 8; ++c)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t w = 0; w < 2; ++w) {
          const float cond = acc[i][c][h][w], uncond = acc[i + 2][c][h][w];
          const float expected = c < 3 ? uncond + 4.0f * (cond - uncond) : cond;
          EXPECT_NEAR(res[i][c][h][w], expected, 1e-4) << i << " " << c;
        }
}

TEST(Guidance, TwoChannelOutputGuidesBoth) {
  // A 1-channel model (eps, v): "first 3 channels" covers both, so v is guided too.
  const Guidance g{1.5, CfgChannels::first3};
  const auto out = doubled_output(3, 2);
  const auto cond = out.narrow(0, 0, 3), uncond = out.narrow(0, 3, 3);
  const auto expected = uncond + 1.5 * (cond - uncond);
  const auto got = eoc::apply_guidance(out, g);
  ASSERT_EQ(got.sizes(), expected.sizes());
  EXPECT_TRUE(at::allclose(got, expected, 1e-5, 1e-5));
}

TEST(Guidance, AllChannels) {
  const Guidance g{2.5, CfgChannels::all};
  const auto out = doubled_output(2, 8);
  const auto cond = out.narrow(0, 0, 2), uncond = out.narrow(0, 2, 2);
  const auto got = eoc::apply_guidance(out, g);
  EXPECT_TRUE(at::allclose(got, uncond + 2.5 * (cond - uncond), 1e-5, 1e-5));
  // Channel 5 differs from the 3-channel rule's (which keeps cond there).
  const auto three = eoc::apply_guidance(out, Guidance{2.5, CfgChannels::first3});
  EXPECT_FALSE(at::allclose(got.narrow(1, 5, 1), three.narrow(1, 5, 1)));
  EXPECT_TRUE(at::allclose(got.narrow(1, 0, 3), three.narrow(1, 0, 3)));
}

TEST(Guidance, InactiveAtScaleOne) {
  const Guidance g{1.0, CfgChannels::first3};
  EXPECT_FALSE(g.active());
  EXPECT_EQ(g.batch_multiplier(), 1);
  const auto x = at::randn({3, 4, 2, 2});
  const auto y = at::tensor(std::vector<int64_t>{5, 6, 7}, at::kLong);
  EXPECT_EQ(eoc::guidance_input(x, g).size(0), 3);
  EXPECT_TRUE(at::equal(eoc::guidance_input(x, g), x));
  EXPECT_TRUE(at::equal(eoc::guidance_labels(y, 1000, g), y));
  // The model output is not doubled either: returned as is.
  const auto out = at::randn({3, 8, 2, 2});
  const auto got = eoc::apply_guidance(out, g);
  EXPECT_EQ(got.sizes(), out.sizes());
  EXPECT_TRUE(at::equal(got, out));
}

TEST(Guidance, DoubledInputAndNullLabels) {
  const Guidance g{4.0, CfgChannels::first3};
  EXPECT_TRUE(g.active());
  EXPECT_EQ(g.batch_multiplier(), 2);
  const auto x = at::randn({2, 4, 3, 3});
  const auto in = eoc::guidance_input(x, g);
  ASSERT_EQ(in.sizes(), (at::IntArrayRef{4, 4, 3, 3}));
  EXPECT_TRUE(at::equal(in.narrow(0, 0, 2), x));
  EXPECT_TRUE(at::equal(in.narrow(0, 2, 2), x));
  const auto y = at::tensor(std::vector<int64_t>{207, 360}, at::kLong);
  const auto labels = eoc::guidance_labels(y, 1000, g);
  ASSERT_EQ(labels.sizes(), (at::IntArrayRef{4}));
  EXPECT_EQ(labels.scalar_type(), at::kLong);
  EXPECT_EQ(labels[0].item<int64_t>(), 207);
  EXPECT_EQ(labels[1].item<int64_t>(), 360);
  EXPECT_EQ(labels[2].item<int64_t>(), 1000);
  EXPECT_EQ(labels[3].item<int64_t>(), 1000);
}

TEST(Guidance, ParseChannels) {
  EXPECT_EQ(eoc::cli::parse_choice("--cfg-channels", "3", eoc::kCfgChannelsNames),
            CfgChannels::first3);
  EXPECT_EQ(eoc::cli::parse_choice("--cfg-channels", "all", eoc::kCfgChannelsNames),
            CfgChannels::all);
  EXPECT_STREQ(eoc::cfg_channels_name(CfgChannels::first3), "3");
  EXPECT_STREQ(eoc::cfg_channels_name(CfgChannels::all), "all");
  EXPECT_THROW(eoc::cli::parse_choice("--cfg-channels", "4", eoc::kCfgChannelsNames), eoc::Error);
}

}  // namespace

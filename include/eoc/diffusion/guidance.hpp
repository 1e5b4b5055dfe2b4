// Classifier-free guidance as DiT's forward_with_cfg does it: the model sees [x; x] with labels
// [y; null], and guidance mixes only output channels 0..2 by default (a quirk published FID
// numbers depend on; see docs) or every channel.
#pragma once
#include <ATen/ATen.h>

#include <optional>

#include "eoc/base/names.hpp"

namespace eoc {

enum class CfgChannels { first3, all };
inline constexpr Names<CfgChannels, 2> kCfgChannelsNames{
    {{{CfgChannels::first3, "3"}, {CfgChannels::all, "all"}}}};
inline const char* cfg_channels_name(CfgChannels c) { return kCfgChannelsNames.name(c); }

// REPA's guidance interval: guidance applies at a step iff low <= t <= high, t the step's start
// time in REPA's convention (1 = noise, 0 = data; Sampler::interval_time). Both ends are
// inclusive, also for a grid point that falls exactly on an end (within 1e-9): REPA computes
// its grid by a float64 linspace, which rounds such a point to either side depending on the
// device torch runs it on.
struct GuidanceInterval {
  double low = 0.0, high = 1.0;
  static constexpr double kTolerance = 1e-9;
  bool contains(double t) const { return low - kTolerance <= t && t <= high + kTolerance; }
};

struct Guidance {
  double scale = 1.0;  // 1 = no guidance: the batch is not doubled (as sample.py)
  CfgChannels channels = CfgChannels::first3;
  // With an interval, steps outside it take the conditional half's output. The model still sees
  // the doubled batch there (REPA evaluates the conditional rows only), so every cached feature
  // has both halves whichever steps compute it; an image's rows give the same bits either way
  // when the model is batch invariant.
  std::optional<GuidanceInterval> interval;
  bool active() const { return scale > 1.0; }
  int64_t batch_multiplier() const { return active() ? 2 : 1; }
  // Whether a step whose interval time is t is guided.
  bool guides(double t) const { return active() && (!interval || interval->contains(t)); }
};

// [x; x] (2B rows) when guidance is active, x otherwise.
at::Tensor guidance_input(const at::Tensor& x, const Guidance& g);
// [y; null] when guidance is active, y otherwise.
at::Tensor guidance_labels(const at::Tensor& y, int64_t null_label, const Guidance& g);
// Model output over the doubled batch (2B, O, H, W) -> guided output of the first half
// (B, O, H, W): uncond + s * (cond - uncond) on the guided channels, the conditional half's
// values elsewhere; the conditional half alone when `this_step` is false (outside an interval).
// Identity when guidance is inactive.
at::Tensor apply_guidance(const at::Tensor& out, const Guidance& g, bool this_step = true);

}  // namespace eoc

// Classifier-free guidance as DiT's forward_with_cfg does it: the model sees [x; x] with labels
// [y; null], and guidance mixes only output channels 0..2 by default (a quirk published FID
// numbers depend on; see docs) or every channel.
#pragma once
#include <ATen/ATen.h>

#include "eoc/base/names.hpp"

namespace eoc {

enum class CfgChannels { first3, all };
inline constexpr Names<CfgChannels, 2> kCfgChannelsNames{
    {{{CfgChannels::first3, "3"}, {CfgChannels::all, "all"}}}};
inline const char* cfg_channels_name(CfgChannels c) { return kCfgChannelsNames.name(c); }

struct Guidance {
  double scale = 1.0;  // 1 = no guidance: the batch is not doubled (as sample.py)
  CfgChannels channels = CfgChannels::first3;
  bool active() const { return scale > 1.0; }
  int64_t batch_multiplier() const { return active() ? 2 : 1; }
};

// [x; x] (2B rows) when guidance is active, x otherwise.
at::Tensor guidance_input(const at::Tensor& x, const Guidance& g);
// [y; null] when guidance is active, y otherwise.
at::Tensor guidance_labels(const at::Tensor& y, int64_t null_label, const Guidance& g);
// Model output over the doubled batch (2B, O, H, W) -> guided output of the first half
// (B, O, H, W): uncond + s * (cond - uncond) on the guided channels, the conditional half's
// values elsewhere. Identity when guidance is inactive.
at::Tensor apply_guidance(const at::Tensor& out, const Guidance& g);

}  // namespace eoc

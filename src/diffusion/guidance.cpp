#include "eoc/diffusion/guidance.hpp"

#include "eoc/base/error.hpp"

namespace eoc {

at::Tensor guidance_input(const at::Tensor& x, const Guidance& g) {
  return g.active() ? at::cat({x, x}, 0) : x;
}

at::Tensor guidance_labels(const at::Tensor& y, int64_t null_label, const Guidance& g) {
  return g.active() ? at::cat({y, at::full_like(y, null_label)}, 0) : y;
}

at::Tensor apply_guidance(const at::Tensor& out, const Guidance& g, bool this_step) {
  if (!g.active()) return out;
  const int64_t b = out.size(0) / 2;
  if (!this_step) return out.narrow(0, 0, b);
  const int64_t guided =
      g.channels == CfgChannels::all ? out.size(1) : std::min<int64_t>(3, out.size(1));
  const auto cond = out.narrow(0, 0, b);
  const auto uncond = out.narrow(0, b, b);
  const auto mixed = uncond.narrow(1, 0, guided) +
                     g.scale * (cond.narrow(1, 0, guided) - uncond.narrow(1, 0, guided));
  if (guided == out.size(1)) return mixed;
  return at::cat({mixed, cond.narrow(1, guided, out.size(1) - guided)}, 1);
}

}  // namespace eoc

#include "eoc/diffusion/image_quality.hpp"

#include <cmath>
#include <limits>

#include "eoc/base/error.hpp"

namespace eoc {
namespace {

at::Tensor gaussian_window(int64_t channels) {
  const int64_t size = 11;
  const double sigma = 1.5;
  auto g = at::arange(size, at::kDouble) - (size - 1) / 2.0;
  g = at::exp(-(g * g) / (2 * sigma * sigma));
  g = g / g.sum();
  return at::outer(g, g).to(at::kFloat).expand({channels, 1, size, size}).contiguous();
}

double mean_ssim(const at::Tensor& a, const at::Tensor& b) {
  const int64_t c = a.size(1);
  const double range = 2.0, c1 = std::pow(0.01 * range, 2), c2 = std::pow(0.03 * range, 2);
  if (a.size(2) < 11 || a.size(3) < 11) return std::numeric_limits<double>::quiet_NaN();
  const auto w = gaussian_window(c);
  const std::vector<int64_t> one{1, 1}, zero{0, 0};
  auto blur = [&](const at::Tensor& x) {
    return at::conv2d(x, w, at::Tensor(), at::IntArrayRef(one), at::IntArrayRef(zero),
                      at::IntArrayRef(one), c);
  };
  const auto mu_a = blur(a), mu_b = blur(b);
  const auto var_a = blur(a * a) - mu_a * mu_a;
  const auto var_b = blur(b * b) - mu_b * mu_b;
  const auto cov = blur(a * b) - mu_a * mu_b;
  const auto map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) /
                   ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2));
  return map.mean().item<double>();
}

}  // namespace

double mse(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).pow(2).mean().item<double>();
}

PairedQuality paired_quality(const at::Tensor& images, const at::Tensor& reference) {
  EOC_ASSERT(images.sizes() == reference.sizes(), "paired quality of ", images.sizes(), " and ",
             reference.sizes());
  const auto a = images.to(at::kFloat).cpu().clamp(-1, 1);
  const auto b = reference.to(at::kFloat).cpu().clamp(-1, 1);
  PairedQuality q;
  const auto x = images.to(at::kFloat).cpu(), y = reference.to(at::kFloat).cpu();
  const auto diff = x - y;
  q.mse = mse(x, y);
  q.max_abs = diff.abs().max().item<double>();
  q.psnr = q.mse > 0 ? 10.0 * std::log10(4.0 / q.mse) : std::numeric_limits<double>::infinity();
  q.ssim = mean_ssim(a, b);
  return q;
}

}  // namespace eoc

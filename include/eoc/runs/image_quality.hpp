// Paired image quality against a reference (the uncached images of the same seeds).
// Images are (N, C, H, W) float in [-1, 1] (data range 2).
#pragma once
#include <ATen/ATen.h>

namespace eoc {

struct PairedQuality {
  double mse = 0;   // mean over all pixels, on the [-1, 1] scale
  double psnr = 0;  // dB, peak-to-peak 2; +inf for identical images
  double ssim = 0;  // mean SSIM (11x11 Gaussian window, sigma 1.5), per channel, on [-1, 1]
  double max_abs = 0;
};

PairedQuality paired_quality(const at::Tensor& images, const at::Tensor& reference);

}  // namespace eoc

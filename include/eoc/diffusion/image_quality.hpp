// Paired image quality against a reference (the uncached images of the same seeds).
// Images are (N, C, H, W) float samples, nominally in [-1, 1] (data range 2). MSE, PSNR and the
// largest difference are taken over the raw samples (what the sampler produced, before the
// pixel conversion clamps them), so an error outside [-1, 1] still counts; SSIM, whose constants
// assume the data range, over the samples clamped to [-1, 1]. PSNR pools the MSE of all images.
#pragma once
#include <ATen/ATen.h>

namespace eoc {

struct PairedQuality {
  double mse = 0;   // mean over all values of all images
  double psnr = 0;  // dB, 10 log10(2^2 / mse); +inf for identical images
  double ssim = 0;  // mean SSIM (11x11 Gaussian window, sigma 1.5), per channel, on [-1, 1]
  double max_abs = 0;
};

// Mean squared difference over all values (the one MSE of eoc: calibration's judgments, the
// budget search, eoc compare).
double mse(const at::Tensor& a, const at::Tensor& b);

PairedQuality paired_quality(const at::Tensor& images, const at::Tensor& reference);

}  // namespace eoc

// The VAE decoder latent DiTs need: a TorchScript module written by scripts/tools/export_vae.py
// (docs/VAE.md) holding Stable Diffusion's AutoencoderKL post_quant_conv + decoder.
//
// Shapes: latents (B, C, h, w) with C = latent_channels (4 for SD's VAE); images
// (B, 3, f h, f w) with f = upscale (8 for SD's VAE), values about [-1, 1].
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>

namespace eoc {

class VaeDecoder {
 public:
  // Loads `path` onto `device`; the decoder always runs in float32 (as DiT's sample_ddp.py).
  // Throws eoc::Error naming the file when it is missing, not TorchScript, or not a decoder
  // from export_vae.py.
  static std::shared_ptr<const VaeDecoder> load(const std::string& path, const at::Device& device);

  const std::string& path() const { return path_; }
  const std::string& sha256() const { return sha256_; }  // of the file, as sha256sum prints
  const std::string& name() const { return name_; }
  int64_t latent_channels() const { return latent_channels_; }
  int64_t upscale() const { return upscale_; }

  // Decodes latents / scale (DiT: scale 0.18215) -> images (B, 3, f h, f w) float32 on the
  // latents' device. Error when the channel count does not match.
  at::Tensor decode(const at::Tensor& latents, double scale) const;

  ~VaeDecoder();

 private:
  VaeDecoder();
  struct Impl;  // keeps torch/script.h out of this header
  std::unique_ptr<Impl> impl_;
  std::string path_, sha256_, name_;
  int64_t latent_channels_ = 0;
  int64_t upscale_ = 0;
  at::Device device_{at::kCPU};
};

}  // namespace eoc

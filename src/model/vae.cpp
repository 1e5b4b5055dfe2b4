#include "eoc/model/vae.hpp"

#include <c10/core/InferenceMode.h>
#include <torch/script.h>

#include <filesystem>
#include <future>
#include <sstream>

#include "eoc/base/error.hpp"
#include "eoc/io/sha256.hpp"

namespace eoc {
namespace {

constexpr int64_t kVaeContractVersion = 1;

int64_t vae_int_attr(const torch::jit::Module& m, const char* name, const std::string& path) {
  if (!m.hasattr(name) || !m.attr(name).isInt())
    fail("VAE '", path, "' lacks the integer attribute '", name,
         "' (export the decoder with scripts/tools/export_vae.py)");
  return m.attr(name).toInt();
}

}  // namespace

struct VaeDecoder::Impl {
  torch::jit::Module module;
};

VaeDecoder::VaeDecoder() : impl_(std::make_unique<Impl>()) {}
VaeDecoder::~VaeDecoder() = default;

std::shared_ptr<const VaeDecoder> VaeDecoder::load(const std::string& path,
                                                   const at::Device& device) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail("VAE file '", path, "' does not exist or is not a file");
  std::shared_ptr<VaeDecoder> vae(new VaeDecoder());
  auto file_hash = std::async(std::launch::async, sha256_file_hex, path);  // as DitModel::load
  try {
    vae->impl_->module = torch::jit::load(path, device);
  } catch (const c10::Error&) {
    fail("VAE file '", path,
         "' is not a TorchScript module (expected a file written by "
         "scripts/tools/export_vae.py)");
  }
  const auto& m = vae->impl_->module;
  const int64_t version = vae_int_attr(m, "vae_contract_version", path);
  if (version != kVaeContractVersion)
    fail("VAE '", path, "' has contract version ", version, ", this eoc reads ",
         kVaeContractVersion, " (re-export it with this version's scripts/tools/export_vae.py)");
  vae->latent_channels_ = vae_int_attr(m, "latent_channels", path);
  vae->upscale_ = vae_int_attr(m, "upscale", path);
  if (vae->latent_channels_ < 1 || vae->upscale_ < 1)
    fail("VAE '", path, "' declares latent_channels ", vae->latent_channels_, " and upscale ",
         vae->upscale_, " (expected positive values)");
  vae->name_ = m.hasattr("model_name") && m.attr("model_name").isString()
                   ? m.attr("model_name").toStringRef()
                   : std::string("unnamed");
  vae->impl_->module.eval();
  vae->impl_->module.to(at::kFloat);
  vae->path_ = path;
  vae->sha256_ = file_hash.get();
  vae->device_ = device;
  return vae;
}

at::Tensor VaeDecoder::decode(const at::Tensor& latents, double scale) const {
  if (latents.dim() != 4 || latents.size(1) != latent_channels_) {
    std::ostringstream shape;
    shape << latents.sizes();
    fail("VAE '", path_, "' decodes ", latent_channels_,
         "-channel latents (B, C, h, w), got shape ", shape.str());
  }
  EOC_ASSERT(scale > 0.0, "a VAE scale of ", scale, " (the run set-up refuses it)");
  c10::InferenceMode inference;
  const auto z = (latents.to(device_, at::kFloat) / scale).contiguous();
  auto images = impl_->module.forward({z}).toTensor();
  return images.to(latents.device());
}

}  // namespace eoc

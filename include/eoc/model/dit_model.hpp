// Model layer (the DiT, the VAE decoder, device, dtype, threads, the CPU runtime environment;
// uses base and io). A loaded DiT: the TorchScript module written by
// scripts/tools/export_dit.py (docs/MODEL_CONTRACT.md), checked against the contract at load.
// One DitModel is immutable once loaded and may be shared by several runs; all per-run state
// (noise, cache, statistics) lives elsewhere.
//
// Shapes: B batch rows, C = in_channels, H = W = input_size, T = (input_size / patch_size)^2
// tokens, D = hidden_size. Times are the model's own (ModelConfig::prediction): int64 original
// training timesteps 0..999 for version-1 modules, float32 for version 2.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>

namespace eoc {

struct ModelConfig {
  int64_t input_size = 0;
  int64_t patch_size = 0;
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t hidden_size = 0;
  int64_t depth = 0;
  int64_t num_heads = 0;
  int64_t num_classes = 0;
  bool learn_sigma = false;
  int64_t contract_version = 0;
  std::string name;
  // What the model predicts: "eps" (DiT; version-1 modules) or "velocity" (the SiT family, in
  // SiT's time: t = 0 noise, t = 1 data). Version 2 modules take float times in these units
  // (0..999 for eps, [0, 1] for velocity); version 1 modules take int64 timesteps.
  std::string prediction = "eps";
  std::string family = "dit";  // "dit" | "sit" | "repa" (as exported; informational)
  bool float_time() const { return contract_version >= 2; }

  int64_t tokens() const;
  // Multiply-adds per image forward, in billions (the unit the DiT paper calls GFLOPs:
  // DiT-XL/2 at 256x256 gives 118.6).
  double gflops_per_forward() const;
  // Share of one forward spent in one (block, branch), for "FLOPs saved" estimates.
  double attn_gflops() const;
  double mlp_gflops() const;
};

// The six adaLN vectors of one block, each (B, D), in the official chunk order.
struct Modulation {
  at::Tensor shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp;
};

enum class Branch : int { attn = 0, mlp = 1 };
const char* branch_name(Branch b);

class DitModel {
 public:
  // Loads `path` onto `device` in `dtype` (float32, bfloat16 or float16). Throws eoc::Error
  // naming the file when it is missing, not TorchScript, or breaks the contract.
  // `batch_invariant` makes every linear layer one product per batch row, so an image gets the
  // same bits whatever batch it is computed in (docs/FID.md); it costs little on the CPU.
  static std::shared_ptr<const DitModel> load(const std::string& path, const at::Device& device,
                                              at::ScalarType dtype, bool batch_invariant = false);

  const ModelConfig& config() const { return config_; }
  const std::string& path() const { return path_; }
  const std::string& sha256() const { return sha256_; }  // of the file, as sha256sum prints
  int64_t parameter_count() const { return parameter_count_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  bool batch_invariant() const { return batch_invariant_; }

  // x (B, C, H, W) -> tokens (B, T, D) and conditioning c (B, D).
  std::pair<at::Tensor, at::Tensor> embed(const at::Tensor& x, const at::Tensor& t,
                                          const at::Tensor& y) const;
  Modulation modulation(int64_t block, const at::Tensor& c) const;
  // Un-gated branch output (B, T, D) of `block`, from tokens (B, T, D).
  at::Tensor branch(int64_t block, Branch b, const at::Tensor& tokens, const at::Tensor& shift,
                    const at::Tensor& scale) const;
  // Final layer and unpatchify: tokens (B, T, D) -> (B, out_channels, H, W).
  at::Tensor final(const at::Tensor& tokens, const at::Tensor& c) const;
  // The module's own full forward, for checks.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) const;

  ~DitModel();

 private:
  DitModel();
  struct Impl;  // keeps torch/script.h out of this header
  std::unique_ptr<Impl> impl_;
  ModelConfig config_;
  std::string path_;
  std::string sha256_;
  int64_t parameter_count_ = 0;
  at::Device device_{at::kCPU};
  at::ScalarType dtype_ = at::kFloat;
  bool batch_invariant_ = false;
};

}  // namespace eoc

// Where a sample run's images go: a PNG grid and a raw float32 .npy collect the batches and are
// written at the end; per-image PNGs are written as each batch finishes (so a stopped run keeps
// them, and `--out-dir` resumes).
#pragma once
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

#include "eoc/setup/options.hpp"

namespace eoc {

class ImageSinks {
 public:
  // Checks that the outputs can be written (creating --out-dir): samples.png when none is given.
  static ImageSinks open(OutputOptions out);

  const OutputOptions& outputs() const { return out_; }
  // Images (B, C, H, W) in [-1, 1] of the indices `batch`.
  void add_batch(const std::vector<int64_t>& batch, const at::Tensor& images);
  // Writes the grid and the raw array (of `num_samples` images in all).
  void finish(int64_t num_samples);
  // The report's "outputs" entry.
  nlohmann::json summary() const;

 private:
  explicit ImageSinks(OutputOptions out) : out_(std::move(out)) {}
  OutputOptions out_;
  std::vector<at::Tensor> grid_, raw_;
  int64_t written_ = 0;
};

}  // namespace eoc

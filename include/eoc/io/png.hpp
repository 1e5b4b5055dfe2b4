// Image sinks. Pixels follow DiT's conversion: clamp(127.5 x + 128, 0, 255) truncated to uint8.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "eoc/io/files.hpp"

namespace eoc {

// (N, C, H, W) float in [-1, 1] -> (N, H, W, C) uint8 on the CPU.
at::Tensor to_uint8_hwc(const at::Tensor& images);

// Encodes one (H, W, C) uint8 image (C = 1, 3) as PNG bytes.
std::string encode_png(const at::Tensor& hwc);
// Writes (H, W, C) uint8 atomically as PNG; `rgb` replicates grey to 3 channels. `folder` as
// write_file_atomic.
void write_png(const std::string& path, const at::Tensor& hwc, bool rgb = false,
               FolderSync folder = FolderSync::now);
// Lays (N, H, W, C) uint8 out in rows of `nrow` with a 2-pixel black border.
at::Tensor make_grid(const at::Tensor& nhwc, int64_t nrow);

// Reads a PNG back as (H, W, C) uint8; Error naming the file when it does not decode.
at::Tensor read_png(const std::string& path);

// True when the file starts with the PNG signature and ends with the IEND chunk (a file cut
// short by a crash or a full disk fails this check); false when missing or unreadable.
bool png_is_complete(const std::string& path);

}  // namespace eoc

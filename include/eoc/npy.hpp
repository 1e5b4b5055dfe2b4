// .npy files (numpy format 1.0) for float32 / uint8 arrays, written atomically.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace eoc {

std::string npy_bytes(const at::Tensor& contiguous_cpu);  // float32 or uint8
void write_npy(const std::string& path, const at::Tensor& tensor);
at::Tensor read_npy(const std::string& path);  // float32 or uint8, C order

}  // namespace eoc

// .npy files (numpy format 1.0) for float32 / uint8 arrays, written atomically.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace eoc {

std::string npy_bytes(const at::Tensor& contiguous_cpu);  // float32 or uint8
// Just the header (magic, version 1.0, dict padded so the data starts 64-byte aligned) of an
// array of numpy dtype `descr` ("|u1", "<f4") and `shape` in C order; the data follows it.
std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape);
void write_npy(const std::string& path, const at::Tensor& tensor);
at::Tensor read_npy(const std::string& path);  // float32 or uint8, C order

}  // namespace eoc

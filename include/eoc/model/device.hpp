// Where and in what precision a model runs: dtype names, CUDA availability, CPU threads, TF32.
// Model layer: knows no flags; the run set-up (runs/) turns its answers into user errors.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

#include "eoc/base/names.hpp"

namespace eoc {

// fp32 | bf16 | fp16: the precisions a model may run in.
inline constexpr Names<at::ScalarType, 3> kDtypeNames{
    {{{at::kFloat, "fp32"}, {at::kBFloat16, "bf16"}, {at::kHalf, "fp16"}}}};
inline const char* dtype_name(at::ScalarType t) { return kDtypeNames.name(t); }

// CUDA devices this process can use; 0 when CUDA is unavailable.
int64_t cuda_device_count();
// LibTorch's and OpenBLAS's thread counts; threads <= 0 means every core.
void set_cpu_threads(int threads);
// Allows (or forbids) TF32 matmuls and convolutions on CUDA.
void allow_tf32(bool allow);
// Waits for queued device work (for honest timings); no-op on CPU.
void synchronize(const at::Device& device);

}  // namespace eoc

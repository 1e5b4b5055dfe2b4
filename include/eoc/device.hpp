// Device, dtype and thread settings, validated with clear errors.
#pragma once
#include <ATen/ATen.h>

#include <string>

#include "eoc/options.hpp"

namespace eoc {

// "cpu" | "cuda" | "cuda:N"; Error when CUDA is asked for and not available.
at::Device parse_device(const std::string& text);
at::ScalarType parse_dtype(const std::string& text);  // fp32 | bf16 | fp16
// Applies threads / TF32 settings for a run on `device`.
void configure_runtime(const ModelOptions& options, const at::Device& device);
// Waits for queued device work (for honest timings); no-op on CPU.
void synchronize(const at::Device& device);

}  // namespace eoc

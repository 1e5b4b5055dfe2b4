#include "eoc/device.hpp"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <dlfcn.h>

#include <thread>

#include "eoc/error.hpp"

namespace eoc {

at::Device parse_device(const std::string& text) {
  if (text == "cpu") return at::Device(at::kCPU);
  if (text == "cuda" || text.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (text.size() > 5) {
      size_t used = 0;
      try {
        index = std::stoi(text.substr(5), &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != text.size() - 5 || index < 0) fail("--device '", text, "': expected cuda:N");
    }
    if (!torch::cuda::is_available()) fail("--device ", text, ": CUDA is not available on this machine");
    const int count = static_cast<int>(torch::cuda::device_count());
    if (index >= count)
      fail("--device ", text, ": this machine has ", count, " CUDA device(s)");
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  fail("--device '", text, "' is not one of: cpu, cuda, cuda:N");
}

at::ScalarType parse_dtype(const std::string& text) {
  if (text == "fp32") return at::kFloat;
  if (text == "bf16") return at::kBFloat16;
  if (text == "fp16") return at::kHalf;
  fail("--dtype '", text, "' is not one of: fp32, bf16, fp16");
}

void configure_runtime(const ModelOptions& o, const at::Device& device) {
  if (o.threads < 0) fail("--threads ", o.threads, " must be >= 0 (0 = all cores)");
  const int threads = o.threads > 0 ? o.threads
                                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  // Debian's LibTorch reaches OpenBLAS through the generic BLAS interface and never tells it how
  // many threads to use, so OpenBLAS keeps a pool of its own beside LibTorch's; on a busy
  // machine the two spin against each other. Give OpenBLAS the same count when it is the BLAS.
  using SetThreads = void (*)(int);
  if (auto set_blas = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    set_blas(threads);
  if (o.tf32 && !device.is_cuda()) fail("--tf32 applies to CUDA devices only");
  if (device.is_cuda()) {
    at::globalContext().setAllowTF32CuBLAS(o.tf32);
    at::globalContext().setAllowTF32CuDNN(o.tf32);
  }
}

void synchronize(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace eoc

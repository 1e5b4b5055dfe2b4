// Option structs filled by the CLI (src/cli) and consumed by one library function per
// subcommand (eoc/pipeline.hpp). Defaults here are the tool's defaults.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace eoc {

struct ModelOptions {
  std::string model_path;  // empty: the built-in default model
  std::string device = "cpu";
  std::string dtype = "fp32";  // fp32 | bf16 | fp16
  bool tf32 = false;           // CUDA only
  int threads = 0;             // CPU threads; 0 = all cores
  // auto = on for per-image seeds on the CPU (images independent of batch size), else off
  std::string batch_invariant = "auto";
};

struct SamplingOptions {
  std::string sampler = "ddim";  // ddpm | ddim
  int64_t steps = 50;
  std::string respacing = "even";  // even | ddim
  double eta = 0.0;
  double cfg_scale = 4.0;
  std::string cfg_channels = "3";  // 3 | all
  std::string classes;             // "" = default spread, "random", or "1,2,3"
  int64_t num_samples = 16;
  int64_t batch_size = 16;
  uint64_t seed = 0;
  std::string seed_mode = "per-image";  // per-image | official
  bool check_finite = true;             // stop on NaN/Inf model output
  bool whole_forward = false;           // uncached via the module's forward (hook overhead)
};

struct CacheOptions {
  std::string cache = "none";  // none | fora:N | mask:FILE.json
  std::string correct;         // none | taylor | eoc ("" = eoc when a prior is given, else none)
  std::string prior;           // EOC prior file
};

struct OutputOptions {
  std::string grid;    // PNG grid
  int64_t nrow = 8;    // images per grid row
  std::string dir;     // per-image PNGs {index:06d}.png
  std::string raw;     // float32 .npy (N, C, H, W) before quantisation
  std::string report;  // JSON run report
};

struct VaeOptions {
  std::string path;        // TorchScript decoder from scripts/export_vae.py ("" = pixel model)
  double scale = 0.18215;  // latents are divided by this before decoding (DiT / SD's VAE)
};

struct SampleOptions {
  ModelOptions model;
  SamplingOptions sampling;
  CacheOptions cache;
  OutputOptions output;
  VaeOptions vae;
  std::string shard;        // "I/N"; "" = from torchrun/Slurm variables with --out-dir, else 0/1
  int64_t latent_size = 0;  // expected model input size (0 = any; set by configs/*.json)
  int64_t image_size = 0;   // expected side of the written images (0 = any)
};

// `eoc pack DIR -o samples.npz`: the images of one --out-dir folder as the ADM evaluator's npz.
struct PackOptions {
  std::string dir;
  std::string out = "samples.npz";
  int64_t num = 0;  // images to pack (indices 0..num-1); 0 = num_samples of the run records
};

struct CompareOptions {
  ModelOptions model;
  SamplingOptions sampling;
  CacheOptions cache;
  bool json = false;    // JSON on stdout instead of a table
  std::string report;   // also write the JSON here
  int repeats = 1;      // timed repetitions of each run; the median is reported
};

struct CalibrateOptions {
  CalibrateOptions() {
    sampling.num_samples = 48;
    sampling.seed = 1000;  // other seeds than sampling's default, so evaluations are held out
  }
  ModelOptions model;
  SamplingOptions sampling;  // num_samples = calibration samples (fit + judge)
  std::string cache = "fora:3";
  std::string form = "taylor";  // scale | extrapolate | taylor
  std::vector<double> thetas;   // empty: 0, 0.25, ..., 1.5
  std::string judgment = "trajectory";  // local | trajectory
  int64_t judge_samples = 16;  // held out from the fit, judged in one batch
  std::string out;
};

struct InfoOptions {
  ModelOptions model;
  bool json = false;
};

}  // namespace eoc

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

struct SampleOptions {
  ModelOptions model;
  SamplingOptions sampling;
  CacheOptions cache;
  OutputOptions output;
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
  ModelOptions model;
  SamplingOptions sampling;  // num_samples = calibration samples (fit + judge)
  std::string cache = "fora:3";
  std::string form = "taylor";  // scale | extrapolate | taylor
  std::vector<double> thetas;   // empty: the default grid of the chosen judgment
  std::string judgment = "trajectory";  // local | trajectory
  double judge_fraction = 0.25;  // share of the samples held out for the judgment
  std::string out;
};

struct InfoOptions {
  ModelOptions model;
  bool json = false;
};

}  // namespace eoc

// Setup layer (the typed options of every command and the run they resolve to: the model
// loaded, the schedule, labels and seeds; uses model, diffusion, cache and the layers below).
//
// The typed options of each command. The CLI (cli/) parses every flag into these once, as enums
// and numbers; the runs layer checks what needs the model (label ranges, sizes) and runs.
// Defaults here are the tool's defaults.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eoc/base/names.hpp"
#include "eoc/cache/eoc_corrector.hpp"
#include "eoc/cache/gate.hpp"
#include "eoc/diffusion/guidance.hpp"
#include "eoc/diffusion/sampler.hpp"
#include "eoc/diffusion/schedule.hpp"
#include "eoc/diffusion/seeds.hpp"
#include "eoc/setup/shard.hpp"

namespace eoc {

// One matmul per image so an image's bits do not depend on its batch (auto: on for per-image
// seeds on the CPU).
enum class BatchInvariance { automatic, on, off };
inline constexpr Names<BatchInvariance, 3> kBatchInvarianceNames{
    {{{BatchInvariance::automatic, "auto"},
      {BatchInvariance::on, "on"},
      {BatchInvariance::off, "off"}}}};

// calibrate --gate teacache: whether TeaCache's rescale polynomial is fitted (auto: for teacache).
enum class GateRescale { automatic, fit, none };
inline constexpr Names<GateRescale, 3> kGateRescaleNames{
    {{{GateRescale::automatic, "auto"}, {GateRescale::fit, "fit"}, {GateRescale::none, "none"}}}};

struct ModelOptions {
  std::string model_path;  // empty: the built-in default model
  at::Device device{at::kCPU};
  at::ScalarType dtype = at::kFloat;
  bool tf32 = false;  // CUDA only
  int threads = 0;    // CPU threads; 0 = all cores
  BatchInvariance batch_invariant = BatchInvariance::automatic;
};

// --classes: the default spread, uniform random labels, or a list cycled over the images.
struct ClassChoice {
  enum class Kind { spread, random, list } kind = Kind::spread;
  std::vector<int64_t> labels;  // Kind::list
};

struct SamplingOptions {
  SamplerKind sampler = SamplerKind::ddim;
  int64_t steps = 50;  // DDPM/DDIM: respaced steps; flow samplers: SiT's grid points
  Respacing respacing = Respacing::even;
  double eta = 0.0;
  double cfg_scale = 4.0;
  CfgChannels cfg_channels = CfgChannels::first3;
  std::optional<GuidanceInterval> cfg_interval;  // flow samplers: REPA's guidance interval
  ClassChoice classes;
  int64_t num_samples = 16;
  int64_t batch_size = 16;
  uint64_t seed = 0;
  SeedMode seed_mode = SeedMode::per_image;
  bool check_finite = true;    // stop on NaN/Inf model output
  bool whole_forward = false;  // uncached via the module's forward (hook overhead)
};

// --cache: which branch outputs are reused (the plan itself is made by runs/cache_setup.hpp).
struct CacheSpec {
  enum class Kind { none, fora, mask, gate } kind = Kind::none;
  int64_t interval = 0;   // Kind::fora
  std::string mask_path;  // Kind::mask
  GateSpec gate;          // Kind::gate
  static CacheSpec fora(int64_t interval) { return {Kind::fora, interval, {}, {}}; }
  // "none" | "fora:N" | "mask:PATH", as given.
  std::string text() const {
    switch (kind) {
      case Kind::none: return "none";
      case Kind::fora: return "fora:" + std::to_string(interval);
      case Kind::mask: return "mask:" + mask_path;
      case Kind::gate: return gate.text();
    }
    return "?";
  }
};

// The plan flags sample, compare and calibrate share.
struct PlanOptions {
  std::optional<CacheSpec> spec;  // --cache; unset: the command's default (see below)
  int64_t warmup = 0;  // compute every branch of the first K steps whatever the plan says
};

// --correct: what a reused feature becomes (automatic: eoc with a prior, else none).
enum class CorrectorChoice { automatic, none, taylor, foca, eoc };
inline constexpr Names<CorrectorChoice, 4> kCorrectorNames{{{{CorrectorChoice::none, "none"},
                                                             {CorrectorChoice::taylor, "taylor"},
                                                             {CorrectorChoice::foca, "foca"},
                                                             {CorrectorChoice::eoc, "eoc"}}}};

struct CorrectorSpec {
  CorrectorChoice kind = CorrectorChoice::automatic;
  int order = 1;  // taylor:O
};

// Without --cache: the prior's own plan with --prior, else none.
struct CacheOptions {
  PlanOptions plan;
  CorrectorSpec correct;
  std::string prior;  // EOC prior file
};

struct OutputOptions {
  std::string grid;    // PNG grid
  int64_t nrow = 8;    // images per grid row
  std::string dir;     // per-image PNGs {index:06d}.png
  std::string raw;     // float32 .npy (N, C, H, W) before quantisation
  std::string report;  // JSON run report
};

struct VaeOptions {
  std::string path;  // TorchScript decoder from scripts/tools/export_vae.py ("" = pixel model)
  double scale = 0.18215;  // latents are divided by this before decoding (DiT / SD's VAE)
};

struct SampleOptions {
  ModelOptions model;
  SamplingOptions sampling;
  CacheOptions cache;
  OutputOptions output;
  VaeOptions vae;
  std::optional<Shard> shard;  // --shard I/N; unset = from torchrun/Slurm with --out-dir
  int64_t latent_size = 0;     // expected model input size (0 = any; set by configs/*.json)
  int64_t image_size = 0;      // expected side of the written images (0 = any)
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
  std::string picture;  // also write uncached | cached | difference side by side here (PNG)
  int repeats = 1;      // timed repetitions of each run; the median is reported
};

// Without --cache and --budget: default_plan().
struct CalibrateOptions {
  static CacheSpec default_plan() { return CacheSpec::fora(3); }
  CalibrateOptions() {
    sampling.num_samples = 48;
    sampling.seed = 1000;  // other seeds than sampling's default, so evaluations are held out
  }
  ModelOptions model;
  SamplingOptions sampling;  // num_samples = calibration samples (fit + judge)
  PlanOptions plan;
  EocForm form = EocForm::taylor;
  std::vector<double> thetas;  // empty: 0, 0.25, ..., 1.5
  Judgment judgment = Judgment::trajectory;
  // Unset: kMaxTaylorOrder for the taylor form's trajectory judgment, else 1.
  std::optional<int> max_order;
  // Also try FoCa's forecast at every step beside orders 1..max_order (taylor form, trajectory
  // judgment or --budget).
  bool foca = false;
  int64_t judge_samples = 16;  // held out from the fit, judged in one batch
  // Set: search the schedule (no --cache), computing at most this fraction.
  std::optional<double> budget;
  // Set: calibrate this gate's threshold (its rule and guards; the threshold is searched) to
  // compute `target` of the branches on the judge images, with the corrector `correct`.
  std::optional<GateSpec> gate;
  std::optional<double> target;
  CorrectorSpec correct;
  // teacache: fit the rescale polynomial on the judge images' uncached trajectories first.
  GateRescale rescale = GateRescale::automatic;
  std::string out;
  std::string out_mask;  // also write the plan as a cache mask file
};

struct InfoOptions {
  ModelOptions model;
  bool json = false;
};

}  // namespace eoc

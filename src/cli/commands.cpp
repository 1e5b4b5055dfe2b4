#include "commands.hpp"

#include <memory>

#include "config_file.hpp"
#include "eoc/error.hpp"
#include "eoc/options.hpp"
#include "eoc/pipeline.hpp"

namespace eoc::cli {
namespace {

void add_model_flags(CLI::App* cmd, ModelOptions& o) {
  cmd->add_option("--model", o.model_path,
                  "TorchScript DiT from scripts/export_dit.py (default: the built-in "
                  "Fashion-MNIST model)");
  cmd->add_option("--device", o.device, "cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--dtype", o.dtype, "fp32 | bf16 | fp16")->capture_default_str();
  cmd->add_flag("--tf32", o.tf32, "Allow TF32 matmuls (CUDA)");
  cmd->add_option("--threads", o.threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--batch-invariant", o.batch_invariant,
                  "auto | on | off: one matmul per image so results do not depend on batch "
                  "size (auto: on for per-image seeds on the CPU)")->capture_default_str();
}

void add_sampling_flags(CLI::App* cmd, SamplingOptions& o) {
  cmd->add_option("--sampler", o.sampler, "ddpm (learned variance) | ddim")->capture_default_str();
  cmd->add_option("--steps", o.steps, "Sampling steps")->capture_default_str();
  cmd->add_option("--respacing", o.respacing,
                  "even (IDDPM \"N\") | ddim (IDDPM \"ddimN\")")->capture_default_str();
  cmd->add_option("--eta", o.eta, "DDIM eta (0 = deterministic)")->capture_default_str();
  cmd->add_option("--cfg-scale", o.cfg_scale, "Classifier-free guidance scale (1 = off)")
      ->capture_default_str();
  cmd->add_option("--cfg-channels", o.cfg_channels,
                  "3 = guide output channels 0..2 as official DiT | all")->capture_default_str();
  cmd->add_option("--classes", o.classes,
                  "Labels: comma list (cycled), 'random', or default: a spread of classes");
  cmd->add_option("--num-samples", o.num_samples, "Images to sample")->capture_default_str();
  cmd->add_option("--batch-size", o.batch_size, "Images per model batch")->capture_default_str();
  cmd->add_option("--seed", o.seed, "Global seed")->capture_default_str();
  cmd->add_option("--seed-mode", o.seed_mode,
                  "per-image (independent of batching) | official (DiT sample.py's stream)")
      ->capture_default_str();
  cmd->add_flag("!--no-check-finite", o.check_finite,
                "Skip the NaN/Inf check of model outputs (once trusted)");
  cmd->add_flag("--whole-forward", o.whole_forward,
                "Run the module's own forward instead of the block loop (no cache; for "
                "measuring the hook's overhead)");
}

void add_cache_flags(CLI::App* cmd, CacheOptions& o) {
  cmd->add_option("--cache", o.cache, "none | fora:N | mask:FILE.json")->capture_default_str();
  cmd->add_option("--correct", o.correct,
                  "What a reused feature becomes: none | taylor | eoc (default: eoc with "
                  "--prior, else none)");
  cmd->add_option("--prior", o.prior, "EOC prior from `eoc calibrate`");
}

// --vae, sharding and the checks the shipped configs set (FID runs, latent DiTs).
void add_fid_flags(CLI::App* cmd, SampleOptions& o) {
  cmd->add_option("--vae", o.vae.path,
                  "TorchScript VAE decoder (scripts/export_vae.py) for latent DiTs: images are "
                  "decode(latent / --vae-scale)");
  cmd->add_option("--vae-scale", o.vae.scale, "Latent scale of the VAE")->capture_default_str();
  cmd->add_option("--shard", o.shard,
                  "I/N: make the indices i with i % N == I (default with --out-dir: from "
                  "torchrun's RANK/WORLD_SIZE or Slurm's SLURM_PROCID/SLURM_NTASKS)");
  cmd->add_option("--latent-size", o.latent_size,
                  "Expected model input size (0 = any; configs set it)")->capture_default_str();
  cmd->add_option("--image-size", o.image_size,
                  "Expected side of the written images (0 = any; configs set it)")
      ->capture_default_str();
}

void add_config_flags(CLI::App* cmd) {
  add_config_flag(cmd);
  add_dry_run_flag(cmd);
}

void add_pack_command(CLI::App& app, const std::shared_ptr<std::function<void()>>& action) {
  auto pack = std::make_shared<PackOptions>();
  auto* cmd = app.add_subcommand(
      "pack", "Pack an --out-dir folder into samples.npz (arr_0) for the ADM FID evaluator");
  cmd->add_option("dir", pack->dir, "Folder written by eoc sample --out-dir")->required();
  cmd->add_option("-o,--out", pack->out,
                  "npz to write; its settings and checksum go to a .json beside it")
      ->capture_default_str();
  cmd->add_option("--num", pack->num,
                  "Images to pack, indices 0..N-1 (default: num_samples of the run records)");
  cmd->callback([=] {
    *action = [=] {
#ifdef EOC_HAVE_LIBZIP
      run_pack(*pack);
#else
      fail("this build has no libzip: `eoc pack` is unavailable (install libzip-dev and rebuild)");
#endif
    };
  });
}

}  // namespace

std::function<void()> register_commands(CLI::App& app) {
  auto action = std::make_shared<std::function<void()>>();

  auto info = std::make_shared<InfoOptions>();
  auto* info_cmd = app.add_subcommand("info", "Print a model's configuration, size and cost");
  add_model_flags(info_cmd, info->model);
  info_cmd->add_flag("--json", info->json, "Print JSON");
  info_cmd->callback([=] { *action = [=] { run_info(*info); }; });

  auto sample = std::make_shared<SampleOptions>();
  auto* sample_cmd = app.add_subcommand("sample", "Sample images to a PNG grid, PNG files or .npy");
  add_model_flags(sample_cmd, sample->model);
  add_sampling_flags(sample_cmd, sample->sampling);
  add_cache_flags(sample_cmd, sample->cache);
  sample_cmd->add_option("--out", sample->output.grid, "PNG grid (default samples.png when no "
                                                       "other output is given)");
  sample_cmd->add_option("--nrow", sample->output.nrow, "Images per grid row")->capture_default_str();
  sample_cmd->add_option("--out-dir", sample->output.dir, "Folder for {index:06d}.png files (RGB)");
  sample_cmd->add_option("--out-raw", sample->output.raw,
                         "float32 .npy (N, C, H, W) of the samples before quantisation");
  sample_cmd->add_option("--report", sample->output.report, "JSON run report");
  add_fid_flags(sample_cmd, *sample);
  add_config_flags(sample_cmd);
  sample_cmd->callback([=] { *action = [=] { run_sample(*sample); }; });

  auto compare = std::make_shared<CompareOptions>();
  auto* compare_cmd = app.add_subcommand(
      "compare", "Sample the same seeds uncached and cached; report paired quality and times");
  add_model_flags(compare_cmd, compare->model);
  add_sampling_flags(compare_cmd, compare->sampling);
  add_cache_flags(compare_cmd, compare->cache);
  compare_cmd->add_flag("--json", compare->json, "Print JSON instead of a table");
  compare_cmd->add_option("--report", compare->report, "Also write the JSON here");
  compare_cmd->add_option("--repeats", compare->repeats, "Timed runs of each; medians reported")
      ->capture_default_str();
  add_config_flags(compare_cmd);
  compare_cmd->callback([=] { *action = [=] { run_compare(*compare); }; });

  auto calibrate = std::make_shared<CalibrateOptions>();
  auto* calibrate_cmd = app.add_subcommand(
      "calibrate", "Extract caching differences and judge each cached step into an EOC prior");
  add_model_flags(calibrate_cmd, calibrate->model);
  add_sampling_flags(calibrate_cmd, calibrate->sampling);
  calibrate_cmd->add_option("--cache", calibrate->cache, "Cache plan the prior is for")
      ->capture_default_str();
  calibrate_cmd->add_option("--eoc-form", calibrate->form, "scale | extrapolate | taylor")
      ->capture_default_str();
  calibrate_cmd->add_option("--eoc-thetas", calibrate->thetas,
                            "Strengths: the local judgment's grid; the trajectory judgment's "
                            "range (default 0,0.25,...,1.5)")
      ->delimiter(',');
  calibrate_cmd->add_option("--judgment", calibrate->judgment,
                            "trajectory (each step's strength by the final images' error, "
                            "greedily in step order) | local (the step's guided output error)")
      ->capture_default_str();
  calibrate_cmd->add_option("--judge-samples", calibrate->judge_samples,
                            "Samples held out from the fit for the judgment")
      ->capture_default_str();
  calibrate_cmd->add_option("--out", calibrate->out, "Prior JSON to write")->required();
  add_config_flags(calibrate_cmd);
  calibrate_cmd->callback([=] { *action = [=] { run_calibrate(*calibrate); }; });

  add_pack_command(app, action);

  return [action] { (*action)(); };
}

}  // namespace eoc::cli

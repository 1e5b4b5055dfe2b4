#include "eoc/cli/commands.hpp"

#include <memory>

#include "eoc/cli/config_file.hpp"
#include "eoc/cli/flag_values.hpp"
#include "eoc/model/device.hpp"
#include "eoc/runs/commands.hpp"
#include "eoc/setup/options.hpp"

namespace eoc::cli {
namespace {

// A flag whose text is parsed into `target` by `parse` as soon as CLI11 (or a --config file)
// sets it; `shown` is the default --help and --dry-run print.
template <typename T, typename Parse>
CLI::Option* add_parsed(CLI::App* cmd, const std::string& name, T& target, Parse parse,
                        const std::string& help, const std::string& shown) {
  return cmd
      ->add_option_function<std::string>(
          name, [&target, parse](const std::string& text) { target = parse(text); }, help)
      ->default_str(shown);
}

template <typename E, std::size_t N>
CLI::Option* add_choice(CLI::App* cmd, const char* name, E& target, const Names<E, N>& names,
                        const std::string& help) {
  return add_parsed(
      cmd, name, target,
      [name, &names](const std::string& t) { return parse_choice(name, t, names); }, help,
      names.name(target));
}

void add_model_flags(CLI::App* cmd, ModelOptions& o) {
  cmd->add_option("--model", o.model_path,
                  "TorchScript DiT from scripts/tools/export_dit.py (default: the built-in "
                  "Fashion-MNIST model)");
  add_parsed(cmd, "--device", o.device, parse_device, "cpu | cuda | cuda:N", "cpu");
  add_choice(cmd, "--dtype", o.dtype, kDtypeNames, "fp32 | bf16 | fp16");
  cmd->add_flag("--tf32", o.tf32, "Allow TF32 matmuls (CUDA)");
  cmd->add_option("--threads", o.threads, "CPU threads (0 = all cores)")->capture_default_str();
  add_choice(cmd, "--batch-invariant", o.batch_invariant, kBatchInvarianceNames,
             "auto | on | off: one matmul per image so results do not depend on batch size "
             "(auto: on for per-image seeds on the CPU)");
}

void add_sampling_flags(CLI::App* cmd, SamplingOptions& o) {
  add_choice(cmd, "--sampler", o.sampler, kSamplerNames,
             "ddpm (learned variance) | ddim (DiT, eps models) | euler | heun (SiT's ODE) | sde | "
             "sde-heun (SiT's SDE; velocity models)");
  cmd->add_option("--steps", o.steps, "Sampling steps")->capture_default_str();
  add_choice(cmd, "--respacing", o.respacing, kRespacingNames,
             "even (IDDPM \"N\") | ddim (IDDPM \"ddimN\")");
  cmd->add_option("--eta", o.eta, "DDIM eta (0 = deterministic)")->capture_default_str();
  cmd->add_option("--cfg-scale", o.cfg_scale, "Classifier-free guidance scale (1 = off)")
      ->capture_default_str();
  add_parsed(
      cmd, "--cfg-interval", o.cfg_interval,
      [](const std::string& t) { return std::optional<GuidanceInterval>(parse_interval(t)); },
      "LOW,HIGH: guide only the steps whose time lies in [LOW, HIGH], in REPA's time (1 = noise, "
      "0 = data), as REPA's samplers do (flow samplers; default: every step)",
      "");
  add_choice(cmd, "--cfg-channels", o.cfg_channels, kCfgChannelsNames,
             "3 = guide output channels 0..2 as official DiT | all");
  add_parsed(cmd, "--classes", o.classes, parse_classes,
             "Labels: comma list (cycled), 'random', or default: a spread of classes", "");
  cmd->add_option("--num-samples", o.num_samples, "Images to sample")->capture_default_str();
  cmd->add_option("--batch-size", o.batch_size, "Images per model batch")->capture_default_str();
  cmd->add_option("--seed", o.seed, "Global seed")->capture_default_str();
  add_choice(cmd, "--seed-mode", o.seed_mode, kSeedModeNames,
             "per-image (independent of batching) | official (DiT sample.py's stream)");
  cmd->add_flag("!--no-check-finite", o.check_finite,
                "Skip the NaN/Inf check of model outputs (once trusted)");
  cmd->add_flag("--whole-forward", o.whole_forward,
                "Run the module's own forward instead of the block loop (no cache; for "
                "measuring the hook's overhead)");
}

// --cache and --warmup, the plan flags of sample, compare and calibrate.
void add_plan_flags(CLI::App* cmd, PlanOptions& o, const std::string& cache_help,
                    const std::string& shown) {
  add_parsed(
      cmd, "--cache", o.spec,
      [](const std::string& t) { return std::optional<CacheSpec>(parse_cache_spec(t)); },
      cache_help, shown);
  cmd->add_option("--warmup", o.warmup,
                  "Compute every branch of the first K steps whatever the cache plan says")
      ->capture_default_str();
}

void add_cache_flags(CLI::App* cmd, CacheOptions& o) {
  add_plan_flags(
      cmd, o.plan,
      "none | fora:N | mask:FILE.json | a run-time gate decided per image: fbcache:T[,fn=F][,bn=B] "
      "| teacache:T | easycache:T, each with [,warmup=W][,max-run=M][,max-total=C] (default: the "
      "prior's plan with --prior, else none)",
      "none");
  add_parsed(cmd, "--correct", o.correct, parse_corrector,
             "What a reused feature becomes: none | taylor (first order) | taylor:O (TaylorSeer's "
             "forecast of order O = 1..4) | foca (FoCa's BDF2 + Heun forecast) | eoc (default: eoc "
             "with --prior, else none)",
             "");
  cmd->add_option("--prior", o.prior, "EOC prior from `eoc calibrate`");
}

// --vae, sharding and the checks the shipped configs set (FID runs, latent DiTs).
void add_fid_flags(CLI::App* cmd, SampleOptions& o) {
  cmd->add_option("--vae", o.vae.path,
                  "TorchScript VAE decoder (scripts/tools/export_vae.py) for latent DiTs: images "
                  "are decode(latent / --vae-scale)");
  cmd->add_option("--vae-scale", o.vae.scale, "Latent scale of the VAE")->capture_default_str();
  add_parsed(
      cmd, "--shard", o.shard,
      [](const std::string& t) { return std::optional<Shard>(parse_shard(t)); },
      "I/N: make the indices i with i % N == I (default with --out-dir: from torchrun's "
      "RANK/WORLD_SIZE or Slurm's SLURM_PROCID/SLURM_NTASKS)",
      "");
  cmd->add_option("--latent-size", o.latent_size,
                  "Expected model input size (0 = any; configs set it)")
      ->capture_default_str();
  cmd->add_option("--image-size", o.image_size,
                  "Expected side of the written images (0 = any; configs set it)")
      ->capture_default_str();
}

void add_output_flags(CLI::App* cmd, OutputOptions& o) {
  cmd->add_option("--out", o.grid, "PNG grid (default samples.png when no other output is given)");
  cmd->add_option("--nrow", o.nrow, "Images per grid row")->capture_default_str();
  cmd->add_option("--out-dir", o.dir, "Folder for {index:06d}.png files (RGB)");
  cmd->add_option("--out-raw", o.raw,
                  "float32 .npy (N, C, H, W) of the samples before quantisation");
  cmd->add_option("--report", o.report, "JSON run report");
}

void add_config_flags(CLI::App* cmd) {
  add_config_flag(cmd);
  add_dry_run_flag(cmd);
}

using Action = std::shared_ptr<std::function<void()>>;

// Each subcommand's options live as long as the app; its callback stores what to run.
template <typename Options>
std::shared_ptr<Options> add_command(CLI::App& app, const Action& action, const char* name,
                                     const char* about, void (*run)(const Options&),
                                     CLI::App*& cmd) {
  auto options = std::make_shared<Options>();
  cmd = app.add_subcommand(name, about);
  cmd->callback([=] { *action = [=] { run(*options); }; });
  return options;
}

void add_info_command(CLI::App& app, const Action& action) {
  CLI::App* cmd = nullptr;
  auto o = add_command<InfoOptions>(app, action, "info",
                                    "Print a model's configuration, size and cost", run_info, cmd);
  add_model_flags(cmd, o->model);
  cmd->add_flag("--json", o->json, "Print JSON");
}

void add_sample_command(CLI::App& app, const Action& action) {
  CLI::App* cmd = nullptr;
  auto o = add_command<SampleOptions>(
      app, action, "sample", "Sample images to a PNG grid, PNG files or .npy", run_sample, cmd);
  add_model_flags(cmd, o->model);
  add_sampling_flags(cmd, o->sampling);
  add_cache_flags(cmd, o->cache);
  add_output_flags(cmd, o->output);
  add_fid_flags(cmd, *o);
  add_config_flags(cmd);
}

void add_compare_command(CLI::App& app, const Action& action) {
  CLI::App* cmd = nullptr;
  auto o = add_command<CompareOptions>(
      app, action, "compare",
      "Sample the same seeds uncached and cached; report paired quality and times", run_compare,
      cmd);
  add_model_flags(cmd, o->model);
  add_sampling_flags(cmd, o->sampling);
  add_cache_flags(cmd, o->cache);
  cmd->add_flag("--json", o->json, "Print JSON instead of a table");
  cmd->add_option("--report", o->report, "Also write the JSON here");
  cmd->add_option("--out-picture", o->picture,
                  "Also write a PNG: one row per image, uncached | cached | absolute difference "
                  "(white = the largest difference, stated in the log and the JSON)");
  cmd->add_option("--repeats", o->repeats, "Timed runs of each; medians reported")
      ->capture_default_str();
  add_config_flags(cmd);
}

void add_calibrate_command(CLI::App& app, const Action& action) {
  CLI::App* cmd = nullptr;
  auto o = add_command<CalibrateOptions>(
      app, action, "calibrate",
      "Extract caching differences and judge each cached step into an EOC prior", run_calibrate,
      cmd);
  add_model_flags(cmd, o->model);
  add_sampling_flags(cmd, o->sampling);
  add_plan_flags(cmd, o->plan, "Cache plan the prior is for (none with --budget)",
                 CalibrateOptions::default_plan().text());
  add_choice(cmd, "--eoc-form", o->form, kEocFormNames, "scale | extrapolate | taylor");
  cmd->add_option("--eoc-thetas", o->thetas,
                  "Strengths: the local judgment's grid; the trajectory judgment's range "
                  "(default 0,0.25,...,1.5)")
      ->delimiter(',');
  add_choice(cmd, "--judgment", o->judgment, kJudgmentNames,
             "trajectory (each step's strength by the final images' error, greedily in step "
             "order) | local (the step's guided output error)");
  add_parsed(
      cmd, "--max-order", o->max_order,
      [](const std::string& t) { return std::optional<int>(parse_integer("--max-order", t)); },
      "Highest forecast order the judgment may choose per step (taylor form, trajectory "
      "judgment; default 4; 1 = the first-order forecast only)",
      "")
      ->type_name("INT");
  cmd->add_flag("--foca", o->foca,
                "Also try FoCa's forecast at every reused step beside the orders (taylor form, "
                "trajectory judgment, and --budget's search)");
  cmd->add_option("--judge-samples", o->judge_samples,
                  "Samples held out from the fit for the judgment")
      ->capture_default_str();
  add_parsed(
      cmd, "--budget", o->budget,
      [](const std::string& t) { return std::optional<double>(parse_number("--budget", t)); },
      "Search the schedule instead of --cache: compute at most this fraction of the branch "
      "computations (e.g. 0.4), chosen on the judge images with the forecast",
      "")
      ->type_name("FLOAT");
  add_parsed(
      cmd, "--gate", o->gate,
      [](const std::string& t) {
        // The rule and its guards; the threshold is what the calibration finds.
        const auto comma = t.find(',');
        const std::string spec =
            t.substr(0, comma) + ":0" + (comma == std::string::npos ? "" : t.substr(comma));
        std::optional<GateSpec> g;
        try {
          g = GateSpec::parse(spec);
        } catch (const Error& e) {
          fail("--gate '", t, "': ", e.what());
        }
        if (!g)
          fail("--gate '", t,
               "' is not one of: fbcache[,fn=F][,bn=B], teacache, easycache (each with "
               "[,warmup=W][,max-run=M][,max-total=C])");
        return g;
      },
      "Calibrate a run-time gate's threshold instead of an EOC prior: fbcache[,fn=F][,bn=B] | "
      "teacache[,poly=C4/C3/C2/C1/C0] | easycache, each with [,warmup=W][,max-run=M]"
      "[,max-total=C]; needs --target",
      "")
      ->type_name("RULE");
  add_parsed(
      cmd, "--target", o->target,
      [](const std::string& t) { return std::optional<double>(parse_number("--target", t)); },
      "With --gate: the fraction of branch computations the gate should compute on the judge "
      "images (e.g. 0.4)",
      "")
      ->type_name("FLOAT");
  add_parsed(cmd, "--correct", o->correct, parse_corrector,
             "With --gate: what reused features become while calibrating (none | taylor:O | "
             "foca; recorded in the file, used by sample --prior)",
             "");
  add_choice(cmd, "--rescale", o->rescale, kGateRescaleNames,
             "With --gate teacache: fit TeaCache's degree-4 rescale of its signal to the judge "
             "images' model-output change first (fit), or accumulate the signal as measured "
             "(none); auto: fit (for teacache only)");
  cmd->add_option("--out", o->out, "Prior JSON to write")->required();
  cmd->add_option("--out-mask", o->out_mask,
                  "Also write the prior's cache plan as a mask file (for --cache mask:FILE)");
  add_config_flags(cmd);
}

void add_pack_command(CLI::App& app, const Action& action) {
  CLI::App* cmd = nullptr;
  auto o = add_command<PackOptions>(
      app, action, "pack",
      "Pack an --out-dir folder into samples.npz (arr_0) for the ADM FID evaluator",
      +[](const PackOptions& p) {
#ifdef EOC_HAVE_LIBZIP
        run_pack(p);
#else
        (void)p;
        fail(
            "this build has no libzip: `eoc pack` is unavailable (install libzip-dev and rebuild)");
#endif
      },
      cmd);
  cmd->add_option("dir", o->dir, "Folder written by eoc sample --out-dir")->required();
  cmd->add_option("-o,--out", o->out,
                  "npz to write; its settings and checksum go to a .json beside it")
      ->capture_default_str();
  cmd->add_option("--num", o->num,
                  "Images to pack, indices 0..N-1 (default: num_samples of the run records)");
}

}  // namespace

std::function<void()> register_commands(CLI::App& app) {
  auto action = std::make_shared<std::function<void()>>();
  add_info_command(app, action);
  add_sample_command(app, action);
  add_compare_command(app, action);
  add_calibrate_command(app, action);
  add_pack_command(app, action);
  return [action] { (*action)(); };
}

}  // namespace eoc::cli

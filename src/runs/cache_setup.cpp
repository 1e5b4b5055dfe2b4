#include "eoc/runs/cache_setup.hpp"

#include <filesystem>
#include <optional>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/cache/eoc_corrector.hpp"
#include "eoc/files/gate_file.hpp"
#include "eoc/files/mask_file.hpp"
#include "eoc/files/prior_file.hpp"
#include "eoc/files/run_settings.hpp"
#include "eoc/io/files.hpp"

namespace eoc {

void check_warmup(int64_t warmup, int64_t steps) {
  if (warmup < 0 || warmup > steps)
    fail("--warmup ", warmup, " is out of range (expected 0..", steps, ", the step count)");
}

CachePlan make_cache_plan(const CacheSpec& spec, int64_t steps, int64_t depth, int64_t warmup) {
  check_warmup(warmup, steps);
  CachePlan plan = [&] {
    switch (spec.kind) {
      case CacheSpec::Kind::none: return CachePlan::none(steps, depth);
      case CacheSpec::Kind::fora: return CachePlan::fora(steps, depth, spec.interval);
      case CacheSpec::Kind::gate: return make_gate_plan(spec.gate, steps, depth, 0, "--cache");
      case CacheSpec::Kind::mask: break;
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(spec.mask_path, ec))
      fail("--cache '", spec.text(), "': mask file '", spec.mask_path, "' does not exist");
    return plan_from_mask_json(read_file(spec.mask_path), spec.mask_path, steps, depth);
  }();
  plan.compute_first(warmup);
  return plan;
}

CachePlan make_gate_plan(const GateSpec& gate, int64_t steps, int64_t depth, int64_t warmup,
                         const char* flag) {
  check_warmup(warmup, steps);
  if (gate.first_gated_block() >= gate.end_gated_block(depth))
    fail(flag, " '", gate.text(), "': fn + bn must leave a block to gate (the model has ", depth,
         ")");
  CachePlan plan = CachePlan::gated(steps, depth, gate);
  plan.compute_first(warmup);
  return plan;
}

std::unique_ptr<Corrector> make_corrector(const CorrectorSpec& spec) {
  switch (spec.kind) {
    case CorrectorChoice::taylor: return make_taylor_corrector(spec.order);
    case CorrectorChoice::foca: return make_foca_corrector();
    case CorrectorChoice::automatic:
    case CorrectorChoice::none: return make_plain_corrector();
    case CorrectorChoice::eoc: break;
  }
  EOC_ASSERT(false, "the eoc corrector needs a prior");
  return nullptr;
}

namespace {

// --cache's plan; without --cache, a prior's own plan (the prior says what it was made for).
CachePlan plan_for_run(const RunSetup& run, const PlanOptions& o,
                       const std::optional<PriorFile>& prior) {
  const int64_t depth = run.model->config().depth;
  const CacheSpec spec = o.spec.value_or(CacheSpec{});
  if (o.spec || !prior) return make_cache_plan(spec, run.steps(), depth, o.warmup);
  auto plan = plan_in_prior(*prior, run.steps(), depth);
  // A prior for another step count or model has no plan here; the prior check names why.
  if (!plan) return make_cache_plan(spec, run.steps(), depth, o.warmup);
  if (o.warmup != 0)
    fail("--warmup ", o.warmup, " changes a --cache plan; without --cache the prior's own plan '",
         plan->spec(), "' is used as it was calibrated (a warm-up included)");
  return *plan;
}

// --prior naming a gate calibration: its gate, its corrector unless --correct names another.
CacheSetup prepare_gate_cache(const RunSetup& run, const CacheOptions& o) {
  const GateFile g = load_gate_file(o.prior);
  if (o.plan.spec)
    fail("--prior '", o.prior, "' is a gate calibration (", g.gate.text(),
         "): it sets the cache, so give no --cache (got ", o.plan.spec->text(), ")");
  if (o.plan.warmup != 0)
    fail("--warmup ", o.plan.warmup, ": the gate calibration '", o.prior,
         "' is used with the guards it was calibrated with (", g.gate.text(), ")");
  CorrectorSpec spec = o.correct;
  if (spec.kind == CorrectorChoice::automatic) {
    const auto kind = kCorrectorNames.parse(g.corrector);
    if (!kind || *kind == CorrectorChoice::eoc)
      fail("gate file '", o.prior, "' names an unknown corrector '", g.corrector, "'");
    spec = {*kind, g.order};
  }
  if (spec.kind == CorrectorChoice::eoc)
    fail("--correct eoc: a gate calibration '", o.prior,
         "' holds no EOC prior; use --correct none|taylor:O|foca");
  CacheSetup c{CachePlan::gated(run.steps(), run.model->config().depth, g.gate),
               make_corrector(spec), "", o.prior, g.sha256};
  c.corrector_name = c.corrector->name();
  check_assumptions(g.assumes, run_settings(RunFacts{run, c.plan}, kInPrior), o.prior);
  return c;
}

}  // namespace

CacheSetup prepare_cache(const RunSetup& run, const CacheOptions& o) {
  if (!o.prior.empty() && is_gate_file(o.prior)) return prepare_gate_cache(run, o);
  const CorrectorChoice choice = o.correct.kind != CorrectorChoice::automatic ? o.correct.kind
                                 : o.prior.empty() ? CorrectorChoice::none
                                                   : CorrectorChoice::eoc;
  const std::string name = kCorrectorNames.name(choice);
  if (choice == CorrectorChoice::eoc && o.plan.spec && o.plan.spec->kind == CacheSpec::Kind::gate)
    fail("--cache '", o.plan.spec->text(),
         "' is a run-time gate: an EOC prior is fitted to a fixed schedule; use --correct "
         "none|taylor:O|foca with a gate");
  if (choice == CorrectorChoice::eoc && o.prior.empty())
    fail("--correct eoc needs --prior PRIOR.json (from eoc calibrate)");
  if (choice != CorrectorChoice::eoc && !o.prior.empty())
    fail("--prior is used by --correct eoc only (got --correct ", name, ")");
  std::optional<PriorFile> prior;
  if (choice == CorrectorChoice::eoc) prior = load_prior(o.prior);
  CacheSetup c{plan_for_run(run, o.plan, prior), nullptr, name, "", ""};
  if (run.whole_forward && c.plan.may_reuse())
    fail("--whole-forward runs the module's forward and cannot cache: use it with --cache none");
  if (choice == CorrectorChoice::eoc) {
    check_prior_matches(*prior, run_settings(RunFacts{run, c.plan}, kInPrior), o.prior);
    c.corrector = make_eoc_corrector(prior->prior, run.block_loop());
    c.prior_path = o.prior;
    c.prior_sha256 = prior->sha256;
  } else {
    c.corrector = make_corrector(o.correct);
    if (choice == CorrectorChoice::taylor) c.corrector_name = c.corrector->name();
  }
  if (choice != CorrectorChoice::none && !c.plan.may_reuse())
    log::warn("--correct " + c.corrector_name + " has no effect: cache plan '" + c.plan.spec() +
              "' reuses nothing");
  return c;
}

RunFacts run_facts(const RunSetup& run, const CacheSetup& cache, const VaeDecoder* vae,
                   double vae_scale) {
  return RunFacts{run, cache.plan, cache.corrector_name, cache.prior_sha256, vae, vae_scale};
}

}  // namespace eoc

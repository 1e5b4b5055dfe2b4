// Runs layer (one entry point per command and what the commands share: the cache set-up, the
// batch loop, image sinks, the --out-dir folder, reports; uses every layer below, never cli/).
//
// A run's cache: the plan --cache (and --warmup) asks for, or a prior's own plan, and the
// corrector its reused features go through (--correct, with --prior for eoc, checked against
// the run).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "eoc/cache/correctors.hpp"
#include "eoc/cache/plan.hpp"
#include "eoc/files/run_settings.hpp"
#include "eoc/setup/options.hpp"
#include "eoc/setup/run_setup.hpp"

namespace eoc {

// Error unless 0 <= warmup <= steps (--warmup).
void check_warmup(int64_t warmup, int64_t steps);

// The plan `spec` asks for over `steps` x `depth`, with every branch of the first `warmup`
// steps computed (--warmup), validated (nothing reused before it was computed). Error naming the
// mask file when it is missing or malformed.
CachePlan make_cache_plan(const CacheSpec& spec, int64_t steps, int64_t depth, int64_t warmup = 0);
// A run-time gate's plan, its warm-up raised to `warmup`; Error naming `flag` (--cache, --gate)
// when fn + bn leave no block to gate, or the warm-up is out of range.
CachePlan make_gate_plan(const GateSpec& gate, int64_t steps, int64_t depth, int64_t warmup,
                         const char* flag);

// The correctors that need no prior (none, taylor:O, foca); an eoc spec is a bug here.
std::unique_ptr<Corrector> make_corrector(const CorrectorSpec& spec);

struct CacheSetup {
  CachePlan plan;
  std::unique_ptr<Corrector> corrector;
  std::string corrector_name;            // none | taylor | taylor:O | eoc
  std::string prior_path, prior_sha256;  // with --prior
};

// The corrector factory: --correct (with --prior for eoc, checked against this run) -> corrector;
// --cache's plan, or without it the prior's own plan (else none). A --prior that is a gate
// calibration (files/gate_file.hpp) gives its gate and, unless --correct says otherwise, its
// corrector.
CacheSetup prepare_cache(const RunSetup& run, const CacheOptions& options);

// What the run settings table reads of a run with this cache (and VAE).
RunFacts run_facts(const RunSetup& run, const CacheSetup& cache, const VaeDecoder* vae = nullptr,
                   double vae_scale = 0.0);

}  // namespace eoc

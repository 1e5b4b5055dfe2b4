#!/usr/bin/env bash
# Builds eoc with AddressSanitizer + UndefinedBehaviorSanitizer (gcc, Debug at -O1,
# -DEOC_SANITIZE=address,undefined) in build-asan/ and runs, against that build:
#   1. the unit tests (eoc_unit_tests, the fuzz regression replay included);
#   2. a subset of the Python CLI tests (CLI_TESTS below) with EOC_BINARY=build-asan/eoc: every
#      command (sample, compare, calibrate, info, pack), every cache and corrector (none, fora:N,
#      mask:, --warmup, taylor, taylor:O, eoc in the scale/extrapolate/taylor forms, local and
#      trajectory judgment, the order search),
#      --out-dir with a resume after SIGKILL, shards, signals, the NaN replay and error paths;
#      the flow samplers (euler, heun, sde, sde-heun) and calibration on a velocity model.
# Any ASan report (LeakSanitizer at exit included) or UBSan report fails the run: the unit tests
# stop on it; an eoc process aborts on it, which fails its test (see below).
#
#   scripts/dev/test_sanitized.sh [ARGS for eoc_unit_tests, e.g. --gtest_filter=Prior.*]
#
# Environment: EOC_ASAN_BUILD (default build-asan), JOBS, EOC_PYTHON (default /usr/bin/python3),
# EOC_SANITIZED_CLI=0 (unit tests only), EOC_SANITIZED_UNIT=0 (CLI tests only),
# EOC_SANITIZED_TESTS (pytest node ids, space-separated, instead of CLI_TESTS),
# EOC_SANITIZED_JOBS (pytest processes for the CLI tests, default the core count),
# ASAN_OPTIONS / UBSAN_OPTIONS (replace the defaults below).
#
# allocator_may_return_null=1 makes an absurd allocation (a corrupt header asking for
# terabytes) fail the way it does in a normal build, as a C++ exception, instead of an ASan
# abort. LibTorch is linked as it is (not instrumented).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${EOC_ASAN_BUILD:-$ROOT/build-asan}"
PYTHON="${EOC_PYTHON:-/usr/bin/python3}"

# The CLI tests run against the sanitized build, chosen to reach every command, cache schedule,
# corrector and output path at least once, mostly with the tiny random models of conftest.py.
CLI_TESTS=(
  # info; the launcher starting eoc-torch; eoc-torch run directly re-executing itself; help
  tests/python/cli/test_cli_sampling.py::test_info_builtin
  tests/python/cli/test_cli_sampling.py::test_version_and_help
  tests/python/cli/test_runtime_env.py::test_launcher_sets_the_defaults
  tests/python/cli/test_runtime_env.py::test_the_program_run_directly_sets_them_itself
  # sample against the reference sampler: DDPM with learned and fixed variance, DDIM with eta
  # and "ddimN" respacing, guidance on 3 or all channels, official and per-image seed streams
  tests/python/cli/test_cli_sampling.py::test_parity_latent_cfg_channels
  tests/python/cli/test_cli_sampling.py::test_parity_pixel_ddpm_fixed_variance_random_labels
  tests/python/cli/test_cli_sampling.py::test_parity_latent_ddim_respacing_eta
  tests/python/cli/test_cli_sampling.py::test_per_image_parity_random_labels
  tests/python/cli/test_cli_sampling.py::test_block_loop_equals_whole_forward_bitwise
  # caches: none, mask: (an all-compute mask and a shipped one), fora:N with plain reuse and
  # taylor, the cache's memory accounting, --report. (Left out for time: the fmnist variants of
  # the first two, same code as the latent ones; the bf16 test, by far the slowest here.)
  'tests/python/cli/test_cli_sampling.py::test_cache_none_and_all_compute_mask_are_bitwise_plain[latent]'
  'tests/python/cli/test_cli_sampling.py::test_fora3_matches_reference[latent-none]'
  'tests/python/cli/test_cli_sampling.py::test_fora3_matches_reference[latent-taylor]'
  # TaylorSeer's orders (the fused update's series terms) and --warmup
  'tests/python/cli/test_cli_sampling.py::test_taylor_orders_match_reference[latent-taylor:4]'
  tests/python/cli/test_cli_sampling.py::test_warmup_computes_the_first_steps
  tests/python/cli/test_cli_sampling.py::test_shipped_mask_ddim20_50_report
  tests/python/cli/test_cli_sampling.py::test_cache_memory_is_one_tensor_per_block_and_branch
  # compare
  tests/python/cli/test_cli_sampling.py::test_compare_json
  # calibrate and sample --correct eoc: the three forms (local judgment), trajectory judgment,
  # priors refused on load
  tests/python/cli/test_eoc.py::test_each_form_matches_the_reference
  tests/python/cli/test_eoc.py::test_trajectory_judgment_never_worse_on_its_judge_samples
  # the trajectory judgment's forecast order search (eoc's default for the taylor form)
  'tests/python/cli/test_calibration_reference.py::test_calibration_matches_the_reference[cfg-taylor-trajectory-None]'
  tests/python/cli/test_reliability.py::test_broken_prior
  # error paths: bad input, NaN outputs and their replay, signals
  tests/python/cli/test_cli_sampling.py::test_bad_input_fails_cleanly
  tests/python/cli/test_cli_sampling.py::test_error_during_sampling_leaves_no_outputs
  tests/python/cli/test_cli_sampling.py::test_error_during_sampling_keeps_only_complete_out_dir_images
  tests/python/cli/test_reliability.py::test_nan_names_step_and_block
  tests/python/cli/test_reliability.py::test_sigterm_during_calibrate_writes_no_prior
  tests/python/cli/test_reliability.py::test_sigint_during_sample_writes_no_grid
  # --out-dir, pack, shards (environment and flag), resume after SIGKILL, records, VAE, configs
  tests/python/cli/test_fid_runs.py::test_pack_is_numpy_npz_with_settings
  tests/python/cli/test_fid_runs.py::test_three_shards_pack_equals_one_process
  tests/python/cli/test_fid_runs.py::test_shard_flag_wins_over_environment
  tests/python/cli/test_fid_runs.py::test_sigkill_midway_then_rerun_completes
  tests/python/cli/test_fid_runs.py::test_resume_refuses_changed_settings
  tests/python/cli/test_fid_runs.py::test_pack_refuses_missing_index_and_mismatching_records
  tests/python/cli/test_fid_runs.py::test_sample_with_vae_decodes_latents
  tests/python/cli/test_fid_runs.py::test_config_drives_a_real_run
  # flow models (contract 2, velocity): SiT's ODE and SDE samplers with guidance and an interval,
  # the order search and the budget search over their evaluations
  'tests/python/cli/test_flow_sampling.py::test_parity_latent_sit[4.0-sde-heun]'
  'tests/python/cli/test_flow_sampling.py::test_parity_guidance_interval[heun]'
  tests/python/cli/test_flow_sampling.py::test_taylor_and_eoc_calibration_on_a_velocity_model
)

# Debug (assertions, -g) at -O1, the level ASan's documentation recommends: at -O0, eoc's own
# unoptimised loops dominate the CLI tests (above all the SHA-256 of the 33 MB built-in model in
# every process that loads it).
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-g -O1" \
  -DEOC_SANITIZE=address,undefined \
  >"$BUILD/configure.log" || { cat "$BUILD/configure.log" >&2; exit 2; }
# The default target: eoc_unit_tests, eoc and eoc-torch, built in parallel (several --target
# names would be built one after the other).
cmake --build "$BUILD" -j"${JOBS:-$(nproc)}"

ASAN_DEFAULTS="detect_leaks=1:allocator_may_return_null=1:strict_string_checks=1"
export ASAN_OPTIONS="${ASAN_OPTIONS:-$ASAN_DEFAULTS}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$ROOT"

if [ "${EOC_SANITIZED_UNIT:-1}" != 0 ]; then
  echo "== sanitized unit tests ($BUILD/tests/eoc_unit_tests)"
  "$BUILD/tests/eoc_unit_tests" "$@"
fi

if [ "${EOC_SANITIZED_CLI:-1}" = 0 ]; then
  exit 0
fi

if [ -n "${EOC_SANITIZED_TESTS:-}" ]; then
  read -r -a CLI_TESTS <<<"$EOC_SANITIZED_TESTS"
fi
# The node ids run in EOC_SANITIZED_JOBS pytest processes side by side (default: the core
# count), a module's ids all in one process so that its module fixtures are made once (e.g.
# test_fid_runs.py's 200-image run): the modules, most ids first, each go to the process with the
# fewest ids so far. Every process writes its own log, printed whole when it has finished; the
# run fails if any of them failed. The tests share no file or port: each works in its own
# temporary folders (pytest's tmp_path), as under ctest -j.
jobs_n="${EOC_SANITIZED_JOBS:-$(nproc)}"
declare -A module_ids=() module_count=()
for id in "${CLI_TESTS[@]}"; do
  module="${id%%::*}"
  module_ids[$module]+="$id"$'\n'
  module_count[$module]=$((${module_count[$module]:-0} + 1))
done
groups=() load=()
for ((p = 0; p < jobs_n; p++)); do groups[p]=""; load[p]=0; done
while read -r _ module; do
  best=0
  for ((p = 1; p < jobs_n; p++)); do
    if ((load[p] < load[best])); then best=$p; fi
  done
  groups[best]+="${module_ids[$module]}"
  load[best]=$((load[best] + module_count[$module]))
done < <(for m in "${!module_count[@]}"; do echo "${module_count[$m]} $m"; done | sort -k1,1nr -k2)

echo "== sanitized CLI tests (EOC_BINARY=$BUILD/eoc, ${#CLI_TESTS[@]} test functions," \
  "${#module_count[@]} modules in up to $jobs_n pytest processes)"
# abort_on_error=1: a report kills the process with SIGABRT (exit -6), which every one of these
# tests takes for a failure (they require exit 0, 1, 130/143 or 1..127, and print stderr, where
# the report is). EOC_TEST_NO_SKIPS=1: no skip is allowed here, not even the timing ones (an
# eoc that aborted before a signal could be sent would otherwise look like "finished early").
logs="$(mktemp -d)"
pids=()
stop() { if ((${#pids[@]})); then kill "${pids[@]}" 2>/dev/null || true; fi; }
trap 'stop; rm -rf "$logs"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for ((p = 0; p < jobs_n; p++)); do
  [ -n "${groups[p]}" ] || continue
  mapfile -t ids <<<"${groups[p]%$'\n'}"
  EOC_BINARY="$BUILD/eoc" EOC_TEST_NO_SKIPS=1 \
    ASAN_OPTIONS="$ASAN_OPTIONS:abort_on_error=1" UBSAN_OPTIONS="$UBSAN_OPTIONS:abort_on_error=1" \
    "$PYTHON" -m pytest -q -p no:cacheprovider "${ids[@]}" >"$logs/$p.log" 2>&1 &
  pids[p]=$!
done
status=0
for p in "${!pids[@]}"; do
  rc=0
  wait "${pids[p]}" || rc=$?
  echo "== sanitized CLI tests, process $((p + 1)) (exit $rc):" \
    "$(cut -d: -f1 <<<"${groups[p]}" | sort -u | xargs -n1 basename | paste -sd' ')"
  cat "$logs/$p.log"
  if [ "$rc" != 0 ]; then status=1; fi
done
pids=()
exit "$status"

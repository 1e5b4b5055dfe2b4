"""Run-time cache gates (`eoc sample --cache fbcache:T|teacache:T|easycache:T`), decided per image,
against the independent reference scripts/testing/reference_gate.py (each image sampled alone
through the model's contract methods, with its own gate and FeatureCache):

  - parity: raw samples within parity.TOL and every image's decision string equal, for each rule
    (teacache also with a rescale polynomial), with the plain, TaylorSeer and FoCa correctors,
    the guards (warmup, max-run, max-total, fn, bn), DDIM, DDPM without guidance, and the flow
    sampler euler;
  - batch invariance: the same images at --batch-size 1, 5 and 16 give the same bytes and the
    same decisions;
  - the report's branch counts and per-image figures, recomputed from the REFERENCE's decisions;
  - a threshold of 0 computes everything;
  - bad gate specifications fail with one clear line.

Each threshold below was chosen so that the images of a run decide differently (some reuse,
some compute at the same step), and far enough from every value the rule compared with it
(MARGIN) that float rounding cannot flip a decision: the test checks both on the reference."""
import json

import numpy as np
import pytest

import make_random_dit
import reference_gate as rg
from parity import TOL, assert_close

THREADS = ["--threads", "1"]
MARGIN = 1e-3  # least relative distance of a compared value from its threshold
SEED = 7
IMAGES = 6

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sit_latent(tmp_path_factory):
    """A small random SiT (velocity prediction, sigma half) for the euler sampler."""
    ts = str(tmp_path_factory.mktemp("gate_sit") / "sit_latent.ts")
    sd = make_random_dit.family_state_dict("sit", depth=3, hidden=64, patch=2, input_size=16,
                                           in_channels=4, num_classes=10, learn_sigma=True,
                                           seed=20)
    make_random_dit.export_fixture(sd, ts, 4, family="sit", name="sit_latent")
    return ts


@pytest.fixture(scope="module")
def models(builtin_model, latent_dit, pixel_dit, sit_latent):
    """name -> (TorchScript path, depth)."""
    return {"fmnist": (builtin_model, 12), "latent": (latent_dit["ts"], latent_dit["depth"]),
            "pixel": (pixel_dit["ts"], pixel_dit["depth"]), "sit_latent": (sit_latent, 3)}


# id -> (model, sampler, steps, cfg scale, gate, corrector)
CASES = {
    "teacache": ("fmnist", "ddim", 12, 1.5, "teacache:0.51", "none"),
    "fbcache": ("fmnist", "ddim", 12, 1.5, "fbcache:0.07,fn=1", "none"),
    "easycache": ("fmnist", "ddim", 12, 1.5, "easycache:0.3", "none"),
    "teacache-taylor2": ("fmnist", "ddim", 12, 1.5, "teacache:0.48", "taylor:2"),
    # TeaCache's rescale (its value is negative for d in about (0.05, 0.075), where it adds
    # nothing: accumulating it as is would reuse more)
    "teacache-poly": ("fmnist", "ddim", 12, 1.5, "teacache:0.1,poly=100/0/20/-2.5/0.07", "none"),
    "easycache-foca": ("fmnist", "ddim", 12, 1.5, "easycache:0.3", "foca"),
    # fn = 2 and bn = 3 always computed, warm-up 3 steps, at most 3 reused in a row
    "fbcache-guards": ("fmnist", "ddim", 12, 1.5, "fbcache:0.16,fn=2,bn=3,warmup=3,max-run=3",
                       "none"),
    # one gated block of 3, max-run binding
    "fbcache-bn-latent": ("latent", "ddim", 12, 4.0, "fbcache:0.5,bn=1,warmup=2,max-run=2",
                          "none"),
    # no guidance (one row per image), DDPM's per-step noise, max-total binding
    "teacache-ddpm-nocfg": ("pixel", "ddpm", 10, 1.0, "teacache:0.2,max-total=3", "none"),
    # the flow sampler, with third-order TaylorSeer and FoCa
    "euler-teacache-taylor3": ("sit_latent", "euler", 13, 4.0, "teacache:0.2", "taylor:3"),
    "euler-fbcache-foca": ("sit_latent", "euler", 13, 4.0, "fbcache:0.5", "foca"),
}


def eoc_flags(model, sampler, steps, cfg, gate, correct, num_samples, batch_size):
    return ["-q", "sample"] + THREADS + [
        "--model", model, "--sampler", sampler, "--steps", steps, "--cfg-scale", cfg,
        "--num-samples", num_samples, "--batch-size", batch_size, "--seed", SEED,
        "--seed-mode", "per-image", "--classes", "random", "--cache", gate, "--correct", correct]


def eoc_sample(run_eoc, folder, name, flags):
    """-> (raw bytes, samples, report) of `eoc FLAGS --out-raw --report` in folder."""
    raw, report = folder / f"{name}.npy", folder / f"{name}.json"
    run_eoc(flags + ["--out-raw", raw, "--report", report], folder)
    return raw.read_bytes(), np.load(str(raw)), json.loads(report.read_text())


def decisions_of(report):
    gate = report["cache_stats"]["gate"]
    assert gate["per_image_listed"] == gate["images"] == len(gate["per_image"])
    return [p["decisions"] for p in gate["per_image"]]


_RUNS = {}


@pytest.fixture(scope="module")
def case_run(run_eoc, models, tmp_path_factory):
    """-> get(case id) = dict(eoc=samples, report=..., ref=samples, decisions=[...],
    signals=[...], depth=...): eoc's run (one batch of IMAGES) and the reference's, memoised."""
    folder = tmp_path_factory.mktemp("gate_runs")

    def get(case):
        if case not in _RUNS:
            name, sampler, steps, cfg, gate, correct = CASES[case]
            path, depth = models[name]
            # The random eps DiTs' samples reach ~1e3, where float32's spacing is ~6e-5: there
            # only the reference's own GEMM shapes (one image's rows per call) meet TOL, so eoc
            # runs each image alone with --batch-invariant off; the others run one batch (the
            # images that compute beside those that reuse).
            exact = name in ("latent", "pixel")
            flags = eoc_flags(path, sampler, steps, cfg, gate, correct, IMAGES,
                              1 if exact else IMAGES)
            _, got, report = eoc_sample(run_eoc, folder, case, flags + (
                ["--batch-invariant", "off"] if exact else []))
            want, decisions, signals = rg.sample(path, gate, correct, sampler, steps,
                                                 cfg_scale=cfg, classes="random",
                                                 num_samples=IMAGES, seed=SEED)
            _RUNS[case] = dict(eoc=got, report=report, ref=want.numpy(), decisions=decisions,
                               signals=signals, depth=depth, spec=rg.Spec.parse(gate))
        return _RUNS[case]
    return get


def check_discriminating(decisions, signals, threshold):
    """The run is a real test of the decisions: some step is reused by some image and computed
    by another, and no compared value lies within MARGIN of the threshold."""
    assert any("r" in d for d in decisions), decisions
    assert len(set(decisions)) >= 2, f"every image decided alike: {decisions}"
    values = [v for s in signals for _, v in s]
    assert values
    closest = min(abs(v - threshold) / threshold for v in values)
    assert closest > MARGIN, (f"a compared value lies within {closest:.2g} of the threshold "
                              f"{threshold}: choose another threshold")


# --------------------------------------------------------------------------------------------
# Parity with the reference
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_gate_parity(case_run, case):
    """eoc's samples and each image's decisions equal the reference's."""
    r = case_run(case)
    check_discriminating(r["decisions"], r["signals"], r["spec"].threshold)
    assert decisions_of(r["report"]) == r["decisions"]
    assert_close(r["eoc"], r["ref"])


@pytest.mark.parametrize("case", list(CASES))
def test_report_counts_follow_reference_decisions(case_run, case):
    """The report's per-step branch counts (image-branches), per-image computed fractions and
    reused steps, recomputed from the reference's decision strings: an image computes its
    ungated blocks' 2 branches at every step and the gated blocks' at its 'c' steps."""
    r = case_run(case)
    depth, spec, decisions = r["depth"], r["spec"], r["decisions"]
    steps = len(decisions[0])
    gated = len(spec.gated(depth))
    assert 0 < gated < depth or spec.rule != "fbcache"
    computed, reused, fractions = rg.branch_counts(decisions, depth, spec)
    stats = r["report"]["cache_stats"]
    assert stats["steps"] == steps
    assert stats["computed_per_step"] == computed
    assert stats["reused_per_step"] == reused
    assert stats["computed_branches"] == sum(computed)
    assert stats["reused_branches"] == sum(reused)
    assert sum(computed) + sum(reused) == IMAGES * steps * depth * 2
    per_image = stats["gate"]["per_image"]
    assert [p["computed_fraction"] for p in per_image] == pytest.approx(fractions, rel=1e-12)
    assert [p["reused_steps"] for p in per_image] == [d.count("r") for d in decisions]
    assert stats["caching_level"] == pytest.approx(sum(reused) / (IMAGES * steps * depth * 2),
                                                   rel=1e-12)
    # The gate's own CPU time: one figure per batch, within the sampling phase.
    own = stats["gate"]["own_cpu_s"]
    timings = r["report"]["timings_s"]
    assert len(own["batches"]) == len(timings["batches"])
    assert own["total"] == pytest.approx(sum(own["batches"]))
    assert 0 < own["total"] < timings["sample_cpu"]


def test_threshold_zero_computes_everything(run_eoc, case_run, latent_dit, tmp_path):
    """Nothing is below a threshold of 0: every step computes every branch, eoc gives --cache
    none's bytes, and the reference the uncached reference sampler's samples."""
    import reference_sampler as rs
    path = latent_dit["ts"]
    base = eoc_flags(path, "ddim", 8, 4.0, "none", "none", 3, 3)
    plain, _, _ = eoc_sample(run_eoc, tmp_path, "plain", base[:base.index("--cache")])
    uncached = rs.sample(path, "ddim", 8, cfg_scale=4.0, classes="random", num_samples=3,
                         batch_size=1, seed=SEED, seed_mode="per-image").numpy()
    for gate in ("fbcache:0,fn=1", "teacache:0", "easycache:0"):
        flags = eoc_flags(path, "ddim", 8, 4.0, gate, "none", 3, 3)
        raw, _, report = eoc_sample(run_eoc, tmp_path, gate.split(":")[0], flags)
        assert decisions_of(report) == ["c" * 8] * 3
        assert sum(report["cache_stats"]["reused_per_step"]) == 0
        assert raw == plain
        want, decisions, _ = rg.sample(path, gate, "none", "ddim", 8, cfg_scale=4.0,
                                       classes="random", num_samples=3, seed=SEED)
        assert decisions == ["c" * 8] * 3
        assert_close(want.numpy(), uncached)
    # and the cases above are not that: their gates change the samples
    r = case_run("fbcache-bn-latent")
    assert np.abs(r["ref"] - rs.sample(path, "ddim", 12, cfg_scale=4.0, classes="random",
                                       num_samples=IMAGES, batch_size=1, seed=SEED,
                                       seed_mode="per-image").numpy()).max() > 10 * TOL


# --------------------------------------------------------------------------------------------
# Batch invariance
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["easycache-foca", "fbcache-bn-latent", "euler-teacache-taylor3"])
def test_decisions_and_bytes_independent_of_batch_size(run_eoc, models, tmp_path, case):
    """16 images at --batch-size 1, 5 (5+5+5+1) and 16: the same raw bytes and decisions, and
    the images do not all decide alike."""
    name, sampler, steps, cfg, gate, correct = CASES[case]
    path, _ = models[name]
    runs = {bs: eoc_sample(run_eoc, tmp_path, f"bs{bs}", eoc_flags(
        path, sampler, steps, cfg, gate, correct, 16, bs)) for bs in (1, 5, 16)}
    decisions = {bs: decisions_of(report) for bs, (_, _, report) in runs.items()}
    assert len(decisions[16]) == 16 and len(set(decisions[16])) >= 2, decisions[16]
    assert decisions[1] == decisions[16] and decisions[5] == decisions[16]
    assert runs[1][0] == runs[16][0] and runs[5][0] == runs[16][0]
    counts = {bs: (r["cache_stats"]["computed_per_step"], r["cache_stats"]["reused_per_step"])
              for bs, (_, _, r) in runs.items()}
    assert counts[1] == counts[16] and counts[5] == counts[16]


# --------------------------------------------------------------------------------------------
# Bad specifications
# --------------------------------------------------------------------------------------------

BAD_GATES = {
    "threshold_not_a_number": (["--cache", "teacache:abc"], ["teacache:abc", "threshold", "abc"]),
    "fn_0": (["--cache", "fbcache:0.1,fn=0"], ["fbcache", "fn >= 1"]),
    "fn_beyond_depth": (["--cache", "fbcache:0.1,fn=99"], ["fn=99", "fn + bn", "12"]),
    "unknown_key": (["--cache", "teacache:0.1,bogus=1"], ["teacache", "bogus=1"]),
    "poly_on_fbcache": (["--cache", "fbcache:0.1,poly=1/2/3/4/5"], ["poly=1/2/3/4/5",
                                                                    "teacache only"]),
    "poly_count": (["--cache", "teacache:0.1,poly=1/2/3"], ["poly=1/2/3", "3 coefficients"]),
    "poly_not_a_number": (["--cache", "teacache:0.1,poly=1/2/x/4/5"], ["'x'", "not a number"]),
    "eoc_prior": (["--cache", "teacache:0.1", "--correct", "eoc", "--prior", "any.json"],
                  ["teacache:0.1", "gate", "--correct"]),
}


@pytest.mark.parametrize("name", list(BAD_GATES))
def test_bad_gate_fails_with_one_clear_line(run_eoc, check_clean_failure, files_under,
                                            builtin_model, tmp_path, name):
    args, words = BAD_GATES[name]
    proc = run_eoc(["sample", "--model", builtin_model, "--sampler", "ddim", "--steps", 4,
                    "--num-samples", 1] + THREADS + args + ["--out-raw", tmp_path / "x.npy"],
                   tmp_path, check=False, timeout=120)
    check_clean_failure(proc)
    line = proc.stderr.strip()
    assert "--cache" in line or "gate" in line, line
    for w in words:
        assert w in line, f"{w!r} not in: {line}"
    assert files_under(tmp_path) == set()

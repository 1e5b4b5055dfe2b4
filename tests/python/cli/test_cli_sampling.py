"""End-to-end tests of the `eoc` binary: sampling parity with the independent Python reference
sampler (scripts/testing/reference_sampler.py), per-image seed streams, feature caching, error
handling of bad input, `info` and `compare`.

Every test runs the real binary (fixture `run_eoc` of conftest.py: $EOC_BINARY or build/eoc) in
a temporary folder and reads back its `--out-raw` float32 .npy or its `--report` / `--json` output."""
import functools
import json
import os
import re

import numpy as np
import pytest
import torch

import reference_sampler as rs
from parity import TOL, assert_close

# One thread for eoc and the reference: the suite shares 2 cores with other jobs, where spinning
# thread pools cost far more than they gain. eoc gives OpenBLAS its --threads count too, and a
# GEMM's rounding can depend on how OpenBLAS splits it, so the reference process does the same.
THREADS = ["--threads", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def sample_raw(run_eoc, tmp_path, args, name="out.npy"):
    """`eoc -q sample ARGS --out-raw tmp/NAME`; returns the float32 (N, C, H, W) array."""
    out = tmp_path / name
    run_eoc(["-q", "sample"] + THREADS + list(args) + ["--out-raw", out], tmp_path)
    arr = np.load(str(out))
    assert arr.dtype == np.float32 and arr.ndim == 4
    return arr


@functools.lru_cache(maxsize=None)
def load_model(path):
    model = torch.jit.load(path, map_location="cpu")
    model.eval()
    return model


_REFERENCE_RESULTS = {}


def reference(model_path, **kw):
    """The reference sampler's float32 samples as numpy (memoised: tests share runs)."""
    key = (model_path, tuple(sorted(kw.items())))
    if key not in _REFERENCE_RESULTS:
        with torch.no_grad():
            _REFERENCE_RESULTS[key] = rs.sample(load_model(model_path), **kw).numpy()
    return _REFERENCE_RESULTS[key].copy()


def cli_args(model, sampler, steps, cfg_scale, num_samples, batch_size, seed, seed_mode,
             respacing="even", eta=0.0, cfg_channels="3", classes=None):
    """The eoc flags for the same settings as reference(...) with these keyword arguments."""
    args = ["--model", model, "--sampler", sampler, "--steps", steps, "--respacing", respacing,
            "--cfg-scale", cfg_scale, "--cfg-channels", cfg_channels, "--num-samples", num_samples,
            "--batch-size", batch_size, "--seed", seed, "--seed-mode", seed_mode]
    if eta:
        args += ["--eta", eta]
    if classes is not None:
        args += ["--classes", classes]
    return args


def check_parity(run_eoc, tmp_path, model, **settings):
    got = sample_raw(run_eoc, tmp_path, cli_args(model, **settings))
    want = reference(model, **settings)
    assert_close(got, want)
    return got


# --------------------------------------------------------------------------------------------
# 1. Parity with the reference sampler (official seed stream)
# --------------------------------------------------------------------------------------------

def test_parity_fmnist_ddpm50_cfg4(run_eoc, builtin_model, tmp_path):
    """Issue acceptance: DDPM 50 steps, cfg 4, 4 images in one batch."""
    check_parity(run_eoc, tmp_path, builtin_model, sampler="ddpm", steps=50, cfg_scale=4.0,
                 num_samples=4, batch_size=4, seed=0, seed_mode="official")


def test_parity_fmnist_ddim20_cfg1p5_two_batches(run_eoc, builtin_model, tmp_path):
    """Issue acceptance: DDIM 20 steps, cfg 1.5, 4 images in batches of 2 (the official stream
    continues across batches)."""
    check_parity(run_eoc, tmp_path, builtin_model, sampler="ddim", steps=20, cfg_scale=1.5,
                 num_samples=4, batch_size=2, seed=3, seed_mode="official")


LATENT_CFG = dict(sampler="ddpm", steps=8, cfg_scale=4.0, num_samples=3, batch_size=2, seed=5,
                  seed_mode="official")


@pytest.mark.parametrize("cfg_channels", ["3", "all"])
def test_parity_latent_cfg_channels(run_eoc, latent_dit, tmp_path, cfg_channels):
    """4-channel learn_sigma model: by default only output channels 0..2 are guided."""
    check_parity(run_eoc, tmp_path, latent_dit["ts"], cfg_channels=cfg_channels, **LATENT_CFG)


def test_latent_cfg_channels_matter(latent_dit):
    """The two settings above really differ (so parity covers --cfg-channels); memoised runs."""
    a = reference(latent_dit["ts"], cfg_channels="3", **LATENT_CFG)
    b = reference(latent_dit["ts"], cfg_channels="all", **LATENT_CFG)
    assert np.abs(a - b).max() > 1e-3


def test_parity_pixel_ddpm_fixed_variance_random_labels(run_eoc, pixel_dit, tmp_path):
    """1-channel model without sigma channels (fixed-large variance), random labels drawn from
    the official stream."""
    check_parity(run_eoc, tmp_path, pixel_dit["ts"], sampler="ddpm", steps=6, cfg_scale=2.0,
                 num_samples=3, batch_size=2, seed=11, seed_mode="official", classes="random")


def test_parity_latent_ddim_respacing_eta(run_eoc, latent_dit, tmp_path):
    """IDDPM "ddimN" respacing and DDIM with eta > 0 (noise used)."""
    check_parity(run_eoc, tmp_path, latent_dit["ts"], sampler="ddim", steps=10, respacing="ddim",
                 eta=0.5, cfg_scale=1.5, num_samples=2, batch_size=2, seed=2,
                 seed_mode="official", classes="1,7")


# --------------------------------------------------------------------------------------------
# 2. Per-image seeds
# --------------------------------------------------------------------------------------------

def test_per_image_pngs_independent_of_batch_size(run_eoc, builtin_model, tmp_path):
    """10 images, default per-image seeds (and --batch-invariant auto, on for the CPU): batch 10
    and batch 3 write byte-identical PNGs and identical raw samples, which match the reference
    sampler in per-image mode."""
    common = ["--steps", 5, "--num-samples", 10, "--seed", 42] + THREADS
    dirs = {}
    raws = {}
    for bs in (10, 3):
        d = tmp_path / f"bs{bs}"
        raw = tmp_path / f"bs{bs}.npy"
        run_eoc(["-q", "sample"] + common + ["--batch-size", bs, "--out-dir", d,
                                              "--out-raw", raw], tmp_path)
        dirs[bs] = d
        raws[bs] = np.load(str(raw))
    names = sorted(n for n in os.listdir(dirs[10]) if n.endswith(".png"))
    assert names == [f"{i:06d}.png" for i in range(10)]
    assert sorted(n for n in os.listdir(dirs[3]) if n.endswith(".png")) == names
    for n in names:
        assert (dirs[10] / n).read_bytes() == (dirs[3] / n).read_bytes(), n
    assert np.array_equal(raws[10], raws[3])
    # Defaults: ddim, cfg 4, labels 0..9 (the default spread of a 10-class model). The reference
    # is not batch invariant: with 5 steps and cfg 4 its float reassociation noise is amplified to
    # ~1.5e-4 between batch sizes, so eoc's batch-invariant result (one matmul per image) is held
    # to the reference's own batch-size spread (at least TOL). Exact stream parity is checked
    # with --batch-invariant off in test_per_image_parity_random_labels.
    kw = dict(sampler="ddim", steps=5, cfg_scale=4.0, num_samples=10, seed=42,
              seed_mode="per-image")
    want = reference(builtin_model, batch_size=10, **kw)
    spread = float(np.abs(want - reference(builtin_model, batch_size=1, **kw)).max())
    assert_close(raws[10], want, tol=max(TOL, 4 * spread))


def test_per_image_parity_random_labels(run_eoc, latent_dit, tmp_path):
    """Per-image noise streams and per-image random labels (splitmix64 hash) vs the reference,
    with the same batching on both sides (--batch-invariant off), over two batches."""
    settings = dict(sampler="ddpm", steps=5, cfg_scale=4.0, num_samples=5, batch_size=2, seed=9,
                    seed_mode="per-image", classes="random")
    got = sample_raw(run_eoc, tmp_path,
                     cli_args(latent_dit["ts"], **settings) + ["--batch-invariant", "off"])
    assert_close(got, reference(latent_dit["ts"], **settings))


# --------------------------------------------------------------------------------------------
# 3. Feature caching
# --------------------------------------------------------------------------------------------

CACHE_SETTINGS = dict(sampler="ddim", steps=10, cfg_scale=1.5, num_samples=4, batch_size=4, seed=1,
                      seed_mode="official")


def _all_compute_mask(path, steps, depth):
    """A mask that reuses nothing, mixing "compute" strings and all-ones per-block entries."""
    sched = ["compute" if k % 2 == 0 else {"attn": [1] * depth, "mlp": [1] * depth}
             for k in range(steps)]
    doc = {"format": "eoc-cache-mask", "version": 1, "description": "reuses nothing",
           "steps": steps, "depth": depth, "schedule": sched}
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(params=["fmnist", "latent"])
def cache_model(request):
    if request.param == "fmnist":
        return request.getfixturevalue("builtin_model"), 12
    d = request.getfixturevalue("latent_dit")
    return d["ts"], d["depth"]


def test_cache_none_and_all_compute_mask_are_bitwise_plain(run_eoc, cache_model, tmp_path):
    model, depth = cache_model
    base = cli_args(model, **CACHE_SETTINGS)
    plain = sample_raw(run_eoc, tmp_path, base, "plain.npy")
    none = sample_raw(run_eoc, tmp_path, base + ["--cache", "none"], "none.npy")
    assert np.array_equal(plain, none)
    mask = _all_compute_mask(tmp_path / "compute.json", CACHE_SETTINGS["steps"], depth)
    masked = sample_raw(run_eoc, tmp_path, base + ["--cache", f"mask:{mask}"], "mask.npy")
    assert np.array_equal(plain, masked)


def test_block_loop_equals_whole_forward_bitwise(run_eoc, builtin_model, tmp_path):
    """The block loop (modulations once per distinct row of c, residual terms in one pass)
    gives the module's own forward bit for bit on the batch-invariant CPU export; the labels
    repeat, so the modulations are grouped in both guidance halves."""
    base = cli_args(builtin_model, sampler="ddpm", steps=4, cfg_scale=1.5, num_samples=12,
                    batch_size=12, seed=5, seed_mode="official", classes="3,3,5")
    loop = sample_raw(run_eoc, tmp_path, base, "loop.npy")
    whole = sample_raw(run_eoc, tmp_path, base + ["--whole-forward"], "whole.npy")
    assert np.array_equal(loop, whole)


@pytest.mark.parametrize("correct", ["none", "taylor"])
def test_fora3_matches_reference(run_eoc, cache_model, tmp_path, correct):
    model, _ = cache_model
    base = cli_args(model, **CACHE_SETTINGS)
    got = sample_raw(run_eoc, tmp_path, base + ["--cache", "fora:3", "--correct", correct])
    want = reference(model, cache="fora:3", correct=correct, **CACHE_SETTINGS)
    assert_close(got, want)
    # caching really happened: the result differs from uncached sampling
    plain = reference(model, **CACHE_SETTINGS)
    assert np.abs(want - plain).max() > 10 * TOL


@pytest.mark.parametrize("correct", ["taylor:2", "taylor:3", "taylor:4"])
def test_taylor_orders_match_reference(run_eoc, cache_model, tmp_path, correct):
    """TaylorSeer's forecasts of order 2-4 against the reference's own implementation. fora:2
    over 10 steps computes steps 0, 1, 3, 5, 7, 9 (uneven at first), so the reused steps 2, 4, 6
    and 8 forecast from 1, 2, 3 and 4 derivative estimates."""
    model, _ = cache_model
    base = cli_args(model, **CACHE_SETTINGS)
    got = sample_raw(run_eoc, tmp_path, base + ["--cache", "fora:2", "--correct", correct])
    want = reference(model, cache="fora:2", correct=correct, **CACHE_SETTINGS)
    assert_close(got, want)
    # The order matters: each differs from the first-order forecast.
    first = reference(model, cache="fora:2", correct="taylor", **CACHE_SETTINGS)
    assert np.abs(want - first).max() > 10 * TOL


@pytest.mark.parametrize("cache", ["fora:2", "fora:3"])
def test_foca_matches_reference(run_eoc, cache_model, tmp_path, cache):
    """FoCa's recursive forecast (C++: one step at a time) against the reference's closed form
    of the recursion; fora:2 over 10 steps computes 0, 1, 3, 5, 7, 9 (so the value before r is
    once computed, then a forecast), fora:3 reuses two steps in a row."""
    model, _ = cache_model
    base = cli_args(model, **CACHE_SETTINGS)
    got = sample_raw(run_eoc, tmp_path, base + ["--cache", cache, "--correct", "foca"])
    want = reference(model, cache=cache, correct="foca", **CACHE_SETTINGS)
    assert_close(got, want)
    first = reference(model, cache=cache, correct="taylor", **CACHE_SETTINGS)
    assert np.abs(want - first).max() > 10 * TOL


def test_taylor_1_is_taylor(run_eoc, builtin_model, tmp_path):
    """`taylor:1` is today's `taylor`, bit for bit, and the run records name it the same."""
    base = cli_args(builtin_model, **CACHE_SETTINGS) + ["--cache", "fora:3"]
    one = sample_raw(run_eoc, tmp_path, base + ["--correct", "taylor:1", "--report", tmp_path / "r1.json"],
                     "one.npy")
    plain = sample_raw(run_eoc, tmp_path, base + ["--correct", "taylor", "--report", tmp_path / "r.json"],
                       "taylor.npy")
    assert np.array_equal(one, plain)
    names = [json.loads((tmp_path / r).read_text())["settings"]["cache"]["correct"] for r in ("r1.json", "r.json")]
    assert names == ["taylor", "taylor"]


def test_warmup_computes_the_first_steps(run_eoc, builtin_model, tmp_path):
    """--warmup K computes every branch of steps 0..K-1 whatever the plan says, and says so in
    the plan's name; later steps follow the plan."""
    report = tmp_path / "r.json"
    base = cli_args(builtin_model, **CACHE_SETTINGS) + ["--cache", "fora:2", "--correct", "taylor:2"]
    sample_raw(run_eoc, tmp_path, base + ["--warmup", 4, "--report", report])
    r = json.loads(report.read_text())
    assert r["settings"]["cache"]["spec"] == "fora:2+warmup:4"
    reused = r["cache_stats"]["reused_per_step"]
    assert reused[:4] == [0, 0, 0, 0] and reused[4] > 0 and reused[6] > 0
    proc = run_eoc(["sample"] + base + ["--warmup", 11, "--out-raw", tmp_path / "x.npy"],
                   tmp_path, check=False)
    assert proc.returncode == 1 and "--warmup 11 is out of range (expected 0..10" in proc.stderr


def test_shipped_mask_ddim20_50_report(run_eoc, builtin_model, repo_root, tmp_path):
    mask = os.path.join(repo_root, "configs", "cache", "eoc-ddim20-50.json")
    report = tmp_path / "r.json"
    run_eoc(["-q", "sample"] + THREADS + [
                "--model", builtin_model, "--sampler", "ddim", "--steps", 20,
                "--cfg-scale", 1, "--num-samples", 1, "--batch-size", 1,
                "--cache", f"mask:{mask}", "--out-raw", tmp_path / "o.npy",
                "--report", report], tmp_path)
    r = json.loads(report.read_text())
    assert r["cache_stats"]["caching_level"] == pytest.approx(0.5)
    reused = r["cache_stats"]["reused_per_step"]
    assert len(reused) == 20
    assert [v > 0 for v in reused] == [k % 2 == 1 for k in range(20)]
    assert np.isfinite(np.load(str(tmp_path / "o.npy"))).all()


def test_fora2_report_reuses_nothing_at_compute_steps(run_eoc, builtin_model, tmp_path):
    S, N = 20, 2
    report = tmp_path / "r.json"
    run_eoc(["-q", "sample"] + THREADS + [
                "--model", builtin_model, "--sampler", "ddim", "--steps", S,
                "--cfg-scale", 1, "--num-samples", 1, "--batch-size", 1,
                "--cache", f"fora:{N}", "--out-raw", tmp_path / "o.npy",
                "--report", report], tmp_path)
    stats = json.loads(report.read_text())["cache_stats"]
    reused = stats["reused_per_step"]
    assert len(reused) == S
    compute = [(S - 1 - k) == S - 1 or (S - 1 - k) % N == 0 for k in range(S)]
    assert [v == 0 for v in reused] == compute
    assert sum(compute) == 11  # 9 of 20 steps reused (docs/CACHE_MASKS.md)
    assert stats["caching_level"] == pytest.approx(9 / 20)


@pytest.mark.parametrize("cache,correct,tensors_per_entry", [
    ("none", "none", 0), ("fora:2", "none", 1), ("fora:2", "taylor", 2)])
def test_cache_memory_is_one_tensor_per_block_and_branch(run_eoc, builtin_model, tmp_path, cache,
                                                         correct, tensors_per_entry):
    """The cache holds F[r] per (block, branch) (taylor also F[r] - F[p]); uncached holds nothing."""
    report = tmp_path / "r.json"
    run_eoc(["-q", "sample"] + THREADS + [
                "--model", builtin_model, "--sampler", "ddim", "--steps", 6, "--cfg-scale", 1.5,
                "--num-samples", 3, "--batch-size", 3, "--cache", cache, "--correct", correct,
                "--out-raw", tmp_path / "o.npy", "--report", report], tmp_path)
    r = json.loads(report.read_text())
    depth, tokens, hidden = 12, 64, 192  # the built-in model (eoc info)
    rows = 2 * 3  # CFG doubles the batch of 3
    want = tensors_per_entry * depth * 2 * rows * tokens * hidden * 4
    assert r["memory"]["peak_cache_bytes"] == want
    assert r["cache_stats"]["peak_cache_bytes"] == want
    assert r["memory"]["peak_host_bytes"] > 0


@pytest.mark.parametrize("num_samples,batch_size", [(5, 2), (2, 2)])
def test_report_times_each_batch(run_eoc, builtin_model, tmp_path, num_samples, batch_size):
    """timings_s.batches has one time per batch, within the sampling phase; the steady rate
    counts the images after the first batch over their time, and is null for one batch."""
    report = tmp_path / "r.json"
    run_eoc(["-q", "sample"] + THREADS + [
                "--model", builtin_model, "--sampler", "ddim", "--steps", 3,
                "--num-samples", num_samples, "--batch-size", batch_size,
                "--out-raw", tmp_path / "o.npy", "--report", report], tmp_path)
    r = json.loads(report.read_text())
    batches = r["timings_s"]["batches"]
    assert len(batches) == -(-num_samples // batch_size)
    assert all(t > 0 for t in batches)
    assert sum(batches) <= r["timings_s"]["sample"] + 1e-6
    # The same per batch in CPU seconds (getrusage's microseconds), within the phase's.
    cpu = r["timings_s"]["batches_cpu"]
    assert len(cpu) == len(batches) and all(t > 0 for t in cpu)
    assert sum(cpu) <= r["timings_s"]["sample_cpu"] + 1e-5
    if len(batches) == 1:
        assert r["steady_images_per_second"] is None
    else:
        later = num_samples - batch_size
        assert r["steady_images_per_second"] == pytest.approx(later / sum(batches[1:]), rel=1e-9)

# --------------------------------------------------------------------------------------------
# 4. Bad input, info, version, help
# --------------------------------------------------------------------------------------------

# name -> extra args ({FILE}: a plain file in the test's tmp folder, {README}: the repo's README)
BAD_INPUT = {
    "steps_0": ["--steps", "0"],
    "cfg_negative": ["--cfg-scale", "-1"],
    "class_out_of_range": ["--classes", "10"],
    "cuda_unavailable": ["--device", "cuda"],
    "out_missing_dir": ["--out", "/nonexistent_dir/x.png"],
    "out_under_proc": ["--out", "/proc/x.png"],
    "out_file_as_dir": ["--out", "{FILE}/x.png"],
    "raw_file_as_dir": ["--out-raw", "{FILE}/x.npy"],
    "report_file_as_dir": ["--report", "{FILE}/r.json"],
    "out_dir_under_file": ["--out-dir", "{FILE}/imgs"],
    "model_missing": ["--model", "/nonexistent.ts"],
    "model_not_torchscript": ["--model", "{README}"],
    "fora_0": ["--cache", "fora:0"],
    "mask_missing": ["--cache", "mask:/nonexistent.json"],
    "sampler_foo": ["--sampler", "foo"],
    "seed_mode_foo": ["--seed-mode", "foo"],
}


@pytest.mark.parametrize("name", sorted(BAD_INPUT))
def test_bad_input_fails_cleanly(run_eoc, check_clean_failure, files_under, repo_root, tmp_path,
                                 name):
    (tmp_path / "plain_file").write_text("not a folder\n")
    subs = {"{FILE}": str(tmp_path / "plain_file"),
            "{README}": os.path.join(repo_root, "README.md")}
    extra = []
    for a in BAD_INPUT[name]:
        for k, v in subs.items():
            a = a.replace(k, v)
        extra.append(a)
    flags = {extra[i] for i in range(0, len(extra), 2)}
    outputs = []
    for flag, path in (("--out", "grid.png"), ("--out-raw", "raw.npy"), ("--report", "r.json")):
        if flag not in flags:
            outputs += [flag, str(tmp_path / path)]
    before = files_under(tmp_path)
    args = ["sample", "--num-samples", 2, "--batch-size", 2] + THREADS
    if "--steps" not in flags:
        args += ["--steps", 2]
    proc = run_eoc(args + extra + outputs, tmp_path, check=False, timeout=120)
    check_clean_failure(proc)
    assert files_under(tmp_path) == before, "files left behind"


@pytest.fixture(scope="module")
def nan_dit(random_dit_variant):
    """The pixel fixture with a NaN label embedding for class 1: batches with label 1 produce NaN
    model outputs, i.e. an error that only appears during sampling."""
    def nan_label1(sd):
        sd["y_embedder.embedding_table.weight"][1] = float("nan")
    return random_dit_variant("pixel", "nan_label1", nan_label1)


# image 0 (label 0) is fine, image 1 (label 1, second batch) fails the NaN check
NAN_RUN = ["-q", "sample", "--steps", 2, "--cfg-scale", 1, "--classes", "0,1", "--num-samples", 2,
           "--batch-size", 1] + THREADS


def test_error_during_sampling_leaves_no_outputs(run_eoc, check_clean_failure, files_under,
                                                 nan_dit, tmp_path):
    proc = run_eoc(NAN_RUN + ["--model", nan_dit, "--out", tmp_path / "g.png",
                              "--out-raw", tmp_path / "r.npy", "--report", tmp_path / "r.json"],
                   tmp_path, check=False, timeout=120)
    check_clean_failure(proc)
    # class 1's embedding feeds every modulation: the first branch added is already non-finite
    assert "NaN or Inf at sampling step 0" in proc.stderr
    assert "after block 0's attn branch" in proc.stderr
    assert files_under(tmp_path) == set(), "files left behind"


def test_error_during_sampling_keeps_only_complete_out_dir_images(run_eoc, check_clean_failure,
                                                                  files_under, nan_dit, tmp_path):
    """--out-dir streams finished images (a 50,000-image run resumes from them): a failure in a
    later batch keeps the finished batch's PNG, complete, and leaves nothing partial."""
    from PIL import Image
    proc = run_eoc(NAN_RUN + ["--model", nan_dit, "--out-dir", tmp_path / "imgs"],
                   tmp_path, check=False, timeout=120)
    check_clean_failure(proc)
    files = files_under(tmp_path)
    assert not [f for f in files if ".tmp" in f], f"temporary files left behind: {files}"
    pngs = sorted(f for f in files if f.endswith(".png"))
    assert pngs == [os.path.join("imgs", "000000.png")]  # image 1 (label 1) hit the NaN
    with Image.open(str(tmp_path / pngs[0])) as im:
        im.load()  # decodes completely


def test_out_into_read_only_dir(run_eoc, check_clean_failure, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(str(ro), os.W_OK):
            pytest.skip("running as root: permissions are not enforced (see the file-as-folder "
                        "and /proc cases)")
        proc = run_eoc(["sample", "--steps", 2, "--num-samples", 1, "--out", ro / "x.png"],
                       tmp_path, check=False, timeout=120)
        check_clean_failure(proc)
        assert os.listdir(str(ro)) == []
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("args", [["--steps", "abc"], ["--no-such-flag"], ["--num-samples"]],
                         ids=["not_a_number", "unknown_flag", "missing_value"])
def test_parse_errors_are_short(run_eoc, check_clean_failure, files_under, tmp_path, args):
    proc = run_eoc(["sample"] + args, tmp_path, check=False, timeout=60)
    check_clean_failure(proc, eoc_error=False)
    assert files_under(tmp_path) == set()


def test_info_builtin(run_eoc, tmp_path):
    proc = run_eoc(["info"], tmp_path)
    text = proc.stdout
    for pattern in (r"^depth\s+12$", r"^hidden size\s+192$", r"^patch size\s+4$",
                    r"^classes\s+10\b", r"^learn_sigma\s+yes\b"):
        assert re.search(pattern, text, re.M), (pattern, text)
    j = json.loads(run_eoc(["info", "--json"], tmp_path).stdout)
    assert (j["depth"], j["hidden_size"], j["patch_size"], j["num_classes"], j["learn_sigma"]) == \
        (12, 192, 4, 10, True)


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["sample", "--help"]],
                         ids=["version", "help", "sample_help"])
def test_version_and_help(run_eoc, tmp_path, args):
    proc = run_eoc(args, tmp_path, timeout=60)
    assert proc.stdout.strip()
    if args == ["--version"]:
        assert re.match(r"^eoc \d+\.\d+\.\d+", proc.stdout)
    if args == ["sample", "--help"]:
        for flag in ("--cache", "--seed-mode", "--out-raw", "--cfg-channels"):
            assert flag in proc.stdout


# --------------------------------------------------------------------------------------------
# 5. compare
# --------------------------------------------------------------------------------------------

def test_compare_json(run_eoc, tmp_path):
    # --batch-invariant off: the default per-image seeds would otherwise run one matmul per image
    common = ["-q", "compare", "--json", "--num-samples", 4, "--steps", 10,
              "--batch-invariant", "off"] + THREADS
    j = json.loads(run_eoc(common + ["--cache", "fora:3", "--correct", "taylor"],
                           tmp_path).stdout)
    for key in ("mse", "psnr_db", "ssim", "speedup"):
        assert key in j, key
    assert j["mse"] > 0 and j["speedup"] > 0
    assert isinstance(j["psnr_db"], (int, float)) and np.isfinite(j["psnr_db"])
    j0 = json.loads(run_eoc(common + ["--cache", "none"], tmp_path).stdout)
    assert j0["mse"] == 0

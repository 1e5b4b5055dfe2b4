"""Gate calibration (`eoc calibrate --gate RULE --target F`, docs/EOC.md "Run-time gates"): the
eoc-gate file holds the threshold whose computed fraction on the judge images is nearest F, the
table of every threshold tried, and the settings it assumes; `eoc sample --prior GATE.json`
samples with that gate and its corrector without a threshold, reproducing the calibration's
fraction on the judge images; refusals name the flag. teacache's rescale polynomial is fitted
by default (`--rescale fit`) on the judge images' uncached trajectories, checked against
np.polyfit on the same pairs measured by the independent reference (scripts/testing/
reference_gate.py); `--rescale none` writes the file without it. On a tiny random DiT (DDIM) and
a tiny random SiT (Euler), one thread: the search is exercised, not its quality
(docs/BENCHMARKS.md)."""
import json

import make_random_dit
import numpy as np
import pytest
import reference_gate as rg

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 10
THREADS = ["--threads", "1"]
DDIM = ["--sampler", "ddim", "--steps", str(STEPS), "--cfg-scale", "1.5"]
EULER = ["--sampler", "euler", "--steps", str(STEPS + 1), "--cfg-scale", "1.5"]
CALIB = ["--num-samples", "4", "--judge-samples", "4", "--seed", "1000"]
PER_IMAGE = ["--seed-mode", "per-image", "--classes", "random"]


@pytest.fixture(scope="module")
def sit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate_sit")
    sd = make_random_dit.family_state_dict("sit", depth=3, hidden=32, patch=4, input_size=16,
                                           in_channels=1, num_classes=5, learn_sigma=False,
                                           seed=31)
    ts = str(folder / "sit.ts")
    make_random_dit.export_fixture(sd, ts, 2, family="sit", name="gate_sit")
    return ts


@pytest.fixture(scope="module")
def calibrated(run_eoc, random_dits, sit, tmp_path_factory):
    """(kind) -> (gate document, path, calibrate's stderr, the sampling flags)."""
    out = {}
    cases = {
        # per-image seeds and random classes: the reference can sample the same judge images
        "dit-teacache": (random_dits["pixel"]["ts"], DDIM + PER_IMAGE, ["--gate", "teacache"],
                         0.5),
        "dit-teacache-raw": (random_dits["pixel"]["ts"], DDIM + PER_IMAGE,
                             ["--gate", "teacache", "--rescale", "none"], 0.5),
        "dit-fbcache": (random_dits["pixel"]["ts"], DDIM,
                        ["--gate", "fbcache,fn=1,max-run=3", "--correct", "taylor:2"], 0.8),
        "sit-easycache": (sit, EULER, ["--gate", "easycache", "--correct", "foca"], 0.5),
    }
    for kind, (model, flags, gate, target) in cases.items():
        work = tmp_path_factory.mktemp(kind)
        path = work / "gate.json"
        proc = run_eoc(["calibrate", "--model", model, *THREADS, *flags, *CALIB, *gate,
                        "--target", target, "--out", path], work, timeout=600)
        out[kind] = (json.loads(path.read_text()), path, proc.stderr, ["--model", model, *flags],
                     target)
    return out


KINDS = ["dit-teacache", "dit-teacache-raw", "dit-fbcache", "sit-easycache"]


@pytest.mark.parametrize("kind", KINDS)
def test_gate_file_holds_the_nearest_threshold_and_every_trial(calibrated, kind):
    doc, _, stderr, _, target = calibrated[kind]
    assert doc["format"] == "eoc-gate" and doc["version"] == 1
    cal = doc["calibration"]
    trials = cal["trials"]
    assert [t["threshold"] for t in trials] == sorted(t["threshold"] for t in trials)
    chosen = cal["chosen"]
    assert chosen in trials
    # The nearest to the target of all trials; within the tolerance when the search converged
    # (a judge set of 4 images moves in steps of 1/40 of a step's branches).
    gaps = [abs(t["computed"] - target) for t in trials]
    assert abs(chosen["computed"] - target) == min(gaps)
    assert abs(chosen["computed"] - target) <= 0.05
    # The fraction falls as the threshold grows, from everything computed at small thresholds.
    assert trials[0]["computed"] > trials[-1]["computed"]
    assert doc["gate"].split(":")[0] == kind.split("-")[1]
    # Only a fitted teacache has a rescale: in its gate and in the calibration record.
    fitted = kind == "dit-teacache"
    assert (",poly=" in doc["gate"]) == fitted and ("rescale" in cal) == fitted
    assert ("rescaled by the fitted polynomial" in stderr) == fitted
    assert float(doc["gate"].split(":")[1].split(",")[0]) == chosen["threshold"]
    assert doc["assumes"]["steps"] and doc["assumes"]["cache"]["spec"] == doc["gate"]
    assert "threshold -> computed fraction -> MSE" in stderr and "<- chosen" in stderr


def test_the_gate_keeps_its_guards_and_corrector(calibrated):
    doc = calibrated["dit-fbcache"][0]
    assert doc["gate"].startswith("fbcache:") and "fn=1" in doc["gate"] and "max-run=3" in doc["gate"]
    assert doc["correct"] == {"corrector": "taylor", "order": 2}
    assert calibrated["sit-easycache"][0]["correct"]["corrector"] == "foca"


@pytest.mark.parametrize("kind", KINDS)
def test_sample_with_the_gate_file_reproduces_the_calibration(run_eoc, calibrated, kind, tmp_path):
    doc, path, _, flags, _ = calibrated[kind]
    # The judge images are the last --judge-samples of --num-samples at the calibration's seed:
    # here all 4 of seed 1000.
    report = tmp_path / "r.json"
    run_eoc(["-q", "sample", *flags, *THREADS, "--prior", path, "--num-samples", 4, "--seed", 1000,
             "--out-raw", tmp_path / "g.npy", "--report", report], tmp_path)
    stats = json.loads(report.read_text())["cache_stats"]
    fractions = [p["computed_fraction"] for p in stats["gate"]["per_image"]]
    assert np.mean(fractions) == pytest.approx(doc["calibration"]["chosen"]["computed"], abs=1e-12)
    assert 1 - stats["caching_level"] == pytest.approx(np.mean(fractions), abs=1e-12)
    # The same gate given by hand makes the same images: the file adds nothing but the threshold.
    corr = doc["correct"]
    correct = corr["corrector"] + (f":{corr['order']}" if corr["corrector"] == "taylor" else "")
    run_eoc(["-q", "sample", *flags, *THREADS, "--cache", doc["gate"], "--correct", correct,
             "--num-samples", 4, "--seed", 1000, "--out-raw", tmp_path / "h.npy"], tmp_path)
    assert np.array_equal(np.load(tmp_path / "g.npy"), np.load(tmp_path / "h.npy"))


@pytest.mark.parametrize("args, words", [
    (["--gate", "teacache"], "--gate and --target go together"),
    (["--target", "0.4"], "--gate and --target go together"),
    (["--gate", "teacache", "--target", "1.5"], "--target 1.5 is out of range"),
    (["--gate", "bogus", "--target", "0.4"], "--gate 'bogus' is not one of"),
    (["--gate", "fbcache,fn=0", "--target", "0.4"], "fn >= 1"),
    (["--gate", "teacache", "--target", "0.4", "--budget", "0.4"], "without --budget and --cache"),
    (["--gate", "teacache", "--target", "0.4", "--correct", "eoc"], "fixed schedule"),
    (["--gate", "fbcache", "--target", "0.4", "--rescale", "fit"], "teacache's (got --gate fbcache)"),
    (["--gate", "teacache,poly=1/2/3/4/5", "--target", "0.4", "--rescale", "none"],
     "already gives the rescale"),
    (["--gate", "easycache,poly=1/2/3/4/5", "--target", "0.4"], "teacache only"),
    (["--gate", "teacache", "--target", "0.4", "--rescale", "maybe"], "--rescale"),
])
def test_calibrate_gate_refusals(run_eoc, random_dits, tmp_path, args, words):
    proc = run_eoc(["calibrate", "--model", random_dits["pixel"]["ts"], *DDIM, *CALIB, *args,
                    "--out", tmp_path / "g.json"], tmp_path, check=False)
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and words in lines[0], proc.stderr


def test_sample_refuses_a_gate_file_for_another_run_or_with_a_cache(run_eoc, calibrated, tmp_path):
    _, path, _, flags, _ = calibrated["dit-teacache"]
    model = flags[1]
    other = ["--model", model, "--sampler", "ddim", "--steps", STEPS + 2, "--cfg-scale", "1.5"]
    for args, words in [
        (other, "was made for another run: steps"),
        (flags + ["--cache", "fora:3"], "it sets the cache, so give no --cache"),
        (flags + ["--correct", "eoc"], "holds no EOC prior"),
        (flags + ["--warmup", "2"], "guards it was calibrated with"),
    ]:
        proc = run_eoc(["sample", *args, "--prior", path, "--num-samples", 1,
                        "--out-raw", tmp_path / "x.npy"], tmp_path, check=False)
        assert proc.returncode != 0 and words in proc.stderr, (args, proc.stderr)


def test_the_rescale_is_fitted_to_the_uncached_trajectories(calibrated):
    """The coefficients in the gate and the record agree, and the polynomial is the least-squares
    fit of d_out on d_in over the judge images' consecutive steps, as np.polyfit gives it on the
    pairs the reference measures on the same images (each sampled alone, uncached)."""
    doc, _, stderr, flags, _ = calibrated["dit-teacache"]
    rescale = doc["calibration"]["rescale"]
    coefficients = [float(c) for c in doc["gate"].split("poly=")[1].split(",")[0].split("/")]
    assert coefficients == rescale["coefficients"] and len(coefficients) == 5
    assert rescale["fitted"] and rescale["pairs"] == 4 * (STEPS - 1)
    assert 0 < rescale["r2"] <= 1 and rescale["rms_residual"] >= 0
    assert "teacache rescale fitted on 36 step pairs" in stderr
    traces = []
    rg.sample(flags[1], "teacache:0", "none", "ddim", STEPS, cfg_scale=1.5, classes="random",
              num_samples=4, seed=1000, traces=traces)
    d_in = np.array([s for t in traces for _, s, _ in t])
    d_out = np.array([o for t in traces for _, _, o in t])
    assert len(d_in) == rescale["pairs"]
    assert [d_in.min(), d_in.max()] == pytest.approx(rescale["d_in_range"], rel=1e-4)
    assert [d_out.min(), d_out.max()] == pytest.approx(rescale["d_out_range"], rel=1e-4)
    want = np.poly1d(np.polyfit(d_in, d_out, 4))
    got = np.poly1d(coefficients)
    grid = np.linspace(d_in.min(), d_in.max(), 50)
    assert np.abs(got(grid) - want(grid)).max() <= 1e-3 * np.abs(d_out).max()
    residual = d_out - got(d_in)
    assert np.sqrt(np.mean(residual ** 2)) == pytest.approx(rescale["rms_residual"], rel=1e-3,
                                                            abs=1e-9)


def test_no_rescale_gives_the_old_file(calibrated):
    """--rescale none: the gate and the record as before the rescale existed (the same keys as
    the other rules' files); the fitted one adds only its rescale record."""
    raw, fitted = calibrated["dit-teacache-raw"][0], calibrated["dit-teacache"][0]
    assert set(raw["calibration"]) == set(calibrated["dit-fbcache"][0]["calibration"])
    assert set(fitted["calibration"]) - set(raw["calibration"]) == {"rescale"}
    assert raw["gate"].startswith("teacache:") and "poly" not in raw["gate"]

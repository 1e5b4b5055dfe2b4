"""Flow-matching DiTs (the SiT family, contract 2, prediction "velocity") end to end: eoc's
--sampler euler|heun|sde|sde-heun against the independent reference (scripts/testing/
reference_flow.py, which matches the official SiT sampling code and REPA's guidance interval bit
for bit on the same weights: docs/MODEL_CONTRACT.md says how that was checked), guided and
unguided, official and per-image seed streams; the refusals of samplers that do not fit the
model; and the caches, correctors and calibration on a velocity model."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import make_random_dit
import reference_flow as rf
from parity import TOL, assert_close

EXPORT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "scripts", "tools",
                      "export_dit.py")
THREADS = ["--threads", "1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# name -> (architecture, heads): two shapes of SiT (latent-like with the sigma half SiT-XL/2
# keeps; pixel-like without it).
SITS = {
    "sit_latent": (dict(depth=3, hidden=64, patch=2, input_size=16, in_channels=4,
                        num_classes=10, learn_sigma=True, seed=20), 4),
    "sit_pixel": (dict(depth=2, hidden=32, patch=4, input_size=16, in_channels=1,
                       num_classes=5, learn_sigma=False, seed=21), 2),
}


@pytest.fixture(scope="module")
def sits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sits")
    out = {}
    for name, (arch, heads) in SITS.items():
        sd = make_random_dit.family_state_dict("sit", **arch)
        ts = str(folder / f"{name}.ts")
        make_random_dit.export_fixture(sd, ts, heads, family="sit", name=name)
        out[name] = ts
    return out


def sample_raw(run, tmp_path, args, name="out.npy"):
    out = tmp_path / name
    run(["-q", "sample"] + THREADS + list(args) + ["--out-raw", out], tmp_path)
    return np.load(str(out))


_REF = {}


def reference(model, **kw):
    key = (model, tuple(sorted((k, str(v)) for k, v in kw.items())))
    if key not in _REF:
        with torch.no_grad():
            _REF[key] = rf.sample(model, **kw).numpy()
    return _REF[key].copy()


def flags(model, sampler, steps, cfg_scale, num_samples, batch_size, seed, seed_mode,
          cfg_channels="3", cfg_interval=None, classes=None):
    args = ["--model", model, "--sampler", sampler, "--steps", steps, "--cfg-scale", cfg_scale,
            "--cfg-channels", cfg_channels, "--num-samples", num_samples, "--batch-size",
            batch_size, "--seed", seed, "--seed-mode", seed_mode]
    if cfg_interval is not None:
        args += ["--cfg-interval", f"{cfg_interval[0]},{cfg_interval[1]}"]
    if classes is not None:
        args += ["--classes", classes]
    return args


def check(run, tmp_path, model, extra=(), **settings):
    got = sample_raw(run, tmp_path, flags(model, **settings) + list(extra))
    assert_close(got, reference(model, **settings))
    return got


# --------------------------------------------------------------------------------------------
# Parity with the reference (official seed stream: torch.manual_seed, x_T, then per SDE step
# one randn of the state's shape, CFG rows included)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["euler", "heun", "sde", "sde-heun"])
@pytest.mark.parametrize("cfg_scale", [1.0, 4.0])
def test_parity_latent_sit(run_eoc, sits, tmp_path, sampler, cfg_scale):
    check(run_eoc, tmp_path, sits["sit_latent"], sampler=sampler, steps=6, cfg_scale=cfg_scale,
          num_samples=3, batch_size=2, seed=4, seed_mode="official")


@pytest.fixture(scope="module")
def trained_sit(fmnist_sit_ckpt, tmp_path_factory):
    """The shipped trained SiT, exported as a user would (export_dit.py --family sit)."""
    ts = str(tmp_path_factory.mktemp("trained") / "fmnist-sit-p4d6.ts")
    subprocess.run([sys.executable, EXPORT, fmnist_sit_ckpt, "-o", ts, "--family", "sit",
                    "--num-heads", "4"], check=True, capture_output=True)
    return ts


@pytest.mark.parametrize("sampler, cfg_scale", [("euler", 1.5), ("heun", 1.5), ("sde", 1.5),
                                                ("sde-heun", 1.5), ("euler", 1.0)])
def test_parity_trained_sit(run_eoc, trained_sit, tmp_path, sampler, cfg_scale):
    """The acceptance's trained flow model: the same bits (within TOL) as the reference, which
    matches the official SiT code; unguided without a CFG batch, as sample_ddp.py runs it."""
    check(run_eoc, tmp_path, trained_sit, sampler=sampler, steps=8, cfg_scale=cfg_scale,
          num_samples=3, batch_size=2, seed=7, seed_mode="official")


@pytest.mark.parametrize("sampler", ["euler", "sde-heun"])
def test_parity_pixel_sit_random_labels_all_channels(run_eoc, sits, tmp_path, sampler):
    check(run_eoc, tmp_path, sits["sit_pixel"], sampler=sampler, steps=5, cfg_scale=2.5,
          cfg_channels="all", num_samples=3, batch_size=3, seed=9, seed_mode="official",
          classes="random")


@pytest.mark.parametrize("sampler", ["euler", "heun", "sde"])
def test_parity_guidance_interval(run_eoc, sits, tmp_path, sampler):
    """REPA's rule, low <= t <= high in REPA's time (1 = noise); the doubled batch is evaluated
    outside the interval too, so batch-invariant rows give the reference's bits for the
    conditional half. The ends lie between grid points here (see the next test for ends on
    them)."""
    model = sits["sit_latent"]
    got = check(run_eoc, tmp_path, model, extra=["--batch-invariant", "on"], sampler=sampler,
                steps=11, cfg_scale=4.0, cfg_interval=(0.35, 0.75), num_samples=2, batch_size=2,
                seed=1, seed_mode="official")
    everywhere = reference(model, sampler=sampler, steps=11, cfg_scale=4.0, num_samples=2,
                           batch_size=2, seed=1, seed_mode="official")
    assert np.abs(got - everywhere).max() > 1e-3  # the interval changed the images


def test_interval_ends_on_grid_points_are_inclusive(run_eoc, sits, tmp_path):
    """Steps start at REPA times 1, 0.9, ..., 0.1 (11 points): [0.3, 0.7] guides the five
    steps from 0.7 to 0.3, both ends included (REPA's float64 linspace rounds 0.3 to either side
    by device; eoc decides on the exact grid value), and the report lists them."""
    report = tmp_path / "r.json"
    sample_raw(run_eoc, tmp_path, flags(sits["sit_pixel"], sampler="heun", steps=11,
                                        cfg_scale=2.0, num_samples=1, batch_size=1, seed=0,
                                        seed_mode="official", cfg_interval=(0.3, 0.7))
               + ["--report", report])
    interval = json.loads(report.read_text())["settings"]["cfg_interval"]
    steps = [False] * 3 + [True] * 5 + [False] * 2
    assert interval["guided_evaluations"] == [g for g in steps for _ in range(2)]  # Heun: 2 each
    assert (interval["low"], interval["high"]) == (0.3, 0.7)


@pytest.mark.parametrize("sampler", ["sde", "heun"])
def test_per_image_streams_match_the_reference_and_ignore_batching(run_eoc, sits, tmp_path,
                                                                   sampler):
    model = sits["sit_latent"]
    settings = dict(sampler=sampler, steps=5, cfg_scale=1.5, num_samples=3, seed=2,
                    seed_mode="per-image")
    one = check(run_eoc, tmp_path, model, batch_size=3, **settings)
    split = sample_raw(run_eoc, tmp_path, flags(model, batch_size=1, **settings), "split.npy")
    assert np.array_equal(one, split)


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--sampler", "ddim"], "predicts velocity"),
    (["--sampler", "ddpm"], "use --sampler euler, heun, sde or sde-heun"),
    (["--sampler", "euler", "--steps", "1"], "grid points"),
    (["--sampler", "euler", "--cfg-interval", "0.7,0.3"], "--cfg-interval"),
    (["--sampler", "euler", "--cfg-scale", "1", "--cfg-interval", "0,0.7"], "--cfg-scale > 1"),
    (["--sampler", "dopri5"], "--sampler"),
])
def test_samplers_that_do_not_fit_are_refused(run_eoc, sits, tmp_path, args, message):
    proc = run_eoc(["sample", "--model", sits["sit_pixel"], "--num-samples", 1] + args,
               tmp_path, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("eoc: error:") and message in lines[-1], proc.stderr


def test_eps_model_refuses_flow_samplers(run_eoc, latent_dit, tmp_path):
    proc = run_eoc(["sample", "--model", latent_dit["ts"], "--sampler", "euler",
                         "--num-samples", 1], tmp_path, check=False)
    assert proc.returncode != 0 and "predicts eps" in proc.stderr
    proc = run_eoc(["sample", "--model", latent_dit["ts"], "--sampler", "ddim",
                         "--cfg-interval", "0,0.5", "--num-samples", 1], tmp_path, check=False)
    assert proc.returncode != 0 and "flow samplers" in proc.stderr


def test_info_names_the_prediction(run_eoc, sits, tmp_path):
    info = json.loads(run_eoc(["info", "--json", "--model", sits["sit_latent"]],
                          tmp_path).stdout)
    assert info["prediction"] == "velocity" and info["family"] == "sit"
    assert info["contract_version"] == 2


# --------------------------------------------------------------------------------------------
# Caches, correctors and calibration on a velocity model
# --------------------------------------------------------------------------------------------

HEUN = ["--sampler", "heun", "--steps", 6, "--cfg-scale", 3.0, "--num-samples", 2,
        "--batch-size", 2, "--seed", 3]


def test_cache_none_is_the_uncached_run_and_fora_reuses_evaluations(run_eoc, sits, tmp_path):
    model = sits["sit_latent"]
    plain = sample_raw(run_eoc, tmp_path, ["--model", model] + HEUN, "plain.npy")
    none = sample_raw(run_eoc, tmp_path, ["--model", model, "--cache", "none"] + HEUN, "none.npy")
    assert np.array_equal(plain, none)
    report = tmp_path / "r.json"
    cached = sample_raw(run_eoc, tmp_path, ["--model", model, "--cache", "fora:2",
                                            "--report", report] + HEUN, "fora.npy")
    r = json.loads(report.read_text())
    # Heun over 6 points: 10 evaluations, the plan's steps.
    assert r["settings"]["steps"] == 6 and r["settings"]["evaluations"] == 10
    assert len(r["cache_stats"]["computed_per_step"]) == 10
    assert 0 < np.abs(cached - plain).max() < 1.0


def test_taylor_and_eoc_calibration_on_a_velocity_model(run_eoc, sits, tmp_path):
    model = sits["sit_latent"]
    base = ["--model", model] + HEUN
    plain = sample_raw(run_eoc, tmp_path, base + ["--cache", "fora:3"], "fora.npy")
    uncached = sample_raw(run_eoc, tmp_path, base, "uncached.npy")
    run_eoc(["-q", "calibrate"] + THREADS + ["--model", model, "--sampler", "heun",
                  "--steps", 6, "--cfg-scale", 3.0, "--num-samples", 3, "--judge-samples", 2,
                  "--cache", "fora:3", "--max-order", 2, "--out", tmp_path / "p.json"], tmp_path)
    prior = json.loads((tmp_path / "p.json").read_text())
    assert prior["assumes"]["sampler"] == "heun" and prior["assumes"]["evaluations"] == 10
    assert len(prior["step_theta"]) == 10
    eoc = sample_raw(run_eoc, tmp_path, base + ["--prior", tmp_path / "p.json"], "eoc.npy")
    assert np.isfinite(eoc).all()
    taylor = sample_raw(run_eoc, tmp_path, base + ["--cache", "fora:3", "--correct", "taylor:2"],
                        "taylor.npy")
    assert not np.array_equal(taylor, plain)
    # The prior is refused for another sampler or grid, naming what differs.
    proc = run_eoc(["sample", "--model", model, "--sampler", "euler", "--steps", 11,
                         "--cfg-scale", 3.0, "--num-samples", 1, "--prior", tmp_path / "p.json"],
               tmp_path, check=False)
    assert proc.returncode != 0 and "sampler" in proc.stderr and "time_grid" in proc.stderr
    assert np.mean((uncached - plain) ** 2) > 0


def test_budget_search_on_a_velocity_model(run_eoc, sits, tmp_path):
    model = sits["sit_pixel"]
    run_eoc(["-q", "calibrate"] + THREADS + ["--model", model, "--sampler", "euler",
                  "--steps", 11, "--cfg-scale", 2.0, "--num-samples", 2, "--judge-samples", 2,
                  "--budget", 0.5, "--max-order", 2, "--out", tmp_path / "b.json"], tmp_path)
    prior = json.loads((tmp_path / "b.json").read_text())
    assert prior["assumes"]["cache"]["spec"].startswith("budget:0.5")
    got = sample_raw(run_eoc, tmp_path, ["--model", model, "--sampler", "euler", "--steps", 11,
                                         "--cfg-scale", 2.0, "--num-samples", 2, "--prior",
                                         tmp_path / "b.json"])
    assert np.isfinite(got).all()


def test_fit_forms_and_local_judgment_on_a_velocity_model(run_eoc, sits, tmp_path):
    """The forms with fitted vectors (the fit runs the uncached flow sampler beside a shadowing
    session) and the local judgment, then sampling with each prior."""
    model = sits["sit_latent"]
    base = ["--model", model, "--sampler", "sde", "--steps", 6, "--cfg-scale", 2.0]
    for form, judgment in (("scale", "local"), ("extrapolate", "trajectory")):
        prior = tmp_path / f"{form}.json"
        run_eoc(["-q", "calibrate"] + THREADS + base + [
            "--num-samples", 4, "--judge-samples", 2, "--batch-size", 2, "--cache", "fora:2",
            "--eoc-form", form, "--judgment", judgment, "--out", prior], tmp_path)
        doc = json.loads(prior.read_text())
        assert doc["form"] == form and doc["vectors"]["entries"], form
        got = sample_raw(run_eoc, tmp_path, base + ["--num-samples", 2, "--cache", "fora:2",
                                                    "--prior", prior], f"{form}.npy")
        assert np.isfinite(got).all()


def test_compare_masks_out_dir_resume_and_pack_on_a_velocity_model(run_eoc, sits, tmp_path):
    model = sits["sit_pixel"]
    base = ["--model", model, "--sampler", "euler", "--steps", 9, "--cfg-scale", 2.0]
    out = json.loads(run_eoc(["-q", "compare", "--json"] + THREADS + base + [
        "--num-samples", 2, "--cache", "fora:2", "--correct", "taylor"], tmp_path).stdout)
    # Euler over 9 grid points: 8 evaluations, the plan's steps.
    assert out["settings"]["evaluations"] == 8 and out["mse"] > 0
    mask = tmp_path / "m.json"
    mask.write_text(json.dumps({"format": "eoc-cache-mask", "version": 1, "steps": 8,
                                "schedule": ["compute", "reuse"] * 4}))
    masked = sample_raw(run_eoc, tmp_path, base + ["--num-samples", 2, "--cache", f"mask:{mask}"],
                        "mask.npy")
    whole = sample_raw(run_eoc, tmp_path, base + ["--num-samples", 3, "--batch-size", 2],
                       "whole.npy")
    folder = tmp_path / "dir"
    for shard in ("0/2", "1/2"):  # two shards, then a rerun that has nothing left to do
        run_eoc(["-q", "sample"] + THREADS + base + ["--num-samples", 3, "--out-dir", folder,
                                                          "--shard", shard], tmp_path)
    proc = run_eoc(["sample"] + THREADS + base + ["--num-samples", 3, "--out-dir", folder,
                                                       "--shard", "0/2"], tmp_path)
    assert "2 already in" in proc.stderr
    run_eoc(["-q", "pack", folder, "-o", tmp_path / "s.npz"], tmp_path)
    packed = np.load(tmp_path / "s.npz")["arr_0"]
    assert packed.shape == (3, 16, 16, 3)
    pixels = np.clip(127.5 * whole + 128.0, 0, 255).astype(np.uint8)[:, 0]
    assert np.array_equal(packed[..., 0], pixels)
    assert not np.array_equal(masked, whole[:2])


def test_bf16_flow_sampling_is_close_to_fp32(run_eoc, sits, tmp_path):
    model = sits["sit_latent"]
    base = ["--model", model, "--sampler", "heun", "--steps", 6, "--cfg-scale", 3.0,
            "--num-samples", 2]
    fp32 = sample_raw(run_eoc, tmp_path, base, "fp32.npy")
    bf16 = sample_raw(run_eoc, tmp_path, base + ["--dtype", "bf16", "--cache", "fora:2",
                                                 "--correct", "taylor:2"], "bf16.npy")
    assert np.isfinite(bf16).all()
    assert np.abs(bf16 - fp32).max() < 0.5 * np.abs(fp32).max()

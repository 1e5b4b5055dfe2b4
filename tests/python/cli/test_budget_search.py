"""Budget-searched schedules (`eoc calibrate --budget F`, docs/EOC.md): the prior carries the
plan it searched, within the budget; `eoc sample --prior P` runs it without --cache; --out-mask
writes it as a mask file that reads back to the same plan; the search's reported errors are
those of fresh trajectories of its schedule; refusals name the flag. On a tiny random DiT with
few steps and two judge images (one thread), so the search itself is exercised, not its quality
(docs/BENCHMARKS.md measures that)."""
import json
import math

import pytest

STEPS = 10
FLAGS = ["--sampler", "ddim", "--steps", str(STEPS), "--cfg-scale", "1.5", "--threads", "1"]
CALIB = ["--num-samples", "2", "--judge-samples", "2", "--seed", "1000", "--max-order", "2"]


@pytest.fixture(scope="module")
def model(random_dits):
    return random_dits["pixel"]["ts"]


@pytest.fixture(scope="module")
def budget_priors(run_eoc, model, tmp_path_factory):
    """budget -> (prior document, prior path, mask path, calibrate's stderr)."""
    out = {}
    for budget in (0.3, 0.5):
        work = tmp_path_factory.mktemp(f"budget{budget}")
        prior, mask = work / "prior.json", work / "mask.json"
        proc = run_eoc(["calibrate", "--model", model, *FLAGS, *CALIB, "--budget", budget,
                        "--out", prior, "--out-mask", mask], work, timeout=600)
        out[budget] = (json.loads(prior.read_text()), prior, mask, proc.stderr)
    return out


def computed_steps(layout):
    return [k for k, step in enumerate(layout.split("|")) if "r" not in step]


@pytest.mark.parametrize("budget", [0.3, 0.5])
def test_prior_holds_a_plan_within_the_budget(budget_priors, budget):
    doc, _, _, stderr = budget_priors[budget]
    cache = doc["assumes"]["cache"]
    assert cache["spec"] == f"budget:{budget}"
    computed = computed_steps(cache["layout"])
    # Whole steps, at most the budget's count, step 0 among them.
    assert all(set(s) <= {"c"} or set(s) <= {"r"} for s in cache["layout"].split("|"))
    assert len(computed) == math.floor(budget * STEPS + 1e-9) and computed[0] == 0
    search = doc["calibration"]["search"]
    assert search["computed_steps"] == computed
    assert doc["calibration"]["budget"] == budget
    # The judgment ran on the searched plan: a judged entry for every reused step.
    assert [j["step"] for j in doc["judged"]] == [k for k in range(STEPS) if k not in computed]
    cost = doc["calibration"]["cost"]
    assert cost["uncached_judge_steps"] == STEPS
    assert cost["judge_step_runs"] > 10 * STEPS
    assert cost["multiple_of_uncached_judge_sampling"] == pytest.approx(cost["judge_step_runs"] / STEPS)
    assert "calibration cost:" in stderr and "x sampling the judge images uncached" in stderr


@pytest.mark.parametrize("budget", [0.3, 0.5])
def test_search_errors_are_those_of_its_schedule(budget_priors, budget):
    """The refinement scores moves from mid-trajectory states (replanned sessions); the judgment
    then runs the found plan afresh at every fixed order. Both measure the same trajectory at the
    search's order, so they must agree; and the search never ends worse than a shape it tried."""
    doc, _, _, _ = budget_priors[budget]
    search = doc["calibration"]["search"]
    fresh = doc["fixed_order_errors"][search["order"] - 1]
    assert search["error"] == pytest.approx(fresh, rel=1e-6)
    assert search["error"] <= min(s["error"] for s in search["shapes"]) * (1 + 1e-9)
    assert {s["name"] for s in search["shapes"]} >= {"even", "warp:2", "warp-end:1"}
    # The even spread was tried at both orders, the others at the best order of it.
    even = [s for s in search["shapes"] if s["name"] == "even"]
    assert sorted(s["order"] for s in even) == [1, 2]


def test_sample_takes_the_plan_from_the_prior(run_eoc, model, budget_priors, tmp_path):
    doc, prior, mask, _ = budget_priors[0.3]
    report = tmp_path / "r.json"
    run_eoc(["-q", "sample", "--model", model, *FLAGS, "--num-samples", "2", "--prior", prior,
             "--out", tmp_path / "g.png", "--report", report], tmp_path, timeout=600)
    rep = json.loads(report.read_text())
    assert rep["settings"]["cache"]["spec"] == "budget:0.3"
    assert rep["settings"]["cache"]["correct"] == "eoc"
    layout_steps = doc["assumes"]["cache"]["layout"].split("|")
    assert [n > 0 for n in rep["cache_stats"]["computed_per_step"]] == ["r" not in s for s in layout_steps]
    # The mask file holds the same plan, for other correctors.
    report2 = tmp_path / "r2.json"
    run_eoc(["-q", "sample", "--model", model, *FLAGS, "--num-samples", "2",
             "--cache", f"mask:{mask}", "--correct", "taylor:2", "--out", tmp_path / "g2.png",
             "--report", report2], tmp_path, timeout=600)
    rep2 = json.loads(report2.read_text())
    assert rep2["cache_stats"]["computed_per_step"] == rep["cache_stats"]["computed_per_step"]
    # An explicit --cache must still be the prior's plan.
    proc = run_eoc(["-q", "sample", "--model", model, *FLAGS, "--num-samples", "2",
                    "--cache", "fora:3", "--prior", prior, "--out", tmp_path / "g3.png"],
                   tmp_path, check=False, timeout=600)
    assert proc.returncode != 0 and "cache.spec" in proc.stderr and "budget:0.3" in proc.stderr


def test_out_mask_of_a_fixed_plan(run_eoc, model, tmp_path):
    mask = tmp_path / "m.json"
    run_eoc(["-q", "calibrate", "--model", model, *FLAGS, *CALIB, "--cache", "fora:3",
             "--out", tmp_path / "p.json", "--out-mask", mask], tmp_path, timeout=600)
    doc = json.loads(mask.read_text())
    assert doc["format"] == "eoc-cache-mask" and doc["steps"] == STEPS
    fora = ["compute" if k == 0 or (STEPS - 1 - k) % 3 == 0 else "reuse" for k in range(STEPS)]
    assert doc["schedule"] == fora


@pytest.mark.parametrize("flags, message", [
    (["--budget", "0.4", "--cache", "fora:3"], "without --cache"),
    (["--budget", "1.2"], "out of range"),
    (["--budget", "-0.1"], "out of range"),
    (["--budget", "0.05"], "fewer than the 1 first step"),
    (["--budget", "0.2", "--warmup", "3"], "fewer than the 3 warm-up steps"),
    (["--budget", "0.4", "--eoc-form", "scale"], "--eoc-form taylor"),
    (["--budget", "0.4", "--judgment", "local", "--max-order", "1"], "--judgment trajectory"),
])
def test_budget_refusals(run_eoc, model, tmp_path, flags, message):
    proc = run_eoc(["calibrate", "--model", model, *FLAGS, "--num-samples", "3",
                    "--judge-samples", "2", *flags, "--out", tmp_path / "p.json"], tmp_path,
                   check=False, timeout=600)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "--budget" in proc.stderr
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("budget", [0.3, 0.5])
def test_search_matches_the_reference(budget_priors, model, budget, one_torch_thread):
    """scripts/testing/reference_calibration.py's budget_search, written from docs/EOC.md, runs
    every trajectory from x_T; eoc shares prefixes and scores moves from mid-trajectory states.
    Same shapes in the same order with the same errors, the same found schedule and order.
    Errors: relative 1e-3. The two implementations' features agree to float32 rounding, but the
    forecasts of order 2 divide differences of features by step distances and multiply them
    by squared distances, so on this random-weight model their final images drift apart by up
    to ~2e-4 relative in MSE at schedules that reuse long runs; another schedule, order or
    forecast moves the errors by far more."""
    import reference_calibration as rc
    doc, _, _, _ = budget_priors[budget]
    got = doc["calibration"]["search"]
    want = rc.budget_search(model, budget=budget, max_order=2, sampler="ddim", steps=STEPS,
                            cfg_scale=1.5, num_samples=2, judge_samples=2, batch_size=2,
                            seed=1000)
    assert [(s["name"], s["computed_steps"], s["order"]) for s in got["shapes"]] == \
        [(s["name"], s["computed_steps"], s["order"]) for s in want["shapes"]]
    for g, w in zip(got["shapes"], want["shapes"]):
        assert g["error"] == pytest.approx(w["error"], rel=1e-3), g["name"]
    assert got["computed_steps"] == want["computed_steps"]
    assert got["order"] == want["order"]
    assert got["error"] == pytest.approx(want["error"], rel=1e-3)
    assert got["refinement"]["passes"] == want["passes"]
    assert got["refinement"]["moves_taken"] == want["moves_taken"]


def test_foca_search_matches_the_reference(run_eoc, model, tmp_path, one_torch_thread):
    """--foca: FoCa's forecast (order 5) is scored beside orders 1 and 2 on the even shape and
    on the winner, as the reference's search does; the prior samples."""
    import reference_calibration as rc
    prior = tmp_path / "p.json"
    run_eoc(["-q", "calibrate", "--model", model, *FLAGS, *CALIB, "--budget", "0.5", "--foca",
             "--out", prior], tmp_path, timeout=600)
    got = json.loads(prior.read_text())["calibration"]["search"]
    want = rc.budget_search(model, budget=0.5, max_order=2, foca=True, sampler="ddim",
                            steps=STEPS, cfg_scale=1.5, num_samples=2, judge_samples=2,
                            batch_size=2, seed=1000)
    assert [(s["name"], s["order"]) for s in want["shapes"][:3]] == \
        [("even", 1), ("even", 2), ("even", rc.FOCA)]
    assert [(s["name"], s["computed_steps"], s["order"]) for s in got["shapes"]] == \
        [(s["name"], s["computed_steps"], s["order"]) for s in want["shapes"]]
    for g, w in zip(got["shapes"], want["shapes"]):
        assert g["error"] == pytest.approx(w["error"], rel=1e-3), (g["name"], g["order"])
    assert got["computed_steps"] == want["computed_steps"]
    assert got["order"] == want["order"]
    run_eoc(["-q", "sample", "--model", model, *FLAGS, "--num-samples", "2", "--prior", prior,
             "--out", tmp_path / "g.png"], tmp_path, timeout=600)


def test_budget_with_a_warm_up(run_eoc, model, tmp_path, one_torch_thread):
    """The warm-up's steps are computed and counted in the budget; the search matches the
    reference with them forced; sampling takes the plan with its warm-up from the prior, and a
    second --warmup is refused rather than applied twice."""
    import reference_calibration as rc
    prior = tmp_path / "p.json"
    run_eoc(["-q", "calibrate", "--model", model, *FLAGS, *CALIB, "--budget", "0.5",
             "--warmup", "3", "--out", prior], tmp_path, timeout=600)
    doc = json.loads(prior.read_text())
    assert doc["assumes"]["cache"]["spec"] == "budget:0.5+warmup:3"
    computed = computed_steps(doc["assumes"]["cache"]["layout"])
    assert computed[:3] == [0, 1, 2] and len(computed) == 5
    want = rc.budget_search(model, budget=0.5, warmup=3, max_order=2, sampler="ddim", steps=STEPS,
                            cfg_scale=1.5, num_samples=2, judge_samples=2, batch_size=2, seed=1000)
    assert doc["calibration"]["search"]["computed_steps"] == want["computed_steps"]
    report = tmp_path / "r.json"
    run_eoc(["-q", "sample", "--model", model, *FLAGS, "--num-samples", "2", "--prior", prior,
             "--out", tmp_path / "g.png", "--report", report], tmp_path, timeout=600)
    assert json.loads(report.read_text())["settings"]["cache"]["spec"] == "budget:0.5+warmup:3"
    proc = run_eoc(["-q", "sample", "--model", model, *FLAGS, "--num-samples", "2",
                    "--prior", prior, "--warmup", "3", "--out", tmp_path / "g2.png"],
                   tmp_path, check=False, timeout=600)
    assert proc.returncode != 0 and "without --cache the prior's own plan" in proc.stderr

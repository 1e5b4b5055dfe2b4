"""EOC end to end: `eoc calibrate` writes a prior, `eoc sample --prior` applies it, and every form's
C++ correction equals the Python reference of the same formula
(scripts/testing/reference_sampler.py) on the same model and noise. Small random DiT, few steps,
one thread: fast."""
import json
import os

import numpy as np
import pytest

import reference_sampler as rs
from prior_docs import load_prior_doc, resign

THREADS = ["--threads", "1"]
RUN = ["--sampler", "ddim", "--steps", "6", "--cfg-scale", "1.5", "--seed-mode", "official"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def calibrate(run_eoc, model, out, form, extra):
    """`eoc -q calibrate` into file `out`, run in out's folder; returns out."""
    run_eoc(["-q", "calibrate", "--model", model, *RUN, "--cache", "fora:2", "--eoc-form", form,
             "--num-samples", 4, "--judge-samples", 2, "--batch-size", 4, "--out", out, *THREADS,
             *extra], os.path.dirname(out))
    return out


def sample_raw(run_eoc, model, out, *extra):
    run_eoc(["-q", "sample", "--model", model, *RUN, "--cache", "fora:2", "--num-samples", 3,
             "--batch-size", 3, "--out-raw", out, *THREADS, *extra], os.path.dirname(out))
    return np.load(out)


@pytest.fixture(scope="module")
def prior_of(run_eoc, latent_dit, tmp_path_factory):
    """-> prior_of(form, *extra): the path of `calibrate` on the latent fixture with these
    arguments, run once per module (tests that calibrate alike share the prior; none edits it)."""
    made = {}

    def get(form, *extra):
        key = (form, extra)
        if key not in made:
            out = tmp_path_factory.mktemp("prior") / "p.json"
            made[key] = calibrate(run_eoc, latent_dit["ts"], str(out), form, list(extra))
        return made[key]
    return get


@pytest.fixture(scope="module")
def plain_raw(run_eoc, latent_dit, tmp_path_factory):
    """sample_raw with --correct none: the plain cached result the corrected ones differ from."""
    out = tmp_path_factory.mktemp("plain") / "n.npy"
    return sample_raw(run_eoc, latent_dit["ts"], str(out), "--correct", "none")


def reference_raw(model, prior):
    """What sample_raw with --prior should give, from the reference sampler."""
    return rs.sample(model, sampler="ddim", steps=6, cfg_scale=1.5, num_samples=3, batch_size=3,
                     seed=0, seed_mode="official", cache="fora:2", correct="eoc",
                     prior=prior).numpy()


@pytest.mark.parametrize("form", ["scale", "extrapolate", "taylor"])
def test_each_form_matches_the_reference(run_eoc, prior_of, plain_raw, latent_dit, tmp_path,
                                         form):
    # One candidate strength (1): every reused step applies the form fully, so the check is
    # not vacuous whatever a judgment would have chosen.
    prior = prior_of(form, "--judgment", "local", "--eoc-thetas", "1")
    doc = json.load(open(prior))
    assert doc["form"] == form and any(t == 1.0 for t in doc["step_theta"])
    if form != "taylor":
        assert doc["vectors"]["entries"], "the fit produced no vectors"
    got = sample_raw(run_eoc, latent_dit["ts"], str(tmp_path / "c.npy"), "--prior", prior)
    want = reference_raw(latent_dit["ts"], prior)
    assert np.abs(got - plain_raw).max() > 1e-3, "the correction changed nothing"
    assert np.abs(got - want).max() <= 1e-4


def test_foca_steps_match_the_reference(run_eoc, prior_of, plain_raw, latent_dit, tmp_path):
    """A taylor-form prior whose reused steps mix FoCa's forecast (step order 5, calibrate
    --foca) with orders 1 and 2, at theta 1 and between (the line from F[r]): eoc's samples
    equal the reference's recursion. With fora:2 the value before a computed step is the
    forecast of the step before it, so FoCa reads an earlier forecast of either kind."""
    with open(prior_of("taylor", "--judgment", "local", "--eoc-thetas", "1")) as f:
        doc = load_prior_doc(f.read())
    layout = doc["assumes"]["cache"]["layout"].split("|")
    reused = [k for k, step in enumerate(layout) if "r" in step]
    assert len(reused) >= 2
    pattern = [(1.0, 5), (0.6, 5), (1.0, 2), (1.0, 1)]
    for i, k in enumerate(reused):
        doc["step_theta"][k], doc["step_order"][k] = pattern[i % len(pattern)]
    edited = tmp_path / "foca.json"
    edited.write_text(json.dumps(resign(doc)))
    got = sample_raw(run_eoc, latent_dit["ts"], str(tmp_path / "f.npy"), "--prior", edited)
    want = reference_raw(latent_dit["ts"], str(edited))
    assert np.abs(got - plain_raw).max() > 1e-3, "the correction changed nothing"
    assert np.abs(got - want).max() <= 1e-4
    # and FoCa's steps are not the series': the same prior with order 2 there differs by more
    # than the parity tolerance (by 7e-4 here; 0 if eoc took FoCa's steps for order 2)
    for k in reused:
        if doc["step_order"][k] == 5:
            doc["step_order"][k] = 2
    series = tmp_path / "series.json"
    series.write_text(json.dumps(resign(doc)))
    other = sample_raw(run_eoc, latent_dit["ts"], str(tmp_path / "s.npy"), "--prior", series)
    assert np.abs(other - got).max() > 3e-4


def test_all_zero_strengths_give_the_plain_cached_result(run_eoc, prior_of, plain_raw, latent_dit,
                                                         tmp_path):
    prior = prior_of("extrapolate", "--judgment", "local", "--eoc-thetas", "0")
    assert set(json.load(open(prior))["step_theta"]) == {0.0}
    got = sample_raw(run_eoc, latent_dit["ts"], str(tmp_path / "c.npy"), "--prior", prior)
    assert np.array_equal(got, plain_raw)


def test_trajectory_judgment_never_worse_on_its_judge_samples(prior_of):
    """The greedy keeps the current strength and order unless a candidate lowers the final error,
    so the chosen error is the smallest recorded for the step, and the last step's (the final
    error of the whole prior) is at most the best fixed order's (eoc's default searches orders
    1..4, starting from the best of them)."""
    doc = json.load(open(prior_of("taylor")))
    assert doc["judgment"] == "trajectory" and doc["judged"]
    fixed = doc["fixed_order_errors"]
    assert len(fixed) == 4
    for j in doc["judged"]:
        pairs = list(zip(j["candidates"], j["orders"]))
        chosen = j["errors"][pairs.index((j["theta"], j["order"] if j["theta"] != 0.0 else 0))]
        assert chosen <= min(j["errors"]) + 1e-12
        assert (0.0, 0) in pairs and sorted({o for t, o in pairs if t == 1.0}) == [1, 2, 3, 4]
        assert doc["step_order"][j["step"]] == (j["order"] if j["theta"] != 0.0 else 0)
    assert min(doc["judged"][-1]["errors"]) <= min(fixed) * (1 + 1e-6)


def test_forecast_orders_match_the_reference(run_eoc, prior_of, latent_dit, tmp_path):
    """A prior of the default order search, sampled: the C++ series correction (derivative
    estimates kept up to the highest order chosen) equals the reference's."""
    prior = prior_of("taylor")
    doc = json.load(open(prior))
    assert doc["version"] == 3
    used = {o for o, t in zip(doc["step_order"], doc["step_theta"]) if t != 0.0}
    assert max(used) >= 2, f"the search chose orders {used}: the case checks no series"
    got = sample_raw(run_eoc, latent_dit["ts"], str(tmp_path / "c.npy"), "--prior", prior)
    first = sample_raw(run_eoc, latent_dit["ts"], str(tmp_path / "t.npy"), "--correct", "taylor")
    want = reference_raw(latent_dit["ts"], prior)
    assert np.abs(got - first).max() > 1e-4, "the orders changed nothing against taylor"
    assert np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("change,expect", [
    (["--cache", "fora:3"], "cache.spec \"fora:2\" (this run: \"fora:3\")"),
    (["--steps", "8"], "steps"),
    (["--cfg-scale", "2"], "cfg_scale 1.5 (this run: 2.0)"),
])
def test_prior_for_another_run_is_refused(run_eoc, prior_of, latent_dit, tmp_path, change,
                                          expect):
    prior = prior_of("taylor", "--judgment", "local", "--eoc-thetas", "1")
    args = ["sample", "--model", latent_dit["ts"], *RUN, "--cache", "fora:2", "--num-samples", 1,
            "--prior", prior, "--out-raw", tmp_path / "x.npy", *THREADS]
    for i in range(0, len(change), 2):
        args[args.index(change[i]) + 1] = change[i + 1]
    proc = run_eoc(["-q", *args], tmp_path, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eoc: error:") and expect in lines[0]
    assert not os.path.exists(tmp_path / "x.npy")


def test_prior_for_another_model_is_refused(run_eoc, prior_of, random_dits, tmp_path):
    prior = prior_of("taylor", "--judgment", "local", "--eoc-thetas", "1")  # the latent model's
    proc = run_eoc(["-q", "sample", "--model", random_dits["pixel"]["ts"], *RUN, "--cache",
                    "fora:2", "--num-samples", 1, "--prior", prior, *THREADS], tmp_path,
                   check=False)
    assert proc.returncode != 0 and "model" in proc.stderr and proc.stderr.count("\n") == 1

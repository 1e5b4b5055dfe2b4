"""EOC calibration against an independent reference (scripts/testing/reference_calibration.py,
written from docs/EOC.md): `eoc calibrate` and the reference run on the same tiny random DiT with
the same seeds and settings, and must agree on every fitted coefficient vector (per entry, per
CFG half) and on every judged step's strength, candidates and errors.

Cases: with guidance (latent-like DiT, 4 channels of which 3 are guided, learned sigma, DDPM,
fora:3, whose first reused step has no F[p] yet) and without (pixel-like DiT, fixed variance,
DDIM with eta, random labels, a mask that reuses single branches); forms scale and extrapolate
under both judgments, taylor under the trajectory judgment with eoc's default order search (orders
1..4: the fixed-order errors, each step's candidate orders and chosen order) and with
--max-order 1. Few steps, few images, one thread.

Tolerances (features of the two implementations agree to float32 rounding, ~1e-7 relative:
the C++ block loop fuses the gated residual update and runs batch-invariant GEMMs):
  vectors   |eoc - ref| <= 2e-5 + 1e-4 |ref|. Delta = F[k] - F[r] is a small difference of
            features, so its relative error is ~1e-5; coefficients are O(0.01..1) and agree to
            ~2e-6 here. A sign flip, swapped CFG halves or another basis move them by O(0.1..1).
  errors    relative 1e-2: the local judgment's errors are MSEs of nearly equal eps (~1e-8),
            where the cancellation leaves ~1e-4 relative agreement; final-image errors agree to
            ~1e-6.
  theta     grid values, 0 and 1 exactly; the trajectory judgment's least-squares candidate
            (a ratio of dot products of final-image differences) to 1e-3 absolute (it agrees to
            ~1e-4; 1e-3 is also the distance below which eoc does not try it separately).
  A chosen strength may only differ where the reference's own errors of the two choices are a
  tie within the error tolerance; the trajectory judgment's later steps then follow another
  trajectory and are not compared.
"""
import base64
import json

import numpy as np
import pytest

import reference_calibration as rc

THREADS = ["--threads", "1"]
VEC_ATOL, VEC_RTOL = 2e-5, 1e-4
ERR_RTOL = 1e-2
THETA_ATOL = 1e-3

# Mask for the unguided case (depth 2, 6 steps), in sampling order; per block 1 = compute.
MASK_SCHEDULE = ["compute", {"attn": [0, 1], "mlp": [1, 0]}, "compute", "reuse",
                 {"attn": [1, 0], "mlp": [0, 1]}, "compute"]

CASES = {
    "cfg": dict(fixture="latent", sampler="ddpm", steps=6, eta=0.0, cfg_scale=1.5,
                cfg_channels="3", classes=None, num_samples=5, judge_samples=2, batch_size=2,
                seed=1000, seed_mode="per-image", cache="fora:3"),
    "unguided": dict(fixture="pixel", sampler="ddim", steps=6, eta=0.5, cfg_scale=1.0,
                     cfg_channels="3", classes="random", num_samples=5, judge_samples=2,
                     batch_size=2, seed=7, seed_mode="per-image", cache="mask"),
}
RUNS = [(case, form, judgment, max_order) for case in CASES
        for form, judgment, max_order in [("scale", "local", None), ("scale", "trajectory", None),
                                          ("extrapolate", "local", None),
                                          ("extrapolate", "trajectory", None),
                                          ("taylor", "trajectory", None),
                                          ("taylor", "trajectory", 1)]]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def mask_plan(depth):
    plan = np.zeros((len(MASK_SCHEDULE), depth, 2), dtype=bool)
    for k, entry in enumerate(MASK_SCHEDULE):
        if entry == "reuse":
            plan[k] = True
        elif isinstance(entry, dict):
            plan[k, :, 0] = [v == 0 for v in entry["attn"]]
            plan[k, :, 1] = [v == 0 for v in entry["mlp"]]
    return plan


@pytest.fixture(scope="module")
def settings(random_dits, tmp_path_factory):
    """case -> (model path, eoc flags, reference keyword arguments)."""
    out = {}
    for name, c in CASES.items():
        dit = random_dits[c["fixture"]]
        ref = {k: v for k, v in c.items() if k != "fixture"}
        cache = c["cache"]
        if cache == "mask":
            path = tmp_path_factory.mktemp("mask") / "mask.json"
            path.write_text(json.dumps({"format": "eoc-cache-mask", "version": 1,
                                        "steps": c["steps"], "depth": dit["depth"],
                                        "schedule": MASK_SCHEDULE}))
            cache = f"mask:{path}"
            ref["cache"] = mask_plan(dit["depth"])
        flags = ["--sampler", c["sampler"], "--steps", c["steps"], "--eta", c["eta"],
                 "--cfg-scale", c["cfg_scale"], "--cfg-channels", c["cfg_channels"],
                 "--num-samples", c["num_samples"], "--judge-samples", c["judge_samples"],
                 "--batch-size", c["batch_size"], "--seed", c["seed"],
                 "--seed-mode", c["seed_mode"], "--cache", cache]
        if c["classes"] is not None:
            flags += ["--classes", c["classes"]]
        out[name] = (dit["ts"], flags, ref)
    return out


@pytest.fixture(scope="module")
def fitted():
    """(case, form) -> the reference fit, shared by both judgments (the fit does not depend on
    the judgment)."""
    return {}


def eoc_calibrate(run_eoc, model, flags, form, judgment, out, max_order=None):
    """`eoc -q calibrate` into file `out` (a pathlib.Path), run in its folder; -> the prior."""
    args = ["-q", "calibrate", "--model", model, *flags, "--eoc-form", form,
            "--judgment", judgment, "--out", out, *THREADS]
    if max_order is not None:
        args += ["--max-order", max_order]
    run_eoc(args, out.parent)
    with open(out) as f:
        return json.load(f)


def prior_vectors(doc):
    d = doc["assumes"]["model"]["hidden_size"]
    assert doc["vectors"]["shape"] == [2, d]
    out = {}
    for e in doc["vectors"]["entries"]:
        key = (e["step"], e["block"], {"attn": 0, "mlp": 1}[e["branch"]])
        assert key not in out
        out[key] = np.frombuffer(base64.b64decode(e["data"]), dtype="<f4").reshape(2, d)
    return out


def check_vectors(got, want, guided):
    assert sorted(got) == sorted(want), "the entries eoc fitted differ from the reference's"
    for key in sorted(want):
        g, w = got[key], want[key]
        for row, half in enumerate(("conditional", "unconditional")):
            bad = np.abs(g[row] - w[row]) > VEC_ATOL + VEC_RTOL * np.abs(w[row])
            assert not bad.any(), (
                f"entry (step, block, branch) {key}, {half} half: {int(bad.sum())} of "
                f"{bad.size} channels differ, worst |eoc - ref| "
                f"{np.abs(g[row] - w[row]).max():.3g} "
                f"(eoc {g[row][bad][:3]}, ref {w[row][bad][:3]})")
        if not guided:
            assert np.array_equal(g[0], g[1]), f"{key}: without guidance both rows hold one fit"
    if guided:  # the halves must differ, or swapping them would go unnoticed
        spread = max(np.abs(w[0] - w[1]).max() for w in want.values())
        assert spread > 100 * VEC_ATOL


def errors_tie(errors, i, j):
    a, b = errors[i], errors[j]
    return abs(a - b) <= ERR_RTOL * max(abs(a), abs(b))


def check_judgments(got, want, trajectory):
    """-> the steps whose choices were compared and agree (a tie ends the comparison of a
    trajectory judgment)."""
    assert [j["step"] for j in got] == [j["step"] for j in want], "judged steps differ"
    compared = []
    for g, w in zip(got, want):
        k = w["step"]
        assert len(g["candidates"]) == len(w["candidates"]), (
            f"step {k}: candidates eoc {g['candidates']}, ref {w['candidates']}")
        np.testing.assert_allclose(g["candidates"], w["candidates"], rtol=0, atol=THETA_ATOL,
                                   err_msg=f"step {k}: candidate strengths")
        assert ("orders" in g) == ("orders" in w), f"step {k}: orders recorded by one side only"
        if "orders" in w:
            assert g["orders"] == w["orders"], f"step {k}: candidate orders eoc {g['orders']}, ref {w['orders']}"
        np.testing.assert_allclose(g["errors"], w["errors"], rtol=ERR_RTOL, atol=0,
                                   err_msg=f"step {k}: candidate errors")
        orders = w.get("orders", [0] * len(w["candidates"]))
        key = lambda theta, order: [abs(c - theta) + (o != order) for c, o in zip(w["candidates"], orders)]  # noqa: E731
        picked = int(np.argmin(key(g["theta"], g.get("order", 0))))
        mine = int(np.argmin(key(w["theta"], w.get("order", 0))))
        if picked != mine:
            assert errors_tie(w["errors"], picked, mine), (
                f"step {k}: eoc chose theta {g['theta']} order {g.get('order')}, the reference "
                f"{w['theta']} order {w.get('order')} (reference errors {w['errors']})")
            if trajectory:
                return compared  # later steps follow another (equally good) trajectory
            continue
        assert abs(g["theta"] - w["theta"]) <= THETA_ATOL, (
            f"step {k}: eoc chose theta {g['theta']}, the reference {w['theta']}")
        assert g.get("order") == w.get("order"), f"step {k}: eoc chose order {g.get('order')}, ref {w.get('order')}"
        compared.append(k)
    return compared


@pytest.mark.parametrize("case,form,judgment,max_order", RUNS)
def test_calibration_matches_the_reference(run_eoc, settings, fitted, tmp_path, case, form,
                                           judgment, max_order):
    model, flags, ref_args = settings[case]
    doc = eoc_calibrate(run_eoc, model, flags, form, judgment, tmp_path / "prior.json", max_order)
    want = rc.calibrate(model, form=form, judgment=judgment,
                        vectors=fitted.get((case, form)), max_order=max_order, **ref_args)
    fitted[(case, form)] = want["vectors"]
    guided = ref_args["cfg_scale"] > 1.0

    assert doc["form"] == form and doc["judgment"] == judgment
    assert doc["assumes"]["cache"]["layout"] == want["layout"], "eoc used another cache plan"
    got_vectors = prior_vectors(doc)
    if form == "taylor":
        assert got_vectors == {} and want["vectors"] == {}
    else:
        assert want["vectors"], "the reference fitted nothing: the case checks no fit"
        check_vectors(got_vectors, want["vectors"], guided)

    searched = form == "taylor" and max_order is None
    assert bool(want["fixed_order_errors"]) == searched
    if searched:
        assert len(doc["fixed_order_errors"]) == 4
        np.testing.assert_allclose(doc["fixed_order_errors"], want["fixed_order_errors"],
                                   rtol=ERR_RTOL, atol=0, err_msg="final-image errors of the fixed orders")
    else:
        assert "fixed_order_errors" not in doc
    compared = check_judgments(doc["judged"], want["judged"], judgment == "trajectory")
    for k in compared:
        assert doc["step_order"][k] == want["step_order"][k], f"step {k}: step_order"
    assert len(doc["step_theta"]) == len(want["step_theta"])
    chosen = {j["step"]: j["theta"] for j in doc["judged"]}
    for k, (g, w) in enumerate(zip(doc["step_theta"], want["step_theta"])):
        if k in chosen:
            assert g == chosen[k], f"step {k}: step_theta {g}, judged theta {chosen[k]}"
        else:
            assert g == w == 0.0, f"step {k} reuses nothing but has theta {g}"
    # The case must exercise the judgment: some step keeps (part of) its correction.
    assert any(j["theta"] != 0.0 for j in want["judged"])


@pytest.mark.parametrize("case", list(CASES))
def test_foca_search_matches_the_reference(run_eoc, settings, tmp_path, case):
    """`calibrate --foca --max-order 2`: FoCa's forecast (order 5) competes beside orders 1 and
    2, as a fixed forecast and at every step, with the same candidates, errors and choices as
    the reference's recursion."""
    model, flags, ref_args = settings[case]
    doc = eoc_calibrate(run_eoc, model, [*flags, "--foca"], "taylor", "trajectory",
                        tmp_path / "prior.json", 2)
    want = rc.calibrate(model, form="taylor", judgment="trajectory", max_order=2, foca=True,
                        **ref_args)
    assert doc["calibration"]["foca"] is True
    assert len(want["fixed_order_errors"]) == 3
    np.testing.assert_allclose(doc["fixed_order_errors"], want["fixed_order_errors"],
                               rtol=ERR_RTOL, atol=0, err_msg="errors of orders 1, 2 and FoCa")
    # FoCa's trajectory is its own, not order 1's or 2's (in the reference, deterministic)
    e = want["fixed_order_errors"]
    assert min(abs(e[2] - e[0]), abs(e[2] - e[1])) > 1e-4 * e[2]
    assert all(rc.FOCA in j["orders"] for j in want["judged"])
    compared = check_judgments(doc["judged"], want["judged"], True)
    assert compared, "no step's choice was compared"
    for k in compared:
        assert doc["step_order"][k] == want["step_order"][k], f"step {k}: step_order"


def test_official_seed_mode_matches_the_reference(run_eoc, settings, tmp_path):
    model, flags, ref_args = settings["cfg"]
    flags = list(flags)
    flags[flags.index("--seed-mode") + 1] = "official"
    doc = eoc_calibrate(run_eoc, model, flags, "scale", "local", tmp_path / "prior.json")
    want = rc.calibrate(model, form="scale", judgment="local",
                        **dict(ref_args, seed_mode="official"))
    check_vectors(prior_vectors(doc), want["vectors"], True)
    check_judgments(doc["judged"], want["judged"], False)

"""scripts/tools/convert_l2c_router.py: Learning-to-Cache router checkpoint -> eoc cache mask."""
import json
import os
import subprocess
import sys

import pytest
import torch

import cache_mask  # scripts/tools/, on sys.path through conftest.py
import convert_l2c_router

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "tools", "convert_l2c_router.py")

BIG = 10.0  # sigmoid(10) ~ 1 -> compute; sigmoid(-10) ~ 0 -> reuse


@pytest.fixture
def run(capsys):
    """Runs the converter's main() in-process; returns (exit code, stderr)."""
    def call(*args):
        capsys.readouterr()
        rc = convert_l2c_router.main([str(a) for a in args])
        return rc, capsys.readouterr().err
    return call


def test_command_line(tmp_path):
    router = tmp_path / "router.pt"
    out = tmp_path / "mask.json"
    save_router(router, [reuse_logits(1, {0}), reuse_logits(1, set())])
    proc = subprocess.run([sys.executable, SCRIPT, str(router), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["schedule"] == ["compute", {"attn": [0], "mlp": [1]}]
    assert "caching level 25.0%" in proc.stderr
    proc = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "nope.pt"), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr


def save_router(path, logits, prefix=""):
    routers = {f"{prefix}{k}.prob": torch.tensor(v, dtype=torch.float32) for k, v in enumerate(logits)}
    torch.save({"routers": routers}, path)


def reuse_logits(depth, reuse):
    """Logits for one timestep: entries in `reuse` (indices 2l / 2l+1) below any threshold."""
    return [-BIG if i in reuse else BIG for i in range(2 * depth)]


def test_converts_exactly(tmp_path, run):
    # S = 6 timesteps, depth 2. Sampling step s runs k = 5 - s.
    depth = 2
    logits = [
        reuse_logits(depth, {0, 3}),    # k=0 (s=5, cache step): attn0, mlp1 reused
        reuse_logits(depth, {0, 1, 2, 3}),  # k=1 odd: ignored, computes everything
        reuse_logits(depth, set()),     # k=2 (s=3, cache step): nothing reused
        reuse_logits(depth, {1}),       # k=3 odd: ignored
        reuse_logits(depth, {0, 1, 2, 3}),  # k=4 (s=1): everything reused
        reuse_logits(depth, {2}),       # k=5 odd (s=0)
    ]
    router = tmp_path / "router.pt"
    out = tmp_path / "mask.json"
    save_router(router, logits)
    rc, err = run(router, "-o", out)
    assert rc == 0, err
    mask = json.loads(out.read_text())
    assert mask["format"] == "eoc-cache-mask" and mask["version"] == 1
    assert mask["steps"] == 6 and mask["depth"] == 2
    assert mask["schedule"] == [
        "compute",
        {"attn": [0, 0], "mlp": [0, 0]},
        "compute",
        "compute",
        "compute",
        {"attn": [0, 1], "mlp": [1, 0]},
    ]
    assert cache_mask.caching_level(mask) == pytest.approx(6 / 24)
    assert "25.0%" in err and "6 of 24" in err
    assert "first sampling step" not in err  # k = S-1 = 5 is odd
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_threshold_is_strict_and_applied_to_sigmoid(tmp_path, run):
    depth = 1
    # sigmoid(0) = 0.5: computed at threshold 0.4, reused at 0.5 (not strictly greater) and 0.6.
    logits = [[0.0, 3.0], [BIG, BIG]]  # k=0 is s=1
    router = tmp_path / "r.pt"
    save_router(router, logits)
    for threshold, attn in ((0.4, 1), (0.5, 0), (0.6, 0)):
        out = tmp_path / f"m{threshold}.json"
        rc, err = run(router, "-o", out, "--threshold", threshold)
        assert rc == 0, err
        entry = json.loads(out.read_text())["schedule"][1]
        assert (entry == "compute") == bool(attn)
        if not attn:
            assert entry == {"attn": [0], "mlp": [1]}  # sigmoid(3) ~ 0.95


def test_first_sampling_step_always_computes(tmp_path, run):
    # S = 5: k = 4 is even and is the first sampling step.
    depth = 3
    logits = [reuse_logits(depth, set(range(6)))] * 5
    router = tmp_path / "r.pt"
    out = tmp_path / "m.json"
    save_router(router, logits)
    rc, err = run(router, "-o", out)
    assert rc == 0, err
    mask = json.loads(out.read_text())
    full = {"attn": [0] * 3, "mlp": [0] * 3}
    # s = 0..4 -> k = 4..0: k=4 forced compute, k=3 odd, k=2 cache, k=1 odd, k=0 cache.
    assert mask["schedule"] == ["compute", "compute", full, "compute", full]
    assert "first sampling step" in err and "would have reused 6" in err
    assert "40.0%" in err


def test_prefixed_keys_and_depth_flag(tmp_path, run):
    depth = 2
    logits = [reuse_logits(depth, {1}), reuse_logits(depth, set())]
    router = tmp_path / "r.pt"
    save_router(router, logits, prefix="routers.")
    out = tmp_path / "m.json"
    rc, err = run(router, "-o", out, "--depth", 2)
    assert rc == 0, err
    assert json.loads(out.read_text())["schedule"] == ["compute", {"attn": [1, 1], "mlp": [0, 1]}]
    rc, err = run(router, "-o", out, "--depth", 3)
    assert rc == 2 and "--depth 3" in err


def test_router_as_module_state(tmp_path, run):
    modules = torch.nn.ModuleList()
    for k in range(4):
        m = torch.nn.Module()
        m.prob = torch.nn.Parameter(torch.full((4,), BIG if k % 2 else -BIG))
        modules.append(m)
    router = tmp_path / "r.pt"
    torch.save({"routers": modules.state_dict(), "other": 1}, router)
    out = tmp_path / "m.json"
    rc, err = run(router, "-o", out)
    assert rc == 0, err
    reuse_all = {"attn": [0, 0], "mlp": [0, 0]}
    assert json.loads(out.read_text())["schedule"] == ["compute", reuse_all, "compute", reuse_all]


def one_line_error(rc, err, text):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convert_l2c_router.py: error:"), err
    assert text in lines[0]


def test_missing_file(tmp_path, run):
    rc, err = run(tmp_path / "nope.pt", "-o", tmp_path / "m.json")
    one_line_error(rc, err, "does not exist")
    assert not (tmp_path / "m.json").exists()


def test_not_a_checkpoint(tmp_path, run):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    one_line_error(*run(bad, "-o", tmp_path / "m.json"), "not a torch checkpoint")


def test_no_routers_entry(tmp_path, run):
    router = tmp_path / "r.pt"
    torch.save({"model": {"0.prob": torch.zeros(4)}}, router)
    one_line_error(*run(router, "-o", tmp_path / "m.json"), "no 'routers'")


def test_no_prob_entries(tmp_path, run):
    router = tmp_path / "r.pt"
    torch.save({"routers": {"weight": torch.zeros(4)}}, router)
    one_line_error(*run(router, "-o", tmp_path / "m.json"), ".prob")


def test_inconsistent_lengths(tmp_path, run):
    router = tmp_path / "r.pt"
    save_router(router, [[0.0] * 4, [0.0] * 6])
    one_line_error(*run(router, "-o", tmp_path / "m.json"), "inconsistent lengths")


def test_odd_length(tmp_path, run):
    router = tmp_path / "r.pt"
    save_router(router, [[0.0] * 3, [0.0] * 3])
    one_line_error(*run(router, "-o", tmp_path / "m.json"), "2 x depth")


def test_missing_timestep_index(tmp_path, run):
    router = tmp_path / "r.pt"
    torch.save({"routers": {"0.prob": torch.zeros(4), "2.prob": torch.zeros(4)}}, router)
    one_line_error(*run(router, "-o", tmp_path / "m.json"), "index 1 is missing")


def test_existing_output_untouched_on_error(tmp_path, run):
    out = tmp_path / "m.json"
    out.write_text("keep")
    router = tmp_path / "r.pt"
    save_router(router, [[0.0] * 4, [0.0] * 6])
    assert run(router, "-o", out)[0] == 2
    assert out.read_text() == "keep"

"""Error paths of the `eoc` binary that test_cli_sampling.py (BAD_INPUT, parse errors, NaN
outputs, read-only folders) and test_fid_runs.py (SIGTERM/SIGKILL of --out-dir runs, sharding
and VAE refusals, config errors) leave out: broken model files, broken or mismatching EOC priors,
contradictory flags, out-of-range values, a full file system, and signals during calibration and
grid sampling. docs/RELIABILITY.md lists every case with the test that proves it.

Every failure must exit non-zero with exactly one stderr line `eoc: error: ...` (or the
interrupt line), no traceback / terminate / core dump, and leave no partial file behind.
The prior comes from `eoc calibrate` on the tiny pixel fixture (4 steps, 3 samples, fora:2)."""
import base64
import hashlib
import json
import os
import signal
import subprocess
import time

import pytest
import torch
from prior_docs import load_prior_doc, resign

import export_dit
import make_random_dit

THREADS = ["--threads", "1"]
# The settings the prior is calibrated for and sampled with (pixel fixture: depth 2, hidden 32).
PRIOR_RUN = ["--steps", 4, "--cache", "fora:2"]


@pytest.fixture(scope="module")
def fails_cleanly(run_eoc, check_clean_failure, files_under):
    """-> fails_cleanly(args, cwd, timeout=120): runs `eoc -q ARGS` in cwd, checks the one-line
    failure and that cwd gained no file; returns the stderr line."""
    def run(args, cwd, timeout=120):
        before = files_under(cwd)
        proc = run_eoc(["-q"] + list(args), cwd, check=False, timeout=timeout)
        check_clean_failure(proc)
        assert files_under(cwd) == before, "files left behind"
        return proc.stderr.strip()
    return run


# --------------------------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------------------------

class NotADiT(torch.nn.Module):
    """A valid TorchScript module without eoc's model contract (docs/MODEL_CONTRACT.md)."""

    def forward(self, x):
        return x * 2


@pytest.fixture(scope="module")
def broken_models(builtin_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("broken_models")
    data = open(builtin_model, "rb").read()
    (d / "truncated.ts").write_bytes(data[: len(data) // 2])
    (d / "empty.ts").write_bytes(b"")
    torch.jit.script(NotADiT()).save(str(d / "no_contract.ts"))
    return d


@pytest.mark.parametrize("name,expected", [
    ("truncated.ts", "is not a TorchScript module"),
    ("empty.ts", "is empty"),
    ("no_contract.ts", "lacks the integer attribute 'contract_version'"),
])
@pytest.mark.parametrize("command", ["sample", "info"])
def test_broken_model_file(fails_cleanly, broken_models, tmp_path, name, expected, command):
    args = [command, "--model", broken_models / name] + THREADS
    if command == "sample":
        args += ["--steps", 2, "--num-samples", 1, "--out-raw", tmp_path / "o.npy"]
    line = fails_cleanly(args, tmp_path)
    assert name in line and expected in line, line


# --------------------------------------------------------------------------------------------
# EOC priors
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prior(run_eoc, pixel_dit, tmp_path_factory):
    """A real prior (scale form: it has coefficient vectors) for the pixel fixture."""
    d = tmp_path_factory.mktemp("prior")
    path = d / "prior.json"
    run_eoc(["-q", "calibrate", "--model", pixel_dit["ts"]] + THREADS + PRIOR_RUN +
            ["--num-samples", 3, "--judge-samples", 1, "--eoc-form", "scale", "--out", path], d)
    return path


def sample_with_prior(pixel_dit, prior_path, tmp_path, model=None, steps=4):
    return (["sample", "--model", model or pixel_dit["ts"]] + THREADS +
            ["--steps", steps, "--cache", "fora:2", "--num-samples", 1, "--prior", prior_path,
             "--out-raw", tmp_path / "o.npy", "--report", tmp_path / "r.json"])


def test_prior_itself_is_accepted(run_eoc, pixel_dit, prior, tmp_path):
    """The control: the unedited prior samples, and re-signing reproduces its checksum (so the
    re-signed edits below are refused for their content, not for their checksum)."""
    doc = load_prior_doc(prior.read_text())
    assert resign(doc)["checksum"] == doc["checksum"]
    run_eoc(["-q"] + sample_with_prior(pixel_dit, prior, tmp_path), tmp_path)
    assert (tmp_path / "o.npy").is_file()


def _truncate(text):
    return text[: len(text) // 2]


def _nan(text):
    return text.replace('"cfg_scale": 4.0', '"cfg_scale": NaN', 1)


def _edit(text):
    return text.replace('"cfg_scale": 4.0', '"cfg_scale": 3.0', 1)


def _version4(text):
    return text.replace('"version": 3', '"version": 4', 1)


def _resigned(change):
    def edit(text):
        doc = load_prior_doc(text)
        change(doc)
        return json.dumps(resign(doc), indent=1)
    return edit


def _drop_step_theta(doc):
    del doc["step_theta"]


def _short_vector(doc):
    entry = doc["vectors"]["entries"][0]
    entry["data"] = base64.b64encode(base64.b64decode(entry["data"])[:-4]).decode()


def _blow_up(doc):
    """theta 10 (the largest allowed) times a coefficient of 6: |theta E| = 60 > 50."""
    doc["step_theta"] = [10.0] * len(doc["step_theta"])
    for entry in doc["vectors"]["entries"]:
        n = len(base64.b64decode(entry["data"])) // 4
        entry["data"] = base64.b64encode(torch.full((n,), 6.0).numpy().tobytes()).decode()


PRIOR_EDITS = {
    "truncated": (_truncate, "is not valid JSON"),
    "nan": (_nan, "is not valid JSON"),
    "checksum_edited": (_edit, "checksum does not match"),
    "version_4": (_version4, "has version 4, this eoc reads versions 2 to 3"),
    "resigned_missing_key": (_resigned(_drop_step_theta), "step_theta is missing"),
    "resigned_wrong_shape": (_resigned(_short_vector), "is not base64 of 2 x 32 float32"),
    "resigned_blow_up": (_resigned(_blow_up), "would blow the feature up (limit 50)"),
}


@pytest.mark.parametrize("name", sorted(PRIOR_EDITS))
def test_broken_prior(fails_cleanly, pixel_dit, prior, tmp_path, name):
    edit, expected = PRIOR_EDITS[name]
    bad = tmp_path / f"{name}.json"
    bad.write_text(edit(prior.read_text()))
    line = fails_cleanly(sample_with_prior(pixel_dit, bad, tmp_path), tmp_path)
    assert str(bad) in line and expected in line, line


@pytest.mark.parametrize("case", ["other_step_count", "other_model"])
def test_prior_for_another_run(fails_cleanly, pixel_dit, latent_dit, prior, tmp_path, case):
    if case == "other_step_count":
        args = sample_with_prior(pixel_dit, prior, tmp_path, steps=6)
        expected = "steps 4 (this run: 6)"
    else:
        args = sample_with_prior(pixel_dit, prior, tmp_path, model=latent_dit["ts"])
        expected = 'model.name "pixel"'
    line = fails_cleanly(args, tmp_path)
    assert "was made for another run" in line and expected in line, line


def another_run_line(prior_path, difference):
    """The whole refusal line when exactly one prior field differs, named as the run settings
    table (src/runs/run_settings.cpp) names it, values as JSON: nothing else may be listed."""
    return f"eoc: error: prior '{prior_path}' was made for another run: {difference}"


# One sampling setting changed from the prior's (DDIM, 4 steps with "even" respacing, eta 0,
# cfg on channels "3"). DDIM4 spaces exactly (stride 250), so respacing ddim is a valid run; eta
# needs the DDIM sampler. Everything else, the cache layout included, stays the prior's.
OTHER_SETTING = {
    "respacing": (["--respacing", "ddim"], 'respacing "even" (this run: "ddim")'),
    "eta": (["--sampler", "ddim", "--eta", 0.5], "eta 0.0 (this run: 0.5)"),
    "cfg_channels": (["--cfg-channels", "all"], 'cfg_channels "3" (this run: "all")'),
}


@pytest.mark.parametrize("field", sorted(OTHER_SETTING))
def test_prior_for_another_setting(fails_cleanly, pixel_dit, prior, tmp_path, field):
    extra, difference = OTHER_SETTING[field]
    line = fails_cleanly(sample_with_prior(pixel_dit, prior, tmp_path) + extra, tmp_path)
    assert line == another_run_line(prior, difference)


@pytest.fixture(scope="module")
def pixel_dit_other_weights(pixel_dit, tmp_path_factory):
    """The pixel fixture's architecture with weights of another seed, exported from a checkpoint
    of the same file name, so the model name ("pixel") and every shape match the prior's model
    and only the file, hence model.sha256, differs."""
    d = tmp_path_factory.mktemp("other_weights")
    arch = {k: pixel_dit[k] for k in ("depth", "hidden", "patch", "input_size", "in_channels",
                                      "num_classes", "learn_sigma")}
    sd = make_random_dit.random_state_dict(**arch, seed=pixel_dit["seed"] + 100)
    ckpt, ts = d / os.path.basename(pixel_dit["ckpt"]), d / os.path.basename(pixel_dit["ts"])
    torch.save(sd, str(ckpt))
    export_dit.export(str(ckpt), str(ts), num_heads=pixel_dit["heads"])
    ours, theirs = torch.jit.load(str(ts)), torch.jit.load(pixel_dit["ts"])
    assert ours.model_name == theirs.model_name == "pixel"
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in pixel_dit["sd"].items()}
    key = "final_layer.linear.weight"
    assert not torch.equal(sd[key], pixel_dit["sd"][key])
    return ts


def test_prior_for_a_model_with_other_weights(fails_cleanly, pixel_dit, pixel_dit_other_weights,
                                              prior, tmp_path):
    """The checksum branch alone: same name, same architecture, other weights."""
    def sha256(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    made_for, this_run = sha256(pixel_dit["ts"]), sha256(pixel_dit_other_weights)
    assert made_for != this_run
    args = sample_with_prior(pixel_dit, prior, tmp_path, model=pixel_dit_other_weights)
    line = fails_cleanly(args, tmp_path)
    assert line == another_run_line(prior, f'model.sha256 "{made_for}" (this run: "{this_run}")')
    assert "model.name" not in line


# --------------------------------------------------------------------------------------------
# Contradictory flags and out-of-range values
# --------------------------------------------------------------------------------------------

# name -> (subcommand args after the model, text the error line must hold)
BAD_FLAGS = {
    "eta_with_ddpm": (["--eta", 0.5, "--sampler", "ddpm"], "--eta"),
    "prior_with_taylor": (["--cache", "fora:2", "--prior", "{PRIOR}", "--correct", "taylor"],
                          "--prior"),
    "whole_forward_with_cache": (["--whole-forward", "--cache", "fora:2"], "--whole-forward"),
    "nrow_0": (["--nrow", 0, "--out", "{TMP}/g.png"], "--nrow 0"),
    "batch_size_0": (["--batch-size", 0], "--batch-size 0"),
    "threads_negative": (["--threads", -1], "--threads -1"),
}


@pytest.mark.parametrize("name", sorted(BAD_FLAGS))
def test_bad_flags(fails_cleanly, pixel_dit, prior, tmp_path, name):
    extra, expected = BAD_FLAGS[name]
    extra = [str(a).replace("{PRIOR}", str(prior)).replace("{TMP}", str(tmp_path)) for a in extra]
    args = ["sample", "--model", pixel_dit["ts"], "--steps", 4, "--num-samples", 2]
    if "--threads" not in extra:
        args += THREADS
    if "--out" not in extra:
        args += ["--out-raw", tmp_path / "o.npy"]
    line = fails_cleanly(args + extra, tmp_path)
    assert expected in line, line


def test_failed_calibrate_keeps_the_existing_prior(run_eoc, check_clean_failure, pixel_dit, prior,
                                                   tmp_path):
    """A calibration that fails (here: fora:1 reuses nothing, found after the model is loaded)
    must leave an existing --out file as it was, like any other output."""
    out = tmp_path / "prior.json"
    out.write_bytes(prior.read_bytes())
    proc = run_eoc(["-q", "calibrate", "--model", pixel_dit["ts"]] + THREADS +
                   ["--steps", 4, "--cache", "fora:1", "--num-samples", 3, "--judge-samples", 1,
                    "--out", out], tmp_path, check=False)
    check_clean_failure(proc)
    assert "reuses nothing" in proc.stderr, proc.stderr
    assert out.is_file() and out.read_bytes() == prior.read_bytes(), "the existing prior was lost"


def test_calibrate_theta_out_of_range(fails_cleanly, pixel_dit, tmp_path):
    line = fails_cleanly(["calibrate", "--model", pixel_dit["ts"]] + THREADS + PRIOR_RUN +
                         ["--num-samples", 3, "--judge-samples", 1, "--eoc-thetas", 9,
                          "--out", tmp_path / "p.json"], tmp_path)
    assert "--eoc-thetas" in line and "9" in line, line


@pytest.mark.parametrize("flags,expect", [
    (["--max-order", 5], "--max-order 5 is out of range (expected 1..4)"),
    (["--max-order", -1], "--max-order -1 is out of range"),
    (["--max-order", 2, "--eoc-form", "scale"], "the scale form has no forecast orders"),
    (["--max-order", 3, "--judgment", "local"], "orders are chosen by the trajectory judgment only"),
    (["--max-order", 1, "--foca", "--eoc-form", "extrapolate"],
     "--foca: FoCa's forecast is one of the taylor form's orders"),
    (["--max-order", 1, "--foca", "--judgment", "local"], "--judgment local"),
])
def test_calibrate_max_order_refused(fails_cleanly, pixel_dit, tmp_path, flags, expect):
    line = fails_cleanly(["calibrate", "--model", pixel_dit["ts"]] + THREADS + PRIOR_RUN +
                         ["--num-samples", 3, "--judge-samples", 1, *flags,
                          "--out", tmp_path / "p.json"], tmp_path)
    assert expect in line, line


# --------------------------------------------------------------------------------------------
# A full file system (a 64 KiB tmpfs; needs root and mount)
# --------------------------------------------------------------------------------------------

@pytest.fixture
def full_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_full_out_dir_keeps_only_complete_pngs(run_eoc, check_clean_failure, pixel_dit, full_fs,
                                               tmp_path):
    """40 images into 64 KiB (a page per file): it fills up midway; the error names the image
    that did not fit, every PNG left is complete, no temp file remains."""
    from PIL import Image
    out = full_fs / "imgs"
    proc = run_eoc(["-q", "sample", "--model", pixel_dit["ts"]] + THREADS +
                   ["--steps", 2, "--num-samples", 40, "--out-dir", out], tmp_path, check=False)
    check_clean_failure(proc)
    assert "No space left on device" in proc.stderr and ".png" in proc.stderr, proc.stderr
    names = sorted(os.listdir(out))
    assert not [n for n in names if ".tmp" in n], names
    pngs = [n for n in names if n.endswith(".png")]
    assert 0 < len(pngs) < 40
    assert pngs == [f"{i:06d}.png" for i in range(len(pngs))]
    for n in pngs:
        with Image.open(out / n) as im:
            im.load()


def test_full_out_raw_leaves_nothing(run_eoc, check_clean_failure, pixel_dit, full_fs, tmp_path):
    """80 x 16 x 16 float32 samples (80 KiB) do not fit: no .npy, no temp file."""
    proc = run_eoc(["-q", "sample", "--model", pixel_dit["ts"]] + THREADS +
                   ["--steps", 2, "--num-samples", 80, "--out-raw", full_fs / "r.npy"], tmp_path,
                   check=False)
    check_clean_failure(proc)
    assert "r.npy" in proc.stderr and "No space left on device" in proc.stderr, proc.stderr
    assert os.listdir(full_fs) == []


# --------------------------------------------------------------------------------------------
# Signals during calibration and grid sampling
# --------------------------------------------------------------------------------------------

def handlers_installed(pid, signals=(signal.SIGINT, signal.SIGTERM)):
    """Whether process `pid` catches `signals` (SigCgt of /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(l.split()[1], 16) for l in f if l.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return all(caught & (1 << (int(s) - 1)) for s in signals)


def signal_midway(run_eoc, args, cwd, sig, timeout=300):
    """Starts `eoc -q ARGS`; once its SIGINT/SIGTERM handlers are installed and it has run for
    another 0.5 s, sends `sig`. Returns (returncode, stderr, whether the signal was sent)."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc to see when eoc's signal handlers are installed")
    proc = run_eoc.start(["-q"] + list(args), cwd, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while proc.poll() is None and not handlers_installed(proc.pid) and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        sent = proc.poll() is None
        if sent:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, sent


def check_interrupted(rc, err, sent, code, word):
    if not sent:
        pytest.skip("eoc finished before the signal")
    assert rc == code, f"exit {rc}\n{err}"
    for bad in ("terminate called", "Traceback", "core dumped", "Segmentation fault",
                "Exception raised from"):
        assert bad not in err, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("eoc: " + word), err
    assert "stopped cleanly" in lines[0], err


def test_sigterm_during_calibrate_writes_no_prior(run_eoc, files_under, pixel_dit, tmp_path):
    """A calibration of 100 steps (many seconds) stopped after 0.5 s: exit 143, no prior."""
    rc, err, sent = signal_midway(
        run_eoc, ["calibrate", "--model", pixel_dit["ts"]] + THREADS +
        ["--steps", 100, "--cache", "fora:2", "--num-samples", 24, "--judge-samples", 8,
         "--out", tmp_path / "prior.json"], tmp_path, signal.SIGTERM)
    check_interrupted(rc, err, sent, 143, "terminated (SIGTERM)")
    assert files_under(tmp_path) == set(), "files left behind"


def test_sigint_during_sample_writes_no_grid(run_eoc, files_under, pixel_dit, tmp_path):
    """A 1000-step grid run (many seconds) stopped after 0.5 s: exit 130, no grid, no report."""
    rc, err, sent = signal_midway(
        run_eoc, ["sample", "--model", pixel_dit["ts"]] + THREADS +
        ["--steps", 1000, "--num-samples", 32, "--out", tmp_path / "grid.png",
         "--report", tmp_path / "r.json"], tmp_path, signal.SIGINT)
    check_interrupted(rc, err, sent, 130, "interrupted (SIGINT)")
    assert files_under(tmp_path) == set(), "files left behind"


# --------------------------------------------------------------------------------------------
# Numerical guard: the message names the step and the block where the NaN first appears
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tensor,where", [
    ("blocks.1.mlp.fc2.bias", "after block 1's mlp branch"),
    ("blocks.0.attn.proj.bias", "after block 0's attn branch"),
    ("final_layer.linear.bias", "in the final layer"),
])
def test_nan_names_step_and_block(fails_cleanly, random_dit_variant, tmp_path, tensor, where):
    def nan_first_entry(sd):
        sd[tensor][0] = float("nan")
    ts = random_dit_variant("pixel", f"nan_{tensor}", nan_first_entry)
    message = fails_cleanly(["sample", "--model", ts, "--steps", 3, "--num-samples", 1,
                             "--out", "g.png"] + THREADS, tmp_path)
    assert "NaN or Inf at sampling step 0" in message and where in message, message

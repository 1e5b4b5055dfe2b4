"""FID-run plumbing end to end: per-image output folders made by several processes (sharding
from torchrun-style variables), resume after SIGKILL, clean stop on SIGTERM, `eoc pack` into
the ADM evaluator's npz, settings records, decoding through an exported VAE (`--vae`; the
export itself: tools/test_export_vae.py), and configs.

The built-in Fashion-MNIST model samples with `--sampler ddim --steps 3 --cfg-scale 1` (32x32
images) and one thread per process, so the suite stays short on two cores."""
import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import export_vae
import make_random_vae

FAST = ["--sampler", "ddim", "--steps", "3", "--cfg-scale", "1", "--classes", "random",
        "--threads", "1"]
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS + ("EOC_PACK_FORCE_ZIP64",)}
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="module")
def eoc(run_eoc):
    """-> eoc(args, cwd, env=None, check=True, timeout=600): run_eoc in the environment
    clean_env() unless env is given (no launcher variables: they would shard the run)."""
    def run(args, cwd, env=None, check=True, timeout=600):
        return run_eoc(args, cwd, check=check, timeout=timeout, env=env or clean_env())
    return run


def sample_args(out_dir, num, batch):
    return ["-q", "sample"] + FAST + ["--num-samples", num, "--batch-size", batch, "--out-dir", out_dir]


def pngs(folder):
    return sorted(glob.glob(os.path.join(str(folder), "[0-9]" * 6 + ".png")))


def temp_files(folder):
    return [f for f in os.listdir(str(folder)) if ".tmp." in f]


def pack(eoc, folder, out, *extra, env=None):
    proc = eoc(["-q", "pack", folder, "-o", out] + list(extra), os.path.dirname(str(out)),
               env=env, check=False)
    if "has no libzip" in proc.stderr:
        pytest.skip("this eoc build has no libzip (eoc pack)")
    assert proc.returncode == 0, proc.stderr
    return str(out)


def arr0_bytes(npz):
    """The raw bytes of the arr_0.npy member (header + data)."""
    with zipfile.ZipFile(npz) as z:
        return z.read("arr_0.npy")


def extra_fields(extra):
    """A zip extra field as {header id: data}."""
    fields = {}
    while len(extra) >= 4:
        tag, size = struct.unpack("<HH", extra[:4])
        fields[tag] = extra[4:4 + size]
        extra = extra[4 + size:]
    return fields


def local_header(npz, info):
    """-> (version needed to extract, {id: data} of the extra field) of member `info`'s local
    header, read from the file (zipfile reads only the central directory's)."""
    with open(npz, "rb") as f:
        f.seek(info.header_offset)
        sig, version, _, _, _, _, _, _, _, name_len, extra_len = struct.unpack("<IHHHHHIIIHH", f.read(30))
        assert sig == 0x04034B50, "no local file header at the member's offset"
        f.read(name_len)
        return version, extra_fields(f.read(extra_len))


def wait_for(predicate, proc, timeout=300):
    start = time.time()
    while not predicate():
        if proc.poll() is not None:
            return False
        if time.time() - start > timeout:
            raise AssertionError("timed out waiting for the sampler")
        time.sleep(0.02)
    return True


# --------------------------------------------------------------------------------------------
# One uninterrupted single-process run of 200 images: the reference of several tests
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference_run(eoc, tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    folder = root / "ref"
    eoc(sample_args(folder, 200, 5), root)
    return dict(dir=folder, npz=pack(eoc, folder, root / "ref.npz"), root=root)


def test_pack_is_numpy_npz_with_settings(reference_run):
    npz = reference_run["npz"]
    with np.load(npz) as data:
        assert list(data.keys()) == ["arr_0"]
        arr = data["arr_0"]
    assert arr.dtype == np.uint8 and arr.shape == (200, 32, 32, 3)
    # Grey model: the three channels are equal; every PNG equals its row.
    assert (arr[..., 0] == arr[..., 2]).all()
    for i in (0, 17, 199):
        assert (np.asarray(Image.open(os.path.join(reference_run["dir"], f"{i:06d}.png"))) == arr[i]).all()
    with zipfile.ZipFile(npz) as z:
        (info,) = z.infolist()
        assert info.filename == "arr_0.npy" and info.compress_type == zipfile.ZIP_STORED
    summary = json.loads(open(npz[:-4] + ".json").read())
    import hashlib
    assert summary["sha256"] == hashlib.sha256(open(npz, "rb").read()).hexdigest()
    assert summary["count"] == 200 and summary["shape"] == [200, 32, 32, 3]
    s = summary["settings"]
    assert s["sampler"] == "ddim" and s["steps"] == 3 and s["cfg_scale"] == 1.0
    assert s["labels"] == "random" and s["seed_mode"] == "per-image" and s["num_samples"] == 200
    assert len(s["model"]["sha256"]) == 64 and "batch_size" not in s


ZIP64 = 0x0001  # the ZIP64 extended information extra field
ZIP64_VERSION = 45  # "version needed to extract" of a ZIP64 member (4.5)


def test_pack_forced_zip64_matches_normal_pack(eoc, reference_run, tmp_path):
    """EOC_PACK_FORCE_ZIP64=1 (a testing aid, docs/FID.md) makes a 200-image pack take the path
    of a real FID-50K npz (~10 GB): the member is streamed without a stated size, so libzip gives
    it ZIP64 headers from the start (version 4.5, a ZIP64 extra field holding the 64-bit sizes in
    the local header) and rewrites them after the data. numpy reads the same arr_0 as the normal
    pack, whose headers (the control) are plain zip. libzip adds the central directory's ZIP64
    field only for values over 4 GiB, which scripts/bench/bench_pack_large.sh checks."""
    normal = reference_run["npz"]
    forced = pack(eoc, reference_run["dir"], tmp_path / "zip64.npz",
                  env=clean_env(EOC_PACK_FORCE_ZIP64=1))
    with zipfile.ZipFile(normal) as z:
        (info,) = z.infolist()
        version, local = local_header(normal, info)
        assert version < ZIP64_VERSION and info.extract_version < ZIP64_VERSION
        assert ZIP64 not in local and ZIP64 not in extra_fields(info.extra)
        member_size = info.file_size
    with zipfile.ZipFile(forced) as z:
        assert z.testzip() is None  # the member's CRC-32 verified
        (info,) = z.infolist()
        assert info.filename == "arr_0.npy" and info.compress_type == zipfile.ZIP_STORED
        assert info.file_size == info.compress_size == member_size
        assert info.extract_version == ZIP64_VERSION  # central directory
        version, local = local_header(forced, info)
    assert version == ZIP64_VERSION and ZIP64 in local
    # The local ZIP64 field: the 64-bit uncompressed and compressed sizes, rewritten after the data.
    assert struct.unpack("<QQ", local[ZIP64][:16]) == (member_size, member_size)
    assert arr0_bytes(forced) == arr0_bytes(normal)
    with np.load(forced) as data, np.load(normal) as want:
        assert list(data.keys()) == ["arr_0"] and data["arr_0"].shape == (200, 32, 32, 3)
        assert (data["arr_0"] == want["arr_0"]).all()
    # Only 1 (or 0 / unset) is accepted.
    proc = eoc(["pack", reference_run["dir"], "-o", tmp_path / "bad.npz"], tmp_path,
               env=clean_env(EOC_PACK_FORCE_ZIP64="yes"), check=False)
    assert proc.returncode == 1 and "EOC_PACK_FORCE_ZIP64 is 'yes'" in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "bad.npz")


def test_three_shards_pack_equals_one_process(run_eoc, eoc, reference_run, tmp_path):
    """96 images as 3 torchrun-style processes (concurrently), then pack: arr_0 bytes equal one
    process with another batch size (the 200-image reference, packed with --num 96)."""
    folder = tmp_path / "shards"
    procs = [run_eoc.start(sample_args(folder, 96, 8), tmp_path,
                           env=clean_env(RANK=r, WORLD_SIZE=3, LOCAL_RANK=r))
             for r in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    records = sorted(os.path.basename(f) for f in glob.glob(str(folder / "eoc-run-*.json")))
    assert records == [f"eoc-run-{r}-of-3.json" for r in range(3)]
    assert json.load(open(folder / "eoc-run-1-of-3.json"))["shard"]["source"] == "torchrun"
    assert len(pngs(folder)) == 96
    shards = pack(eoc, folder, tmp_path / "shards.npz")
    single = pack(eoc, reference_run["dir"], tmp_path / "single96.npz", "--num", "96")
    assert arr0_bytes(shards) == arr0_bytes(single)
    assert np.load(shards)["arr_0"].shape == (96, 32, 32, 3)


def test_shard_flag_wins_over_environment(eoc, tmp_path):
    folder = tmp_path / "d"
    proc = eoc(["sample"] + FAST + ["--num-samples", 5, "--out-dir", folder, "--shard", "1/2"],
               tmp_path, env=clean_env(RANK=0, WORLD_SIZE=3))
    assert [os.path.basename(p) for p in pngs(folder)] == ["000001.png", "000003.png"]
    assert "shard 1/2 (flag)" in proc.stderr
    # Slurm variables are read when torchrun's are absent.
    eoc(sample_args(folder, 5, 2)[:-2] + ["--out-dir", tmp_path / "s"], tmp_path,
        env=clean_env(SLURM_PROCID=2, SLURM_NTASKS=3, SLURM_LOCALID=0))
    assert [os.path.basename(p) for p in pngs(tmp_path / "s")] == ["000002.png"]


def test_sigkill_midway_then_rerun_completes(run_eoc, eoc, reference_run, tmp_path):
    folder = tmp_path / "killed"
    proc = run_eoc.start(sample_args(folder, 200, 4), tmp_path, env=clean_env(), stdout=None,
                         stderr=subprocess.DEVNULL)
    running = wait_for(lambda: len(pngs(folder)) >= 12, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if not running:
        pytest.skip("the sampler finished before it could be killed")
    done = len(pngs(folder))
    assert 12 <= done < 200
    eoc(sample_args(folder, 200, 4), tmp_path)
    files = pngs(folder)
    assert len(files) == 200 and not temp_files(folder)
    for f in files:
        assert np.asarray(Image.open(f)).shape == (32, 32, 3)
    resumed = pack(eoc, folder, tmp_path / "resumed.npz")
    assert arr0_bytes(resumed) == arr0_bytes(reference_run["npz"])


def test_sigterm_exits_143_without_temp_files(run_eoc, tmp_path):
    folder = tmp_path / "term"
    proc = run_eoc.start(sample_args(folder, 400, 2), tmp_path, env=clean_env(), stdout=None)
    running = wait_for(lambda: len(pngs(folder)) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if not running:
        pytest.skip("the sampler finished before SIGTERM")
    assert proc.returncode == 143, err
    assert "SIGTERM" in err
    assert not temp_files(folder)
    assert 2 <= len(pngs(folder)) < 400
    for f in pngs(folder):
        Image.open(f).load()


def test_resume_refuses_changed_settings(eoc, reference_run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(reference_run["dir"], folder)
    args = sample_args(folder, 200, 5)
    args[args.index("--cfg-scale") + 1] = "2"
    proc = eoc(args, tmp_path, check=False)
    assert proc.returncode == 1
    assert "cfg_scale" in proc.stderr and "eoc-run-0-of-1.json" in proc.stderr
    # The same settings with another batch size resume with nothing to do.
    proc = eoc(["sample"] + FAST + ["--num-samples", 200, "--batch-size", 9, "--out-dir", folder],
               tmp_path)
    assert "200 already in" in proc.stderr


def test_pack_refuses_missing_index_and_mismatching_records(eoc, reference_run, tmp_path):
    folder = tmp_path / "gap"
    shutil.copytree(reference_run["dir"], folder)
    os.remove(folder / "000037.png")
    proc = eoc(["pack", folder, "-o", tmp_path / "x.npz"], tmp_path, check=False)
    assert proc.returncode == 1 and "000037.png" in proc.stderr and "lacks 1 of the first 200" in proc.stderr
    assert not os.path.exists(tmp_path / "x.npz")
    # --num below the gap packs the first N.
    pack(eoc, folder, tmp_path / "first30.npz", "--num", "30")
    assert (np.load(tmp_path / "first30.npz")["arr_0"] == np.load(reference_run["npz"])["arr_0"][:30]).all()

    # A truncated PNG is named as unreadable, not as missing.
    with open(folder / "000005.png", "r+b") as f:
        f.truncate(100)
    proc = eoc(["pack", folder, "-o", tmp_path / "x.npz", "--num", "30"], tmp_path, check=False)
    assert proc.returncode == 1 and "000005.png' is unreadable" in proc.stderr, proc.stderr
    assert "lacks" not in proc.stderr

    mixed = tmp_path / "mixed"
    shutil.copytree(reference_run["dir"], mixed)
    record = json.load(open(mixed / "eoc-run-0-of-1.json"))
    record["settings"]["steps"] = 4
    with open(mixed / "eoc-run-1-of-2.json", "w") as f:
        json.dump(record, f)
    proc = eoc(["pack", mixed, "-o", tmp_path / "y.npz"], tmp_path, check=False)
    assert proc.returncode == 1 and "steps" in proc.stderr and "eoc-run-1-of-2.json" in proc.stderr


def test_sharding_refusals(eoc, tmp_path):
    proc = eoc(["sample"] + FAST + ["--seed-mode", "official", "--out-dir", tmp_path / "o",
                                            "--shard", "0/2"], tmp_path, check=False)
    assert proc.returncode == 1 and "--seed-mode official" in proc.stderr
    proc = eoc(["sample", "--shard", "0/2", "--out", tmp_path / "g.png"], tmp_path, check=False)
    assert proc.returncode == 1 and "--out-dir" in proc.stderr
    proc = eoc(["sample", "--shard", "3/2", "--out-dir", tmp_path / "o"], tmp_path, check=False)
    assert proc.returncode == 1 and "--shard '3/2'" in proc.stderr
    proc = eoc(["sample", "--out-dir", tmp_path / "o"], tmp_path, check=False,
               env=clean_env(RANK=1, WORLD_SIZE="x"))
    assert proc.returncode == 1 and "WORLD_SIZE" in proc.stderr


# --------------------------------------------------------------------------------------------
# VAE: decoding in `eoc sample --vae` (the decoder's export: tools/test_export_vae.py)
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
    root = tmp_path_factory.mktemp("vae")
    sd = make_random_vae.random_state_dict((32, 64), layers_per_block=2, latent_channels=4, seed=3)
    weights = str(root / "vae.safetensors")
    make_random_vae.write_safetensors(sd, weights, "F32")
    ts = str(root / "vae.ts")
    export_vae.export(weights, ts)
    return dict(sd=sd, weights=weights, ts=ts, root=root)


def test_sample_with_vae_decodes_latents(eoc, latent_dit, tiny_vae, tmp_path):
    """`--vae` writes RGB PNGs of decode(latent / 0.18215), the pixel conversion of DiT."""
    common = ["-q", "sample", "--model", latent_dit["ts"], "--sampler", "ddim", "--steps", "2",
              "--num-samples", "3", "--batch-size", "3", "--classes", "random", "--cfg-scale", "1.5",
              "--threads", "1"]
    eoc(common + ["--out-raw", tmp_path / "latents.npy"], tmp_path)
    eoc(common + ["--vae", tiny_vae["ts"], "--out-dir", tmp_path / "d", "--image-size", "32",
                  "--latent-size", "16"], tmp_path)
    latents = torch.from_numpy(np.load(tmp_path / "latents.npy"))
    with torch.no_grad():
        images = torch.jit.load(tiny_vae["ts"])(latents / 0.18215)
    want = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    got = np.stack([np.asarray(Image.open(p)) for p in pngs(tmp_path / "d")])
    assert got.shape == (3, 32, 32, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert (got == want).mean() > 0.99
    record = json.load(open(tmp_path / "d" / "eoc-run-0-of-1.json"))
    assert record["settings"]["vae"]["scale"] == 0.18215 and len(record["settings"]["vae"]["sha256"]) == 64


def test_vae_mismatches_are_refused(eoc, latent_dit, pixel_dit, tiny_vae, tmp_path):
    proc = eoc(["sample", "--model", pixel_dit["ts"], "--vae", tiny_vae["ts"], "--steps", "2",
                         "--num-samples", "1"], tmp_path, check=False)
    assert proc.returncode == 1 and "4-channel latents" in proc.stderr and "in_channels 1" in proc.stderr
    proc = eoc(["sample", "--model", latent_dit["ts"], "--steps", "2", "--num-samples", "1",
                         "--out-dir", tmp_path / "d"], tmp_path, check=False)
    assert proc.returncode == 1 and "--vae" in proc.stderr
    proc = eoc(["sample", "--model", latent_dit["ts"], "--vae", tiny_vae["ts"], "--steps", "2",
                         "--num-samples", "1", "--image-size", "256"], tmp_path, check=False)
    assert proc.returncode == 1 and "--image-size 256" in proc.stderr and "32x32" in proc.stderr


# --------------------------------------------------------------------------------------------
# Config files
# --------------------------------------------------------------------------------------------

def config_files(repo_root):
    return sorted(glob.glob(os.path.join(repo_root, "configs", "*.json")))


def test_every_config_loads(eoc, repo_root, tmp_path):
    files = config_files(repo_root)
    assert {os.path.basename(f) for f in files} >= {"dit-xl-2-256.json", "dit-xl-2-512.json", "fmnist-demo.json"}
    for path in files:
        doc = json.load(open(path))
        for sub, extra in [("sample", []), ("compare", []), ("calibrate", ["--out", tmp_path / "p.json"])]:
            proc = eoc([sub, "--config", path, "--dry-run"] + extra, tmp_path)
            out = json.loads(proc.stdout)
            assert out["subcommand"] == sub and out["config"] == path
            top = {k for k in doc if k not in ("description", "sample", "compare", "calibrate")}
            assert top | set(doc.get(sub, {})) == set(out["from_config"])


def test_fid_config_values_and_precedence(eoc, repo_root, tmp_path):
    path = os.path.join(repo_root, "configs", "dit-xl-2-256.json")
    out = json.loads(eoc(["sample", "--config", path, "--dry-run", "--steps", "50"], tmp_path).stdout)
    o = out["options"]
    assert o["steps"] == "50" and "steps" not in out["from_config"]  # the flag wins
    assert (o["sampler"], o["cfg-scale"], o["cfg-channels"], o["classes"]) == ("ddpm", "1.5", "3", "random")
    assert (o["num-samples"], o["seed-mode"], o["vae-scale"]) == ("50000", "per-image", "0.18215")
    assert (o["latent-size"], o["image-size"]) == ("32", "256")
    # The sample section's FID sample count does not leak into calibrate.
    out = json.loads(eoc(["calibrate", "--config", path, "--dry-run", "--out", "p.json"], tmp_path).stdout)
    assert "num-samples" not in out["from_config"] and out["options"]["steps"] == "250"


def test_config_errors_name_key_and_file(eoc, tmp_path):
    cases = [({"stepz": 3}, "unknown key 'stepz'"),
             ({"sample": {"vae-scael": 1}}, "unknown key 'vae-scael'"),
             ({"calibrate": {"nrow": 2}}, "unknown key 'nrow'"),
             ({"tf32": "yes"}, "key 'tf32' is a flag"),
             ({"steps": "many"}, "key 'steps'"),
             ({"config": "other.json"}, "key 'config' cannot be set")]
    for i, (doc, expect) in enumerate(cases):
        path = tmp_path / f"c{i}.json"
        path.write_text(json.dumps(doc))
        proc = eoc(["sample", "--config", path, "--dry-run"], tmp_path, check=False)
        assert proc.returncode == 1 and expect in proc.stderr and str(path) in proc.stderr, proc.stderr
    (tmp_path / "broken.json").write_text("{")
    proc = eoc(["sample", "--config", tmp_path / "broken.json"], tmp_path, check=False)
    assert proc.returncode == 1 and "not valid JSON" in proc.stderr


def test_config_drives_a_real_run(eoc, repo_root, tmp_path):
    path = os.path.join(repo_root, "configs", "fmnist-demo.json")
    eoc(["-q", "sample", "--config", path, "--steps", "2", "--num-samples", "4", "--threads", "1",
                  "--report", tmp_path / "r.json", "--out", tmp_path / "g.png"], tmp_path)
    settings = json.load(open(tmp_path / "r.json"))["settings"]
    assert (settings["steps"], settings["cfg_scale"], settings["num_samples"]) == (2, 4.0, 4)

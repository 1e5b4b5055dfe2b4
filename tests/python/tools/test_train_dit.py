"""scripts/tools/train_dit.py: the IDX reader, DiT's initialisation, the hybrid loss's terms, and a
two-step run whose checkpoint has the official layout and exports."""
import gzip
import os
import subprocess

import numpy as np
import torch

import make_random_dit
import train_dit
from dit_module import DiT


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_dataset(root, n=6):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28))
    labels = np.arange(n) % 10
    _write_idx(root / "train-images-idx3-ubyte.gz", images)
    _write_idx(root / "train-labels-idx1-ubyte.gz", labels)
    return images, labels


def test_reads_idx_and_pads_to_32(tmp_path):
    images, labels = _fake_dataset(tmp_path)
    assert np.array_equal(train_dit.read_idx(str(tmp_path / "train-images-idx3-ubyte.gz")), images)
    x, y = train_dit.load_fashion_mnist(str(tmp_path))
    assert x.shape == (6, 1, 32, 32) and y.tolist() == labels.tolist()
    assert torch.all(x[:, :, :2, :] == -1.0) and torch.all(x[:, :, :, 30:] == -1.0)
    assert torch.allclose(x[:, 0, 2:30, 2:30], torch.from_numpy(images / 127.5 - 1.0).float(), atol=1e-6)


def test_official_init_is_adaln_zero():
    torch.manual_seed(0)
    model = DiT(16, 4, 1, 32, 2, 2, 10, True)
    train_dit.official_init(model)
    for block in model.blocks:
        assert torch.count_nonzero(block.adaLN_modulation[-1].weight) == 0
    assert torch.count_nonzero(model.final_layer.linear.weight) == 0
    assert torch.allclose(model.pos_embed[0], torch.from_numpy(make_random_dit.sincos_2d(32, 4)).float())
    out = model(torch.randn(3, 1, 16, 16), torch.tensor([0, 10, 999]), torch.tensor([1, 2, 10]))
    assert out.shape == (3, 2, 16, 16) and torch.count_nonzero(out) == 0


def test_hybrid_terms_vanish_for_the_true_noise_and_posterior_variance():
    d = train_dit.Diffusion()
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.tensor([1, 10, 500, 999])
    xt = d.at(d.sqrt_abar, t) * x0 + d.at(d.sqrt_1m_abar, t) * noise
    v_post = -torch.ones_like(x0)  # frac 0: the model's variance is the true posterior's
    mse, vb = d.hybrid_terms(x0, xt, t, noise, noise.clone(), v_post)
    assert torch.all(mse == 0) and torch.all(vb.abs() < 1e-4)
    # A wrong variance or a wrong noise prediction costs bits.
    _, vb_var = d.hybrid_terms(x0, xt, t, noise, noise.clone(), -v_post)
    _, vb_eps = d.hybrid_terms(x0, xt, t, noise, noise + 0.5, v_post)
    # (the two variances differ most at small t; they meet as t grows)
    assert torch.all(vb_var[:2] > 1e-3) and torch.all(vb_eps > 1e-3)


def test_two_steps_write_an_official_checkpoint_that_exports(tmp_path, repo_root, python_exe):
    _fake_dataset(tmp_path)
    out = tmp_path / "tiny.pt"
    subprocess.run([python_exe, os.path.join(repo_root, "scripts", "tools", "train_dit.py"), "-o", str(out),
                    "--data", str(tmp_path), "--steps", "2", "--batch", "4", "--depth", "2",
                    "--hidden", "32", "--heads", "2", "--threads", "1"], check=True,
                   capture_output=True)
    sd = torch.load(str(out))
    want = make_random_dit.random_state_dict(2, 32, 4, 32, 1, 10, True, 0)
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in want.items()}
    assert (tmp_path / "tiny.json").exists()
    ts = tmp_path / "tiny.ts"
    subprocess.run([python_exe, os.path.join(repo_root, "scripts", "tools", "export_dit.py"), str(out),
                    "-o", str(ts), "--num-heads", "2"], check=True, capture_output=True)
    assert ts.stat().st_size > 0


def test_missing_or_corrupt_data_is_one_clear_error(tmp_path, repo_root, python_exe):
    script = os.path.join(repo_root, "scripts", "tools", "train_dit.py")
    out = tmp_path / "never.pt"
    for data in (tmp_path / "absent", tmp_path):
        if data == tmp_path:  # present but not gzip
            (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
            (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
        proc = subprocess.run([python_exe, script, "-o", str(out), "--data", str(data),
                               "--steps", "1"], capture_output=True, text=True)
        assert proc.returncode != 0
        assert proc.stderr.startswith("train_dit: cannot read Fashion-MNIST"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not out.exists()

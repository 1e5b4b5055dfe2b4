"""scripts/bench/fmnist_fid.py: the Fréchet distance (zero, symmetric, the closed form of two
diagonal Gaussians, the trace term of general and singular covariances), the 8-bit quantisation
of the samples before the classifier (as eoc writes a PNG), and the committed classifier."""
import json
import os
import sys

import numpy as np
import pytest
import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "scripts", "bench"))
import fmnist_fid as ff  # noqa: E402

CLASSIFIER = os.path.join(REPO, "third_party", "models", "fmnist-classifier.pt")


@pytest.fixture(scope="module")
def classifier():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield ff.load_classifier(CLASSIFIER)
    torch.set_num_threads(before)


def with_stats(rng, n, mean, std):
    """n samples (n, D) whose sample mean is exactly `mean` and sample covariance (N - 1)
    exactly diag(std**2)."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(axis=0)
    l = np.linalg.cholesky(np.cov(z, rowvar=False))
    white = np.linalg.solve(l, z.T).T  # sample covariance: identity
    return white * std + mean


def test_frechet_distance_is_zero_for_the_same_features_and_symmetric():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 8)) @ rng.standard_normal((8, 8))
    b = rng.standard_normal((200, 8)) * 2 + 0.5
    assert ff.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    d = ff.frechet_distance(a, b)
    assert d > 1 and d == pytest.approx(ff.frechet_distance(b, a), rel=1e-9)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    rng = np.random.default_rng(1)
    mu_a, sd_a = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 0.5, 2.0, 3.0])
    mu_b, sd_b = np.array([1.0, 1.0, 0.0, 0.5]), np.array([2.0, 0.5, 1.0, 0.1])
    a, b = with_stats(rng, 500, mu_a, sd_a), with_stats(rng, 400, mu_b, sd_b)
    want = np.sum((mu_a - mu_b) ** 2) + np.sum((sd_a - sd_b) ** 2)  # 1 + 0 + 4 + 0, + 1 + 0 + 1 + 8.41
    assert want == pytest.approx(15.41)
    assert ff.frechet_distance(a, b) == pytest.approx(want, rel=1e-9)


def test_the_trace_term_is_that_of_the_product_also_for_singular_covariances():
    rng = np.random.default_rng(2)
    ma, mb = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    ca, cb = ma @ ma.T + 0.1 * np.eye(6), mb @ mb.T + 0.1 * np.eye(6)
    mu = np.zeros(6)
    # tr((Ca Cb)^(1/2)) from the (real, positive) eigenvalues of the non-symmetric product
    tr_sqrt = np.sqrt(np.linalg.eigvals(ca @ cb).real).sum()
    want = np.trace(ca) + np.trace(cb) - 2 * tr_sqrt
    assert ff.frechet_from_stats(mu, ca, mu, cb) == pytest.approx(want, rel=1e-9)
    # fewer samples than dimensions (rank-deficient covariances): still real, >= 0, symmetric
    a, b = rng.standard_normal((5, 64)), rng.standard_normal((7, 64)) + 0.1
    d = ff.frechet_distance(a, b)
    assert np.isfinite(d) and d > 0 and d == pytest.approx(ff.frechet_distance(b, a), rel=1e-7)
    assert ff.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_features_see_the_8_bit_levels_of_the_samples(classifier):
    rng = np.random.default_rng(3)
    levels = rng.integers(0, 256, size=(6, 1, 32, 32)).astype(np.uint8)
    x = ff.levels_to_values(levels)  # the centres of the levels' intervals
    half = 0.5 / 127.5
    near = x + rng.uniform(-0.98 * half, 0.98 * half, size=x.shape).astype(np.float32)
    assert np.array_equal(ff.quantise(near), levels)
    f = ff.features(classifier, x)
    assert f.shape == (6, ff.FEATURE_DIM)
    assert np.array_equal(ff.features(classifier, near), f)
    assert np.array_equal(ff.features(classifier, levels), f)  # uint8: levels already
    up = ff.levels_to_values(np.minimum(levels.astype(int) + 1, 255).astype(np.uint8))
    assert not np.array_equal(ff.features(classifier, up), f)  # a whole level does change them
    # out of range: clamped first, as a PNG would be
    far = np.where(x > 0.9, x + 3.0, np.where(x < -0.9, x - 3.0, x)).astype(np.float32)
    assert np.array_equal(ff.features(classifier, far), ff.features(classifier, np.clip(far, -1, 1)))
    with pytest.raises(ValueError):
        ff.features(classifier, np.zeros((2, 1, 16, 16), np.float32))


def test_quantise_gives_the_pixels_of_eocs_pngs(eoc_bin, run_eoc, tmp_path):
    from PIL import Image
    run_eoc(["-q", "sample", "--steps", "2", "--num-samples", "2", "--batch-size", "2", "--threads", "1",
             "--out-raw", tmp_path / "x.npy", "--out-dir", tmp_path / "png"], tmp_path)
    raw = np.load(tmp_path / "x.npy")
    assert raw.shape == (2, 1, 32, 32)
    png = np.stack([np.asarray(Image.open(tmp_path / "png" / f"{i:06d}.png"))[:, :, 0] for i in range(2)])
    assert np.array_equal(ff.quantise(raw)[:, 0], png)


def test_the_committed_classifier_and_its_sidecar(classifier):
    with open(os.path.splitext(CLASSIFIER)[0] + ".json") as f:
        info = json.load(f)
    assert info["test_accuracy"] >= 0.9 and info["feature_dim"] == ff.FEATURE_DIM
    assert os.path.getsize(CLASSIFIER) < 1_000_000
    assert all(v.dtype == torch.float32 for v in torch.load(CLASSIFIER).values() if v.is_floating_point())
    images, labels = ff.load_split("test")
    assert images.shape == (10000, 32, 32) and (images[:, :2] == 0).all()  # padded with -1
    assert ff.accuracy(classifier, images[:1000], labels[:1000]) >= 0.88

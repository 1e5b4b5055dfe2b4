"""`eoc compare`'s paired quality numbers (MSE, PSNR, SSIM) against an independent computation.

`eoc compare` samples the same seeds uncached and cached and compares the two float image sets
(src/runs/image_quality.cpp). `eoc sample --out-raw` with the same flags writes exactly those
float images (per-image seed streams, same batches), so the reference below recomputes the
metrics from them in float64 NumPy, written from the definitions rather than from eoc's code:

- MSE: mean of (cached - uncached)^2 over every value of every image, on the raw outputs as
  eoc compares them (not clamped; see `reference_quality`).
- PSNR: 10 log10(peak^2 / MSE) with peak-to-peak 2 (images on [-1, 1]), from the MSE pooled over
  all images (not a mean of per-image PSNRs); identical images give +inf, which the JSON spells
  "inf".
- SSIM (Wang, Bovik, Sheikh, Simoncelli 2004, and their reference ssim_index.m): both image sets
  clamped to [-1, 1] (dynamic range L = 2), an 11x11 Gaussian window with sigma 1.5 normalised to
  sum 1, K1 = 0.01, K2 = 0.03 (C1 = (K1 L)^2, C2 = (K2 L)^2), local weighted means, variances and
  the covariance computed per window as weighted sums of deviations from the window's mean, only
  where the window lies wholly inside the image ('valid'), each channel on its own; the result is
  the mean of the SSIM map over every position, channel and image. Images smaller than the window
  have no SSIM: the JSON gives null.

The images come from the built-in Fashion-MNIST model (32x32, trained: the caching error is
structured and SSIM is far from 1; the tiny random fixtures' outputs reach +-1000, where clamping
makes SSIM ~1 whatever the convention). The closed forms use the tiny random fixtures."""
import json

import numpy as np
import pytest
import torch

import export_dit
import make_random_dit

# Same flags for `compare` and both `sample --out-raw` runs: 3 images in batches of 2 (so the
# concatenation of batches is covered), 6 DDIM steps, FORA interval 2.
FLAGS = ["--threads", 1, "--steps", 6, "--num-samples", 3, "--batch-size", 2]
CACHE = ["--cache", "fora:2"]

# eoc computes in float32 (the difference, its square and mean; the Gaussian blurs of x, x^2 and
# xy as float32 convolutions, variances as E[x^2] - mu^2), the reference in float64 over the same
# float32 images. Measured gaps on these images: MSE 2e-8 relative, PSNR 9e-8 dB, SSIM 1.6e-6
# (float32 cancellation in E[x^2] - mu^2 where a clamped background makes mu ~ -1 and the
# variance ~ 0; a float32 torch replica of that formula reproduces eoc's SSIM exactly). The
# tolerances leave room for other summation orders (MSE 50x, PSNR 100x, SSIM 6x) and stay far
# below what a change of convention moves on these images: the test requires >= 100x its
# tolerance for each (measured: >= 0.27 dB for PSNR, >= 0.024 for SSIM).
MSE_RTOL = 1e-6
PSNR_ATOL_DB = 1e-5  # 10 / ln 10 x the relative MSE error: ~4.3 x MSE_RTOL
SSIM_ATOL = 1e-5
SEPARATION = 100  # a convention change must move the metric by this many tolerances


def gaussian_window(size=11, sigma=1.5):
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g)
    return w / w.sum()


def mean_ssim(x, y, data_range=2.0, sigma=1.5, size=11, pad=0):
    """Mean SSIM of two (N, C, H, W) float64 arrays; windows wholly inside the image unless pad
    (zero padding on every side, for the sensitivity check only)."""
    if pad:
        widths = ((0, 0), (0, 0), (pad, pad), (pad, pad))
        x, y = np.pad(x, widths), np.pad(y, widths)
    if x.shape[2] < size or x.shape[3] < size:
        return None
    w = gaussian_window(size, sigma)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    view = np.lib.stride_tricks.sliding_window_view
    px, py = view(x, (size, size), axis=(2, 3)), view(y, (size, size), axis=(2, 3))
    mu_x = (px * w).sum(axis=(-2, -1))
    mu_y = (py * w).sum(axis=(-2, -1))
    dx = px - mu_x[..., None, None]
    dy = py - mu_y[..., None, None]
    var_x = (w * dx * dx).sum(axis=(-2, -1))
    var_y = (w * dy * dy).sum(axis=(-2, -1))
    cov = (w * dx * dy).sum(axis=(-2, -1))
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / \
               ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def psnr(mse, data_range=2.0):
    return 10 * np.log10(data_range ** 2 / mse) if mse > 0 else float("inf")


def reference_quality(cached, uncached, clamp_for_mse=False, **ssim_args):
    """eoc's conventions: MSE and PSNR on the raw outputs, SSIM on images clamped to [-1, 1].
    The raw outputs do leave [-1, 1] (here down to -1.7 and up to 2.6), so PSNR's peak of 2 does
    not bound them and clamping would change it (by +1 dB here); this follows eoc as it is, and
    if eoc comes to clamp for MSE and PSNR too, clamp_for_mse=True is the reference's one change."""
    a, b = cached.astype(np.float64), uncached.astype(np.float64)
    ca, cb = np.clip(a, -1, 1), np.clip(b, -1, 1)
    mse = float(((ca - cb) ** 2).mean() if clamp_for_mse else ((a - b) ** 2).mean())
    return dict(mse=mse, psnr_db=psnr(mse), ssim=mean_ssim(ca, cb, **ssim_args))


def compare_json(run_eoc, tmp_path, model_args, flags, cache):
    proc = run_eoc(["-q", "compare", "--json"] + model_args + flags + cache, tmp_path)
    return json.loads(proc.stdout)


def sample_raw(run_eoc, tmp_path, model_args, flags, cache, name):
    out = tmp_path / name
    run_eoc(["-q", "sample"] + model_args + flags + cache + ["--out-raw", out], tmp_path)
    return np.load(str(out))


def test_compare_metrics_match_an_independent_computation(run_eoc, builtin_model, tmp_path):
    model = ["--model", builtin_model]
    got = compare_json(run_eoc, tmp_path, model, FLAGS, CACHE)
    uncached = sample_raw(run_eoc, tmp_path, model, FLAGS, [], "uncached.npy")
    cached = sample_raw(run_eoc, tmp_path, model, FLAGS, CACHE, "cached.npy")
    assert uncached.shape == cached.shape == (3, 1, 32, 32) and cached.dtype == np.float32

    # The raw files hold the very images compare compared: the max |difference| is exact in
    # float32 (no rounding), so it must agree to the bit.
    assert got["max_abs_diff"] == float(np.abs(cached - uncached).max())

    want = reference_quality(cached, uncached)
    assert 0 < want["mse"] and 0.2 < want["ssim"] < 0.98, want  # a case with something to measure
    assert got["mse"] == pytest.approx(want["mse"], rel=MSE_RTOL, abs=0)
    assert got["psnr_db"] == pytest.approx(want["psnr_db"], rel=0, abs=PSNR_ATOL_DB)
    assert got["ssim"] == pytest.approx(want["ssim"], rel=0, abs=SSIM_ATOL)

    # These images tell the conventions apart: each plausible other one moves its metric by more
    # than SEPARATION tolerances, so the checks above pin eoc's convention, not just any value.
    a, b = cached.astype(np.float64), uncached.astype(np.float64)
    other_psnr = {
        "of the clamped images": reference_quality(cached, uncached, clamp_for_mse=True)["psnr_db"],
        "for data range 1": psnr(want["mse"], data_range=1.0),
        "mean of per-image PSNRs": float(np.mean([psnr(((x - y) ** 2).mean())
                                                  for x, y in zip(a, b)])),
    }
    for name, value in other_psnr.items():
        assert abs(value - got["psnr_db"]) > SEPARATION * PSNR_ATOL_DB, (name, value, got)
    other_ssim = {
        "with sigma 1.0": reference_quality(cached, uncached, sigma=1.0)["ssim"],
        "with a 7x7 window": reference_quality(cached, uncached, size=7)["ssim"],
        "for data range 1 (C1, C2)": reference_quality(cached, uncached, data_range=1.0)["ssim"],
        "with zero padding ('same')": reference_quality(cached, uncached, pad=5)["ssim"],
        "of the unclamped images": mean_ssim(a, b),
    }
    for name, value in other_ssim.items():
        assert abs(value - got["ssim"]) > SEPARATION * SSIM_ATOL, (name, value, got)


def test_identical_images_give_infinite_psnr_and_ssim_one(run_eoc, pixel_dit, tmp_path):
    """--cache none: the "cached" images are the uncached ones, bit for bit."""
    got = compare_json(run_eoc, tmp_path, ["--model", pixel_dit["ts"]],
                       ["--threads", 1, "--steps", 4, "--num-samples", 2], ["--cache", "none"])
    assert got["mse"] == 0 and got["max_abs_diff"] == 0
    assert got["psnr_db"] == "inf"
    assert got["ssim"] == pytest.approx(1.0, rel=0, abs=1e-6)


@pytest.fixture(scope="module")
def small_pixel_dit(tmp_path_factory):
    """A tiny random DiT of 8x8 images, smaller than SSIM's 11x11 window."""
    d = tmp_path_factory.mktemp("small_dit")
    sd = make_random_dit.random_state_dict(depth=2, hidden=32, patch=2, input_size=8,
                                           in_channels=1, num_classes=5, learn_sigma=False, seed=3)
    torch.save(sd, str(d / "small.pt"))
    export_dit.export(str(d / "small.pt"), str(d / "small.ts"), num_heads=2)
    return str(d / "small.ts")


def test_images_smaller_than_the_window_have_no_ssim(run_eoc, small_pixel_dit, tmp_path):
    flags = ["--threads", 1, "--steps", 4, "--num-samples", 2]
    model = ["--model", small_pixel_dit]
    got = compare_json(run_eoc, tmp_path, model, flags, CACHE)
    assert got["ssim"] is None
    uncached = sample_raw(run_eoc, tmp_path, model, flags, [], "uncached.npy")
    cached = sample_raw(run_eoc, tmp_path, model, flags, CACHE, "cached.npy")
    assert cached.shape[2:] == (8, 8)
    want = reference_quality(cached, uncached)
    assert want["ssim"] is None and want["mse"] > 0
    assert got["mse"] == pytest.approx(want["mse"], rel=MSE_RTOL, abs=0)
    assert got["psnr_db"] == pytest.approx(want["psnr_db"], rel=0, abs=PSNR_ATOL_DB)


def test_compare_out_picture_layout(run_eoc, builtin_model, tmp_path):
    """--out-picture: one row per compared image, uncached | cached | |difference| (white = the
    largest difference, which the JSON states), in make_grid's layout (2-pixel black borders);
    the first two panels are the very PNG pixels `eoc sample --out` would write."""
    from PIL import Image

    model = ["--model", builtin_model]
    picture = tmp_path / "side.png"
    proc = run_eoc(["compare", "--json"] + model + FLAGS + CACHE + ["--out-picture", picture],
                   tmp_path)
    got = json.loads(proc.stdout)
    uncached = sample_raw(run_eoc, tmp_path, model, FLAGS, [], "uncached.npy")
    cached = sample_raw(run_eoc, tmp_path, model, FLAGS, CACHE, "cached.npy")
    img = np.asarray(Image.open(picture))
    n, h, w = 3, 32, 32
    assert img.shape[:2] == (n * (h + 2) + 2, 3 * (w + 2) + 2)
    if img.ndim == 3:
        img = img[:, :, 0]

    def pixels(x):  # DiT's conversion, as eoc's PNGs
        return np.clip(x[0] * 127.5 + 128.0, 0, 255).astype(np.uint8)

    def panel(row, col):
        return img[2 + row * (h + 2):2 + row * (h + 2) + h, 2 + col * (w + 2):2 + col * (w + 2) + w]

    diff = np.abs(cached.astype(np.float32) - uncached.astype(np.float32))
    top = float(diff.max())
    assert top > 0 and got["picture"]["white_is_abs_diff"] == pytest.approx(top, rel=1e-6)
    for i in range(n):
        assert np.array_equal(panel(i, 0), pixels(uncached[i]))
        assert np.array_equal(panel(i, 1), pixels(cached[i]))
        want = np.round(diff[i, 0] * (255.0 / top))
        assert np.abs(panel(i, 2).astype(int) - want).max() <= 1
    assert panel(int(np.argmax(diff.reshape(n, -1).max(axis=1))), 2).max() == 255
    # borders are black
    assert img[:2].max() == 0 and img[:, :2].max() == 0

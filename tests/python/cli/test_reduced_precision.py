"""End to end, `eoc sample --dtype bf16` on the CPU: the ATen path of the hook's residual update
(the one CUDA takes too) against fp32, with and without a cache and a corrector.

Its own module because it is the slowest CLI test by far (bf16 matmuls on a CPU without native
bf16 are ~20x slower than fp32 ones; four images of 20 steps, three times): CTest runs it beside
the other modules instead of after the rest of cli/test_cli_sampling.py."""
import numpy as np

# One thread, as in the other CLI tests.
THREADS = ["--threads", "1"]


def sample_raw(run_eoc, tmp_path, args, name):
    """`eoc -q sample ARGS --out-raw tmp/NAME`; returns the float32 (N, C, H, W) array."""
    out = tmp_path / name
    run_eoc(["-q", "sample"] + THREADS + list(args) + ["--out-raw", out], tmp_path)
    arr = np.load(str(out))
    assert arr.dtype == np.float32 and arr.ndim == 4
    return arr


def test_bf16_sampling_close_to_fp32_and_forecast_still_helps(run_eoc, builtin_model, tmp_path):
    """`--dtype bf16` (the ATen path of the hook's residual update, which CUDA takes too): the
    trained model's images stay close to fp32 ones (measured: MSE 1.3e-4 on this model), and
    with fora:3 the taylor forecast is still much closer to uncached than plain reuse (measured:
    0.19x plain's MSE)."""
    base = ["--model", builtin_model, "--sampler", "ddim", "--steps", 20, "--respacing", "even",
            "--cfg-scale", 1.5, "--cfg-channels", "3", "--num-samples", 4, "--batch-size", 4,
            "--seed", 0, "--seed-mode", "per-image"]
    fp32 = sample_raw(run_eoc, tmp_path, base, "fp32.npy")
    bf16 = sample_raw(run_eoc, tmp_path, base + ["--dtype", "bf16"], "bf16.npy")
    plain = sample_raw(run_eoc, tmp_path, base + ["--dtype", "bf16", "--cache", "fora:3"],
                       "plain.npy")
    taylor = sample_raw(run_eoc, tmp_path, base + ["--dtype", "bf16", "--cache", "fora:3",
                                                   "--correct", "taylor"], "taylor.npy")
    def mse(a, b):
        return float(((a - b) ** 2).mean())
    assert np.isfinite(bf16).all() and np.isfinite(taylor).all()
    assert 0 < mse(bf16, fp32) < 2e-3
    assert mse(taylor, bf16) < 0.5 * mse(plain, bf16)

"""What the CLI parity tests share: how eoc's raw samples are held against the reference
sampler's (scripts/testing/reference_sampler.py, reference_flow.py)."""
import numpy as np

TOL = 1e-4  # max |C++ - reference| on the raw samples (float32 CPU)


def assert_close(got, want, tol=TOL):
    """Same shape, finite, and max |got - want| <= tol (in float64)."""
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.isfinite(got).all()
    diff = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
    assert diff <= tol, f"max |diff| = {diff:.3g} > {tol}"

"""Shared fixtures: repository paths, the Python interpreter, and small random DiT models
exported through the project's own scripts (once per test session)."""
import os
import sys

import pytest
import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# The Python scripts the tests import: user tools (export_dit, cache_mask, ...) and the test
# fixtures and reference (make_random_dit, reference_sampler, ...).
for _folder in ("tools", "testing"):
    _path = os.path.join(REPO, "scripts", _folder)
    if _path not in sys.path:
        sys.path.insert(0, _path)

import export_dit  # noqa: E402
import make_random_dit  # noqa: E402

# name -> (architecture for make_random_dit.random_state_dict, heads)
FIXTURES = {
    # latent-like: 4 channels, learn_sigma (8 output channels), patch 2, 64 tokens
    "latent": (dict(depth=3, hidden=64, patch=2, input_size=16, in_channels=4, num_classes=10,
                    learn_sigma=True, seed=0), 4),
    # pixel-like: 1 channel, no sigma channels (fixed-large variance), patch 4, 16 tokens
    "pixel": (dict(depth=2, hidden=32, patch=4, input_size=16, in_channels=1, num_classes=5,
                   learn_sigma=False, seed=1), 2),
}


@pytest.fixture(scope="session")
def repo_root():
    return REPO


@pytest.fixture(scope="session")
def python_exe():
    """The interpreter running the tests (it has torch); scripts run under it too."""
    return sys.executable


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("dit_fixtures")


@pytest.fixture(scope="session")
def random_dits(fixture_dir):
    """name -> dict(ckpt=path, ts=path, sd=state dict, heads=int, **architecture)."""
    out = {}
    for name, (arch, heads) in FIXTURES.items():
        sd = make_random_dit.random_state_dict(**arch)
        ckpt = str(fixture_dir / f"{name}.pt")
        ts = str(fixture_dir / f"{name}.ts")
        torch.save(sd, ckpt)
        export_dit.export(ckpt, ts, num_heads=heads)
        out[name] = dict(arch, ckpt=ckpt, ts=ts, sd=sd, heads=heads)
    return out


@pytest.fixture(scope="session")
def latent_dit(random_dits):
    return random_dits["latent"]


@pytest.fixture(scope="session")
def pixel_dit(random_dits):
    return random_dits["pixel"]


@pytest.fixture(scope="session")
def shared_models_dir():
    return os.path.abspath(os.path.join(REPO, "..", "shared", "models"))


@pytest.fixture(scope="session")
def fmnist_ckpt(shared_models_dir):
    path = os.path.join(shared_models_dir, "fmnist-dit-s4.pt")
    if not os.path.isfile(path):
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def fmnist_ts():
    path = os.path.join(REPO, "third_party", "models", "fmnist-dit-s4.ts")
    if not os.path.isfile(path):
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def eoc_bin():
    """The eoc binary under test: $EOC_BINARY, else build/eoc in the repository."""
    path = os.environ.get("EOC_BINARY") or os.path.join(REPO, "build", "eoc")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.skip(f"eoc binary {path} not built (set EOC_BINARY or build into build/)")
    return path


@pytest.fixture(scope="session")
def builtin_model(fmnist_ts):
    """The built-in Fashion-MNIST model, third_party/models/fmnist-dit-s4.ts."""
    return fmnist_ts

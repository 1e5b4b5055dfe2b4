"""The cache masks shipped in configs/cache/ and the mask format checks (docs/CACHE_MASKS.md)."""
import json
import os

import pytest

import cache_mask  # scripts/tools/, on sys.path through conftest.py

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

SHIPPED = {
    "eoc-ddim20-25.json": (0.25, {1, 3, 5, 7, 9}),
    "eoc-ddim20-50.json": (0.50, set(range(1, 20, 2))),
    "eoc-ddim20-75.json": (0.75, set(range(20)) - {0, 4, 8, 12, 16}),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_mask(name):
    level, reused = SHIPPED[name]
    mask = cache_mask.load(os.path.join(ROOT, "configs", "cache", name))
    assert mask["steps"] == 20
    assert isinstance(mask.get("description"), str) and mask["description"]
    assert {s for s, e in enumerate(mask["schedule"]) if e == "reuse"} == reused
    assert all(e in ("compute", "reuse") for e in mask["schedule"])
    assert cache_mask.caching_level(mask) == pytest.approx(level)


def test_no_other_shipped_masks_are_invalid():
    folder = os.path.join(ROOT, "configs", "cache")
    for name in os.listdir(folder):
        if name.endswith(".json"):
            cache_mask.load(os.path.join(folder, name))


def base(schedule, **extra):
    mask = {"format": "eoc-cache-mask", "version": 1, "steps": len(schedule), "schedule": schedule}
    mask.update(extra)
    return mask


def test_per_block_level():
    mask = base(["compute", {"attn": [0, 1], "mlp": [0, 0]}], depth=2)
    assert cache_mask.caching_level(mask) == pytest.approx(3 / 8)


@pytest.mark.parametrize("mask, text", [
    (base(["reuse", "compute"]), "must compute everything"),
    (base([{"attn": [1, 0], "mlp": [1, 1]}, "compute"], depth=2), "must compute everything"),
    (base(["compute", {"attn": [1], "mlp": [0]}]), "needs \"depth\""),
    (base(["compute", {"attn": [1], "mlp": [0]}], depth=2), "list of 2"),
    (base(["compute", {"attn": [1, 2], "mlp": [0, 0]}], depth=2), "only 0"),
    (base(["compute", {"attn": [1, 1]}], depth=2), "exactly the keys"),
    (base(["compute", "skip"]), "schedule[1]"),
    (dict(base(["compute"]), steps=2), "list of 2 entries"),
    (dict(base(["compute"]), format="other"), "format"),
    (dict(base(["compute"]), version=2), "version"),
])
def test_invalid_masks(mask, text):
    with pytest.raises(cache_mask.MaskError) as info:
        cache_mask.validate(json.loads(json.dumps(mask)))
    assert text in str(info.value)

#!/usr/bin/env python3
"""Convert a Learning-to-Cache router checkpoint into an eoc cache mask (docs/CACHE_MASKS.md).

    convert_l2c_router.py ROUTER.pt -o MASK.json [--threshold 0.1] [--depth L]

ROUTER.pt holds a dict whose 'routers' entry is a state dict with one logit vector per respaced
timestep: '{k}.prob' (optionally behind a prefix, e.g. 'routers.{k}.prob'), k = 0..S-1 in
increasing timestep order, each of 2*depth entries (2l = attention of block l, 2l+1 = its MLP).
Sampling step s runs timestep k = S-1-s. Only even k are cache steps: there a branch is computed
iff sigmoid(logit) > threshold and reused otherwise; odd k compute everything. The first sampling
step (s = 0) always computes everything, since nothing is cached yet.
"""
import argparse
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cache_mask  # noqa: E402

_KEY = re.compile(r"(?:^|\.)(\d+)\.prob$")


class ConvertError(Exception):
    pass


def load_router_logits(path):
    """Returns the list of per-timestep logit lists, indexed by k (increasing timestep)."""
    import torch

    if not os.path.isfile(path):
        raise ConvertError(f"router checkpoint '{path}' does not exist")
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as exc:  # torch raises many types for a bad file
        raise ConvertError(f"'{path}' is not a torch checkpoint ({exc.__class__.__name__})")
    if not isinstance(obj, dict) or "routers" not in obj:
        raise ConvertError(f"'{path}' has no 'routers' entry (not a Learning-to-Cache router checkpoint)")
    routers = obj["routers"]
    if hasattr(routers, "state_dict") and callable(routers.state_dict):
        routers = routers.state_dict()
    if not isinstance(routers, dict):
        raise ConvertError(f"'routers' in '{path}' is a {type(routers).__name__}, expected a state dict")
    by_step = {}
    for key, value in routers.items():
        match = _KEY.search(str(key))
        if not match:
            continue
        k = int(match.group(1))
        if k in by_step:
            raise ConvertError(f"'routers' has two entries for timestep index {k} (e.g. '{key}')")
        if not torch.is_tensor(value):
            raise ConvertError(f"'routers' entry '{key}' is not a tensor")
        by_step[k] = value.detach().double().reshape(-1).tolist()
    if not by_step:
        raise ConvertError("'routers' has no '{k}.prob' entries")
    steps = len(by_step)
    if sorted(by_step) != list(range(steps)):
        absent = sorted(set(range(max(by_step) + 1)) - set(by_step))
        raise ConvertError(f"'routers' entries must be numbered 0..{steps - 1}; index {absent[0]} is missing")
    return [by_step[k] for k in range(steps)]


def build_mask(logits, threshold, depth=None, source="router"):
    """Returns (mask, notes, reused, level): the eoc-cache-mask object, stderr notes, the number
    of reused branch-steps and their fraction."""
    steps = len(logits)
    lengths = sorted({len(v) for v in logits})
    if len(lengths) != 1:
        raise ConvertError(f"router logit vectors have inconsistent lengths {lengths} across timesteps")
    width = lengths[0]
    if width == 0 or width % 2:
        raise ConvertError(f"router logit vectors have {width} entries; expected 2 x depth (attention and MLP per block)")
    if depth is None:
        depth = width // 2
    elif 2 * depth != width:
        raise ConvertError(f"--depth {depth} needs {2 * depth} logits per timestep, the router has {width}")
    notes = []
    schedule = []
    reused = 0
    for s in range(steps):
        k = steps - 1 - s
        attn = [1] * depth
        mlp = [1] * depth
        if k % 2 == 0:
            for l in range(depth):
                attn[l] = int(_sigmoid(logits[k][2 * l]) > threshold)
                mlp[l] = int(_sigmoid(logits[k][2 * l + 1]) > threshold)
            if s == 0:
                would = attn.count(0) + mlp.count(0)
                notes.append(f"timestep index k={k} is the first sampling step: computing all branches there "
                             f"(nothing is cached yet; the router would have reused {would})")
                attn = [1] * depth
                mlp = [1] * depth
        zeros = attn.count(0) + mlp.count(0)
        reused += zeros
        schedule.append({"attn": attn, "mlp": mlp} if zeros else "compute")
    level = reused / (steps * 2 * depth)
    mask = {
        "format": cache_mask.FORMAT,
        "version": cache_mask.VERSION,
        "description": (f"Learning-to-Cache router {source}, threshold {threshold:g}: "
                        f"{reused} of {steps * 2 * depth} branch-steps reused ({100 * level:.1f}%)"),
        "steps": steps,
        "depth": depth,
        "schedule": schedule,
    }
    cache_mask.validate(mask)
    return mask, notes, reused, level


def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("router", help="Learning-to-Cache router checkpoint (.pt)")
    parser.add_argument("-o", "--out", required=True, help="cache mask JSON to write")
    parser.add_argument("--threshold", type=float, default=0.1,
                        help="compute a branch iff sigmoid(logit) > threshold (default 0.1)")
    parser.add_argument("--depth", type=int, help="expected transformer depth (checked against the router)")
    args = parser.parse_args(argv)
    try:
        if not 0.0 <= args.threshold <= 1.0:
            raise ConvertError(f"--threshold {args.threshold:g} must lie in [0, 1]")
        if args.depth is not None and args.depth < 1:
            raise ConvertError(f"--depth {args.depth} must be positive")
        out_dir = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(out_dir):
            raise ConvertError(f"output folder '{out_dir}' does not exist")
        logits = load_router_logits(args.router)
        mask, notes, reused, level = build_mask(logits, args.threshold, args.depth,
                                                os.path.basename(args.router))
        cache_mask.write_atomic(mask, args.out)
    except (ConvertError, cache_mask.MaskError, OSError) as exc:
        print(f"convert_l2c_router.py: error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"convert_l2c_router.py: note: {note}", file=sys.stderr)
    total = mask["steps"] * 2 * mask["depth"]
    print(f"wrote {args.out}: {mask['steps']} steps, depth {mask['depth']}, caching level "
          f"{100 * level:.1f}% ({reused} of {total} branch-steps reused)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

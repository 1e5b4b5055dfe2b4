#!/usr/bin/env python3
"""Write a random-weight DiT, SiT or REPA checkpoint in the official state-dict layout (test
fixtures, benchmarks of shapes we have no trained weights for), and optionally its TorchScript
export in either contract version.

    make_random_dit.py -o ckpt.pt --depth 4 --hidden 64 --patch 2 --input-size 16 \
        --in-channels 4 --num-classes 10 [--no-learn-sigma] [--seed 0] [--wrap ema] \
        [--family dit|sit|repa] [--z-dims 32,48] [--qk-norm] \
        [--ts model.ts --num-heads 4 [--contract-version 1|2]]

Unlike a freshly initialised DiT (adaLN-Zero: every gate zero) all weights are random, so
every block changes the output and caching errors are visible. DiT and SiT checkpoints hold the
same tensors; a REPA checkpoint also holds projector heads (projectors.{j}.{0,2,4}.*, one per
--z-dims entry) and has no sigma half (REPA's output has C channels). --qk-norm adds REPA's
qk_norm tensors (which the export refuses). Those extras are drawn after every other tensor, so
the shared tensors equal the DiT/SiT checkpoint of the same seed and shape.

--ts writes the module export_dit.py makes of it (family --family; --contract-version 1, for
DiT only, writes the version-1 module with int64 timesteps, which eoc must keep loading).
"""
import argparse
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import export_dit  # noqa: E402


def sincos_1d(dim, positions):
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.reshape(-1), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(dim, side):
    """Fixed 2-D sin-cos position table (T, dim): half the channels encode rows, half columns."""
    rows, cols = np.meshgrid(np.arange(side, dtype=np.float64), np.arange(side, dtype=np.float64))
    return np.concatenate([sincos_1d(dim // 2, rows), sincos_1d(dim // 2, cols)], axis=1)


def random_state_dict(depth, hidden, patch, input_size, in_channels, num_classes, learn_sigma, seed,
                      gate_scale=0.3, z_dims=(), qk_norm=False, heads=None):
    """Official-layout random weights. z_dims: REPA projector heads (projector width 2 * hidden,
    one head per output size); qk_norm: REPA's q_norm/k_norm LayerNorm tensors (needs heads)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, std):
        return torch.randn(*shape, generator=gen) * std

    out_ch = in_channels * (2 if learn_sigma else 1)
    side = input_size // patch
    w = 1.0 / math.sqrt(hidden)
    sd = {
        "pos_embed": torch.from_numpy(sincos_2d(hidden, side)).float().unsqueeze(0),
        "x_embedder.proj.weight": rnd(hidden, in_channels, patch, patch, std=1.0 / patch),
        "x_embedder.proj.bias": rnd(hidden, std=0.02),
        "t_embedder.mlp.0.weight": rnd(hidden, 256, std=1.0 / 16),
        "t_embedder.mlp.0.bias": rnd(hidden, std=0.02),
        "t_embedder.mlp.2.weight": rnd(hidden, hidden, std=w),
        "t_embedder.mlp.2.bias": rnd(hidden, std=0.02),
        "y_embedder.embedding_table.weight": rnd(num_classes + 1, hidden, std=1.0),
        "final_layer.linear.weight": rnd(patch * patch * out_ch, hidden, std=w),
        "final_layer.linear.bias": rnd(patch * patch * out_ch, std=0.02),
        "final_layer.adaLN_modulation.1.weight": rnd(2 * hidden, hidden, std=w * gate_scale),
        "final_layer.adaLN_modulation.1.bias": rnd(2 * hidden, std=0.02),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({
            p + "attn.qkv.weight": rnd(3 * hidden, hidden, std=w),
            p + "attn.qkv.bias": rnd(3 * hidden, std=0.02),
            p + "attn.proj.weight": rnd(hidden, hidden, std=w),
            p + "attn.proj.bias": rnd(hidden, std=0.02),
            p + "mlp.fc1.weight": rnd(4 * hidden, hidden, std=w),
            p + "mlp.fc1.bias": rnd(4 * hidden, std=0.02),
            p + "mlp.fc2.weight": rnd(hidden, 4 * hidden, std=0.5 * w),
            p + "mlp.fc2.bias": rnd(hidden, std=0.02),
            p + "adaLN_modulation.1.weight": rnd(6 * hidden, hidden, std=w * gate_scale),
            p + "adaLN_modulation.1.bias": rnd(6 * hidden, std=0.02),
        })
    # REPA's extras last, so that everything above is the same as without them.
    proj = 2 * hidden
    for j, z in enumerate(z_dims):
        p = f"projectors.{j}."
        for layer, (rows, cols) in zip((0, 2, 4), ((proj, hidden), (proj, proj), (z, proj))):
            sd[p + f"{layer}.weight"] = rnd(rows, cols, std=1.0 / math.sqrt(cols))
            sd[p + f"{layer}.bias"] = rnd(rows, std=0.02)
    if qk_norm:
        if not heads:
            raise ValueError("qk_norm needs the head count")
        for i in range(depth):
            for name in ("q_norm", "k_norm"):
                sd[f"blocks.{i}.attn.{name}.weight"] = 1 + rnd(hidden // heads, std=0.1)
                sd[f"blocks.{i}.attn.{name}.bias"] = rnd(hidden // heads, std=0.02)
    return sd


def family_state_dict(family, depth, hidden, patch, input_size, in_channels, num_classes,
                      learn_sigma, seed, z_dims=None, qk_norm=False, heads=None):
    """random_state_dict for a family: REPA gets projector heads (default one, z = hidden) and
    never a sigma half."""
    if family == "repa":
        if learn_sigma:
            raise ValueError("REPA's network has no sigma half (C output channels)")
        z_dims = (hidden,) if z_dims is None else tuple(z_dims)
    else:
        z_dims = () if z_dims is None else tuple(z_dims)
    return random_state_dict(depth, hidden, patch, input_size, in_channels, num_classes,
                             learn_sigma, seed, z_dims=z_dims, qk_norm=qk_norm, heads=heads)


def export_fixture(sd, ts, heads, family="dit", contract_version=None, name="random"):
    """Writes the TorchScript module export_dit.py makes of state dict `sd`; returns its summary."""
    version = export_dit.CONTRACT_VERSION if contract_version is None else contract_version
    return export_dit.export_state_dict({k: v.float() for k, v in sd.items()}, ts, name,
                                        num_heads=heads, family=family, contract_version=version)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--patch", type=int, default=2)
    ap.add_argument("--input-size", type=int, default=16)
    ap.add_argument("--in-channels", type=int, default=4)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--family", choices=["dit", "sit", "repa"], default="dit",
                    help="repa adds projector heads and has no sigma half (default dit)")
    ap.add_argument("--no-learn-sigma", action="store_true", help="(implied by --family repa)")
    ap.add_argument("--z-dims", default=None,
                    help="REPA projector output sizes, comma-separated (default: the hidden size)")
    ap.add_argument("--qk-norm", action="store_true",
                    help="add REPA's q_norm/k_norm tensors (needs --num-heads; export refuses them)")
    ap.add_argument("--num-heads", type=int, default=None, help="heads, for --ts and --qk-norm")
    ap.add_argument("--ts", default=None, help="also write the exported TorchScript module here")
    ap.add_argument("--contract-version", type=int, choices=[1, 2], default=None,
                    help="contract version of --ts (default the current one; 1: DiT only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--half", action="store_true", help="store float16 tensors, as released checkpoints may")
    ap.add_argument("--wrap", choices=["none", "ema", "model"], default="none",
                    help="save as a training checkpoint dict holding the weights under this key")
    a = ap.parse_args()
    if a.ts and not a.num_heads:
        ap.error("--ts needs --num-heads")
    z_dims = [int(v) for v in a.z_dims.split(",")] if a.z_dims else None
    learn_sigma = not a.no_learn_sigma and a.family != "repa"
    try:
        sd = family_state_dict(a.family, a.depth, a.hidden, a.patch, a.input_size, a.in_channels,
                               a.num_classes, learn_sigma, a.seed, z_dims, a.qk_norm, a.num_heads)
    except ValueError as exc:
        ap.error(str(exc))
    if a.half:
        sd = {k: v.half() for k, v in sd.items()}
    obj = sd if a.wrap == "none" else {a.wrap: sd, "args": {"note": "synthetic"}}
    torch.save(obj, a.out)
    if a.ts:
        try:
            export_fixture(sd, a.ts, a.num_heads, a.family, a.contract_version,
                           os.path.splitext(os.path.basename(a.out))[0])
        except export_dit.ExportError as exc:
            ap.exit(2, f"make_random_dit.py: error: {exc}\n")


if __name__ == "__main__":
    main()

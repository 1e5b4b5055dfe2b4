#!/usr/bin/env python3
"""Write a random-weight DiT checkpoint in the official state-dict layout (test fixtures,
benchmarks of shapes we have no trained weights for).

    make_random_dit.py -o ckpt.pt --depth 4 --hidden 64 --patch 2 --input-size 16 \
        --in-channels 4 --num-classes 10 [--no-learn-sigma] [--seed 0] [--wrap ema]

Unlike a freshly initialised DiT (adaLN-Zero: every gate zero) all weights are random, so
every block changes the output and caching errors are visible.
"""
import argparse
import math

import numpy as np
import torch


def sincos_1d(dim, positions):
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.reshape(-1), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(dim, side):
    """Fixed 2-D sin-cos position table (T, dim): half the channels encode rows, half columns."""
    rows, cols = np.meshgrid(np.arange(side, dtype=np.float64), np.arange(side, dtype=np.float64))
    return np.concatenate([sincos_1d(dim // 2, rows), sincos_1d(dim // 2, cols)], axis=1)


def random_state_dict(depth, hidden, patch, input_size, in_channels, num_classes, learn_sigma, seed,
                      gate_scale=0.3):
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
    return sd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--patch", type=int, default=2)
    ap.add_argument("--input-size", type=int, default=16)
    ap.add_argument("--in-channels", type=int, default=4)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--no-learn-sigma", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--half", action="store_true", help="store float16 tensors, as released checkpoints may")
    ap.add_argument("--wrap", choices=["none", "ema", "model"], default="none",
                    help="save as a training checkpoint dict holding the weights under this key")
    a = ap.parse_args()
    sd = random_state_dict(a.depth, a.hidden, a.patch, a.input_size, a.in_channels, a.num_classes,
                           not a.no_learn_sigma, a.seed)
    if a.half:
        sd = {k: v.half() for k, v in sd.items()}
    obj = sd if a.wrap == "none" else {a.wrap: sd, "args": {"note": "synthetic"}}
    torch.save(obj, a.out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Export an official-layout DiT checkpoint to the TorchScript file `eoc` loads.

    export_dit.py CHECKPOINT -o MODEL.ts [--preset DiT-XL/2 | --num-heads N]

The checkpoint is a plain state dict, or a dict holding it under `ema` (preferred) or
`model`; float16/bfloat16 tensors are cast to float32. Every architectural number is read off
the tensor shapes; only the head count must come from a preset or --num-heads. The module's
contract is described in docs/MODEL_CONTRACT.md.
"""
import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dit_module import HAS_SDPA, DiT, official_to_module  # noqa: E402

# name -> (depth, hidden, heads, patch)
PRESETS = {}
for _size, (_depth, _hidden, _heads) in {"XL": (28, 1152, 16), "L": (24, 1024, 16),
                                         "B": (12, 768, 12), "S": (12, 384, 6)}.items():
    for _patch in (2, 4, 8):
        PRESETS[f"DiT-{_size}/{_patch}"] = (_depth, _hidden, _heads, _patch)


class ExportError(Exception):
    pass


def load_state_dict(path):
    if not os.path.isfile(path):
        raise ExportError(f"checkpoint '{path}' does not exist")
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as exc:  # torch raises many types for a bad file
        raise ExportError(f"checkpoint '{path}' is not a torch checkpoint ({exc.__class__.__name__}: {exc})")
    if isinstance(obj, dict) and "ema" in obj and isinstance(obj["ema"], dict):
        obj = obj["ema"]
    elif isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ExportError(f"checkpoint '{path}' holds no state dict of tensors (expected a plain "
                          "state dict or a dict with 'ema' or 'model')")
    # Checkpoints saved from DistributedDataParallel prefix every key with 'module.'.
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return {k: v.float() if v.is_floating_point() else v for k, v in obj.items()}


def require(sd, key):
    if key not in sd:
        raise ExportError(f"checkpoint lacks tensor '{key}' (not an official-layout DiT?)")
    return sd[key]


def infer_config(sd):
    """Reads every architectural number off the tensor shapes."""
    patch_w = require(sd, "x_embedder.proj.weight")
    if patch_w.dim() != 4 or patch_w.shape[2] != patch_w.shape[3]:
        raise ExportError(f"tensor 'x_embedder.proj.weight' has shape {list(patch_w.shape)}, "
                          "expected [D, C, p, p]")
    hidden, in_ch, patch = patch_w.shape[0], patch_w.shape[1], patch_w.shape[2]
    pos = require(sd, "pos_embed")
    tokens = pos.shape[1] if pos.dim() == 3 else -1
    side = int(round(math.sqrt(max(tokens, 0))))
    if pos.dim() != 3 or side * side != tokens or pos.shape[2] != hidden:
        raise ExportError(f"tensor 'pos_embed' has shape {list(pos.shape)}, expected [1, T, {hidden}] "
                          "with T a square number")
    depth = 0
    while f"blocks.{depth}.attn.qkv.weight" in sd:
        depth += 1
    if depth == 0:
        raise ExportError("checkpoint lacks tensor 'blocks.0.attn.qkv.weight' (no transformer blocks)")
    num_classes = require(sd, "y_embedder.embedding_table.weight").shape[0] - 1
    out_total = require(sd, "final_layer.linear.weight").shape[0]
    if out_total % (patch * patch) != 0:
        raise ExportError(f"tensor 'final_layer.linear.weight' has {out_total} rows, not a multiple "
                          f"of p*p = {patch * patch}")
    out_ch = out_total // (patch * patch)
    if out_ch not in (in_ch, 2 * in_ch):
        raise ExportError(f"tensor 'final_layer.linear.weight' gives {out_ch} output channels, "
                          f"expected {in_ch} or {2 * in_ch} for {in_ch} input channels")
    return dict(input_size=side * patch, patch_size=patch, in_channels=in_ch, hidden_size=hidden,
                depth=depth, num_classes=num_classes, learn_sigma=out_ch == 2 * in_ch)


def check_preset(cfg, preset):
    depth, hidden, _, patch = PRESETS[preset]
    checks = [("depth", depth, "blocks.{}.attn.qkv.weight".format(depth - 1)),
              ("hidden_size", hidden, "x_embedder.proj.weight"),
              ("patch_size", patch, "x_embedder.proj.weight")]
    for field, want, tensor in checks:
        if cfg[field] != want:
            raise ExportError(f"preset {preset} expects {field} {want}, but tensor '{tensor}' gives "
                              f"{cfg[field]}")


def build_module(sd, cfg, heads, name, fused_attention=False):
    if heads <= 0 or cfg["hidden_size"] % heads != 0:
        raise ExportError(f"--num-heads {heads} does not divide hidden size {cfg['hidden_size']}")
    model = DiT(num_heads=heads, model_name=name, fused_attention=fused_attention, **cfg)
    expected = model.state_dict()
    renamed = {official_to_module(k): v for k, v in sd.items()}
    for key, tensor in expected.items():
        official = key.replace(".attention.", ".attn.").replace(".ffn.", ".mlp.")
        if key not in renamed:
            raise ExportError(f"checkpoint lacks tensor '{official}'")
        if tuple(renamed[key].shape) != tuple(tensor.shape):
            raise ExportError(f"tensor '{official}' has shape {list(renamed[key].shape)}, expected "
                              f"{list(tensor.shape)}")
    extra = sorted(set(renamed) - set(expected))
    if extra:
        raise ExportError(f"checkpoint has unexpected tensor '{extra[0]}' ({len(extra)} unexpected in all)")
    model.load_state_dict(renamed)
    return model.eval()


def export(checkpoint, out, preset=None, num_heads=None, fused_attention=False):
    sd = load_state_dict(checkpoint)
    cfg = infer_config(sd)
    if preset is not None:
        if preset not in PRESETS:
            raise ExportError(f"unknown preset '{preset}' (known: {', '.join(PRESETS)})")
        check_preset(cfg, preset)
        heads = PRESETS[preset][2] if num_heads is None else num_heads
    elif num_heads is not None:
        heads = num_heads
    else:
        raise ExportError("the head count cannot be read off a checkpoint: give --preset or --num-heads")
    name = preset or os.path.splitext(os.path.basename(checkpoint))[0]
    if fused_attention and not HAS_SDPA:
        raise ExportError(f"--fused-attention needs PyTorch >= 2.0 (this is {torch.__version__})")
    model = build_module(sd, cfg, heads, name, fused_attention)
    scripted = torch.jit.script(model)
    tmp = out + ".tmp"
    scripted.save(tmp)
    os.replace(tmp, out)
    return cfg, heads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("-o", "--out", required=True, help="TorchScript file to write")
    parser.add_argument("--preset", help="official preset, e.g. DiT-XL/2 (gives the head count)")
    parser.add_argument("--num-heads", type=int, help="attention heads (when no preset fits)")
    parser.add_argument("--fused-attention", action="store_true",
                        help="attention through scaled_dot_product_attention (PyTorch >= 2.0; "
                             "faster on GPUs; the file then needs LibTorch >= 2.0)")
    args = parser.parse_args(argv)
    try:
        cfg, heads = export(args.checkpoint, args.out, args.preset, args.num_heads,
                            args.fused_attention)
    except ExportError as exc:
        print(f"export_dit.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: depth {cfg['depth']}, hidden {cfg['hidden_size']}, heads {heads}, "
          f"patch {cfg['patch_size']}, input {cfg['input_size']}x{cfg['input_size']}x{cfg['in_channels']}, "
          f"classes {cfg['num_classes']}, learn_sigma {cfg['learn_sigma']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Export an official-layout DiT, SiT or REPA checkpoint to the TorchScript file `eoc` loads.

    export_dit.py CHECKPOINT -o MODEL.ts [--family dit|sit|repa] [--preset DiT-XL/2 | --num-heads N]

The checkpoint is a plain state dict, or a dict holding it under `ema` (preferred) or
`model`; float16/bfloat16 tensors are cast to float32. Every architectural number is read off
the tensor shapes; only the head count must come from a preset or --num-heads, and the family
from --family: DiT and SiT checkpoints hold the same tensors, so the weights cannot tell a noise
predictor from a velocity predictor. The module's contract (version 2) is described in
docs/MODEL_CONTRACT.md.

Families (the module's `model_family` and `prediction` attributes):
  dit   DiT (facebookresearch/DiT): noise prediction "eps" at the DDPM timestep 0..999.
  sit   SiT (willisma/SiT): "velocity" v = x1 - x0 at t in [0, 1] (0 noise, 1 data); with
        learn_sigma (SiT-XL/2 at 256x256) the output keeps its 2C channels, the second half
        ignored as SiT's forward drops it.
  repa  REPA (sihyun-yu/REPA, linear path): SiT's network with the other time direction and
        sign (it predicts eps - x at t = 1 noise); the module maps t -> 1 - t before the timestep
        embedding and negates the final output, so it presents SiT's convention. Its projector
        heads (projectors.*, used only by REPA's training loss) are dropped; the legacy layout
        (decoder_blocks.*) is renumbered as REPA's load_legacy_checkpoints does; the qk_norm
        variant (attn.q_norm / attn.k_norm tensors) is refused.
"""
import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dit_module import CONTRACT_VERSION, FAMILIES, HAS_SDPA, DiT, official_to_module  # noqa: E402

# name -> (depth, hidden, heads, patch). SiT (and REPA, whose models are SiT's) use DiT's sizes.
PRESETS = {}
for _prefix in ("DiT", "SiT"):
    for _size, (_depth, _hidden, _heads) in {"XL": (28, 1152, 16), "L": (24, 1024, 16),
                                             "B": (12, 768, 12), "S": (12, 384, 6)}.items():
        for _patch in (2, 4, 8):
            PRESETS[f"{_prefix}-{_size}/{_patch}"] = (_depth, _hidden, _heads, _patch)
# The preset names each family goes by.
PRESET_PREFIX = {"dit": "DiT", "sit": "SiT", "repa": "SiT"}


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


def check_preset(cfg, preset, family="dit"):
    prefix = PRESET_PREFIX[family]
    if not preset.startswith(prefix + "-"):
        raise ExportError(f"preset {preset} names a {preset.split('-')[0]} model; --family {family} "
                          f"goes by {prefix}-{preset.split('-', 1)[1]} (the same sizes)")
    depth, hidden, _, patch = PRESETS[preset]
    checks = [("depth", depth, "blocks.{}.attn.qkv.weight".format(depth - 1)),
              ("hidden_size", hidden, "x_embedder.proj.weight"),
              ("patch_size", patch, "x_embedder.proj.weight")]
    for field, want, tensor in checks:
        if cfg[field] != want:
            raise ExportError(f"preset {preset} expects {field} {want}, but tensor '{tensor}' gives "
                              f"{cfg[field]}")


def _block_indices(sd, prefix):
    return {int(k.split(".")[1]) for k in sd
            if k.startswith(prefix + ".") and k.split(".")[1].isdigit()}


def prepare_family(sd, family):
    """Family-specific checks and key changes before the generic ones: returns (state dict,
    notes for the log line). REPA: drops the projector heads (REPA's training loss only),
    renumbers the legacy layout's decoder_blocks.j to blocks.(j + encoder blocks) as REPA's
    load_legacy_checkpoints does. Every family: refuses qk_norm attention."""
    notes = []
    qk = sorted(k for k in sd if ".attn.q_norm." in k or ".attn.k_norm." in k)
    if qk:
        raise ExportError(f"checkpoint has tensor '{qk[0]}': attention with qk_norm (REPA's "
                          "--qk-norm variant, LayerNorm on queries and keys) is not supported")
    proj = sorted(k for k in sd if k.startswith("projectors."))
    legacy = sorted(k for k in sd if k.startswith("decoder_blocks."))
    if family != "repa":
        if proj or legacy:
            key = (proj or legacy)[0]
            raise ExportError(f"checkpoint has tensor '{key}', which only REPA checkpoints hold "
                              f"(export it with --family repa, not {family})")
        return sd, notes
    if legacy:
        enc, dec = _block_indices(sd, "blocks"), _block_indices(sd, "decoder_blocks")
        if enc != set(range(len(enc))) or dec != set(range(len(dec))):
            raise ExportError("checkpoint has REPA's legacy layout (decoder_blocks.*) with gaps in "
                              "the block numbers; cannot renumber it")
        sd = dict(sd)
        for key in legacy:
            parts = key.split(".")
            parts[0], parts[1] = "blocks", str(int(parts[1]) + len(enc))
            sd[".".join(parts)] = sd.pop(key)
        notes.append(f"legacy layout: decoder_blocks.0-{len(dec) - 1} renumbered to blocks."
                     f"{len(enc)}-{len(enc) + len(dec) - 1}")
    if proj:
        sd = {k: v for k, v in sd.items() if not k.startswith("projectors.")}
        idx = sorted({k.split(".")[1] for k in proj})
        notes.append(f"dropped {len(proj)} projector tensors (projectors.{{{','.join(idx)}}}.*: "
                     "REPA's training-only alignment heads, unused in sampling)")
    return sd, notes


def build_module(sd, cfg, heads, name, fused_attention=False, family="dit",
                 contract_version=CONTRACT_VERSION):
    if heads <= 0 or cfg["hidden_size"] % heads != 0:
        raise ExportError(f"--num-heads {heads} does not divide hidden size {cfg['hidden_size']}")
    if family not in FAMILIES:
        raise ExportError(f"unknown family '{family}' (known: {', '.join(FAMILIES)})")
    if contract_version != CONTRACT_VERSION and not (contract_version == 1 and family == "dit"):
        raise ExportError(f"contract version {contract_version} is not written for family {family} "
                          f"(version {CONTRACT_VERSION}; version 1 only for DiT)")
    model = DiT(num_heads=heads, model_name=name, fused_attention=fused_attention, family=family,
                contract_version=contract_version, **cfg)
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


def export_model(checkpoint, out, preset=None, num_heads=None, fused_attention=False,
                 family="dit", contract_version=CONTRACT_VERSION):
    """Exports a checkpoint file; returns export_state_dict's summary."""
    if family not in FAMILIES:
        raise ExportError(f"unknown family '{family}' (known: {', '.join(FAMILIES)})")
    sd = load_state_dict(checkpoint)
    name = preset or os.path.splitext(os.path.basename(checkpoint))[0]
    return export_state_dict(sd, out, name, preset, num_heads, fused_attention, family,
                             contract_version)


def export_state_dict(sd, out, name, preset=None, num_heads=None, fused_attention=False,
                      family="dit", contract_version=CONTRACT_VERSION):
    """Exports an official-layout float32 state dict to `out` (TorchScript); returns a summary
    dict: cfg, heads, family, prediction, contract_version, name, notes (what the log line
    reports besides the configuration)."""
    if family not in FAMILIES:
        raise ExportError(f"unknown family '{family}' (known: {', '.join(FAMILIES)})")
    sd, notes = prepare_family(sd, family)
    cfg = infer_config(sd)
    if preset is not None:
        if preset not in PRESETS:
            raise ExportError(f"unknown preset '{preset}' (known: {', '.join(PRESETS)})")
        check_preset(cfg, preset, family)
        heads = PRESETS[preset][2] if num_heads is None else num_heads
    elif num_heads is not None:
        heads = num_heads
    else:
        raise ExportError("the head count cannot be read off a checkpoint: give --preset or --num-heads")
    if fused_attention and not HAS_SDPA:
        raise ExportError(f"--fused-attention needs PyTorch >= 2.0 (this is {torch.__version__})")
    model = build_module(sd, cfg, heads, name, fused_attention, family, contract_version)
    scripted = torch.jit.script(model)
    tmp = out + ".tmp"
    scripted.save(tmp)
    os.replace(tmp, out)
    prediction = FAMILIES[family]
    if family == "repa":
        notes.insert(0, "REPA's time and sign converted to SiT's (t -> 1 - t, output negated)")
    if prediction == "velocity" and cfg["learn_sigma"]:
        notes.append("the sigma half of the output is ignored (as SiT's forward drops it)")
    return dict(cfg=cfg, heads=heads, family=family, prediction=prediction,
                contract_version=contract_version, name=name, notes=notes)


def export(checkpoint, out, preset=None, num_heads=None, fused_attention=False, family="dit",
           contract_version=CONTRACT_VERSION):
    """export_model, returning (cfg, heads)."""
    info = export_model(checkpoint, out, preset, num_heads, fused_attention, family,
                        contract_version)
    return info["cfg"], info["heads"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__[__doc__.index("Families"):],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("-o", "--out", required=True, help="TorchScript file to write")
    parser.add_argument("--family", choices=list(FAMILIES), default="dit",
                        help="the checkpoint's model family (default dit): dit predicts the noise "
                             "(eps) at DDPM timesteps 0..999; sit predicts SiT's velocity at t in "
                             "[0, 1]; repa is REPA's SiT (other time direction and sign, converted "
                             "to SiT's; projector heads dropped). DiT and SiT checkpoints hold the "
                             "same tensors, so the family cannot be read off the weights: give it")
    parser.add_argument("--preset", help="official preset, e.g. DiT-XL/2, or SiT-XL/2 for sit and "
                                         "repa (gives the head count)")
    parser.add_argument("--num-heads", type=int, help="attention heads (when no preset fits)")
    parser.add_argument("--fused-attention", action="store_true",
                        help="attention through scaled_dot_product_attention (PyTorch >= 2.0; "
                             "faster on GPUs; the file then needs LibTorch >= 2.0)")
    args = parser.parse_args(argv)
    try:
        info = export_model(args.checkpoint, args.out, args.preset, args.num_heads,
                            args.fused_attention, args.family)
    except ExportError as exc:
        print(f"export_dit.py: error: {exc}", file=sys.stderr)
        return 2
    cfg = info["cfg"]
    print(f"wrote {args.out}: family {info['family']} (prediction {info['prediction']}, contract "
          f"version {info['contract_version']}), depth {cfg['depth']}, hidden {cfg['hidden_size']}, "
          f"heads {info['heads']}, patch {cfg['patch_size']}, input {cfg['input_size']}x"
          f"{cfg['input_size']}x{cfg['in_channels']}, classes {cfg['num_classes']}, learn_sigma "
          f"{cfg['learn_sigma']}" + "".join(f"; {n}" for n in info["notes"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

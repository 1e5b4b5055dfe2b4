#!/usr/bin/env python3
"""Export the decoder of a Stable Diffusion VAE (diffusers AutoencoderKL layout) to the
TorchScript file `eoc sample --vae` loads.

    export_vae.py VAE.safetensors|VAE.bin|FOLDER -o vae.ts [--norm-groups 32] [--name NAME]

Needs torch only (no diffusers). FOLDER is a diffusers model folder holding
diffusion_pytorch_model.safetensors or .bin (e.g. a download of stabilityai/sd-vae-ft-ema).
The module holds post_quant_conv + decoder; forward(latent (B, C, h, w)) returns images
(B, 3, f*h, f*w) in about [-1, 1]. The caller divides latents by the scale (0.18215) first.
Channel counts, block and layer counts are read off the tensor shapes; only the GroupNorm group
count cannot be (32 for every SD VAE). Key names and shapes are checked against the diffusers
layout (docs/VAE.md); both the current attention names (to_q/to_k/to_v/to_out.0) and the older
ones (query/key/value/proj_attn) are accepted. Encoder and quant_conv tensors are ignored.
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CONTRACT_VERSION = 1
EPS = 1e-6
ATTN = "decoder.mid_block.attentions.0."
OLD_ATTN_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
IGNORED_PREFIXES = ("encoder.", "quant_conv.")


class ExportError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Reading weights
# --------------------------------------------------------------------------------------------

SAFETENSORS_DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}


def read_safetensors(path):
    """A .safetensors file: 8-byte little-endian header length, a JSON header mapping each
    tensor name to dtype/shape/data_offsets, then the raw little-endian data."""
    if sys.byteorder != "little":
        raise ExportError("reading .safetensors needs a little-endian machine")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ExportError(f"'{path}' is too short to be a .safetensors file")
    size = int.from_bytes(data[:8], "little")
    if 8 + size > len(data):
        raise ExportError(f"'{path}' declares a {size}-byte header but holds {len(data)} bytes")
    try:
        header = json.loads(data[8:8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"'{path}' has no valid .safetensors JSON header ({exc})")
    base, out = 8 + size, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        out[name] = _safetensors_tensor(path, name, info, data, base)
    return out


def _safetensors_tensor(path, name, info, data, base):
    if info.get("dtype") not in SAFETENSORS_DTYPES:
        raise ExportError(f"tensor '{name}' in '{path}' has dtype {info.get('dtype')} (supported: "
                          f"{', '.join(SAFETENSORS_DTYPES)})")
    dtype, itemsize = SAFETENSORS_DTYPES[info["dtype"]]
    shape = [int(d) for d in info.get("shape", [])]
    begin, end = (int(v) for v in info.get("data_offsets", [0, -1]))
    count = math.prod(shape)
    if end - begin != count * itemsize or begin < 0 or base + end > len(data):
        raise ExportError(f"tensor '{name}' in '{path}' has data offsets [{begin}, {end}] that do "
                          f"not fit shape {shape} ({info['dtype']}) and the file size")
    if count == 0:
        return torch.empty(shape, dtype=torch.float32)
    raw = bytearray(data[base + begin:base + end])
    return torch.frombuffer(raw, dtype=dtype).reshape(shape).float()


def read_bin(path):
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as exc:  # torch raises many types for a bad file
        raise ExportError(f"'{path}' is not a torch checkpoint ({exc.__class__.__name__}: {exc})")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ExportError(f"'{path}' holds no state dict of tensors")
    return {k: v.float() for k, v in obj.items()}


def resolve_weights_path(path):
    if os.path.isdir(path):
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise ExportError(f"folder '{path}' holds no diffusion_pytorch_model.safetensors or .bin")
    if not os.path.isfile(path):
        raise ExportError(f"VAE weights '{path}' do not exist")
    return path


def load_state_dict(path):
    path = resolve_weights_path(path)
    sd = read_safetensors(path) if path.endswith(".safetensors") else read_bin(path)
    if any(k.startswith(("decoder.up.", "decoder.mid.")) for k in sd):
        raise ExportError(f"'{path}' uses the original LDM/CompVis key names (decoder.up.N.block...); "
                          "expected the diffusers AutoencoderKL layout (decoder.up_blocks.N.resnets...)")
    return sd


def normalise_keys(sd):
    """Decoder tensors with current attention names; (C, C, 1, 1) attention weights as (C, C)."""
    out = {}
    for key, value in sd.items():
        if key.startswith(IGNORED_PREFIXES):
            continue
        if key.startswith(ATTN):
            name, _, leaf = key[len(ATTN):].rpartition(".")
            if name in OLD_ATTN_NAMES:
                key = ATTN + OLD_ATTN_NAMES[name] + "." + leaf
            if leaf == "weight" and value.dim() == 4 and value.shape[2:] == (1, 1):
                value = value[:, :, 0, 0]
        out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# The decoder (diffusers AutoencoderKL's layout, written from its architecture description)
# --------------------------------------------------------------------------------------------


class ResnetBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, twice; a 1x1 conv_shortcut when the channel count changes."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=EPS)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.conv_shortcut(x) + h


class MidAttention(nn.Module):
    """Single-head self-attention over the h*w positions, with GroupNorm and a residual."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=EPS)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Sequential(nn.Linear(channels, channels))
        self.scale = 1.0 / math.sqrt(channels)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        t = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        q, k, v = self.to_q(t), self.to_k(t), self.to_v(t)
        weights = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * self.scale, dim=-1)
        out = self.to_out(torch.bmm(weights, v))
        return out.transpose(1, 2).reshape(b, c, h, w) + x


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups),
                                      ResnetBlock(channels, channels, groups)])
        self.attentions = nn.ModuleList([MidAttention(channels, groups)])

    def forward(self, x: Tensor) -> Tensor:
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x)
        return self.resnets[1](x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, layers: int, upsample: bool, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(cin if j == 0 else cout, cout, groups)
                                      for j in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample(cout)] if upsample else [])

    def forward(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for up in self.upsamplers:
            x = up(x)
        return x


class Decoder(nn.Module):
    def __init__(self, latent: int, up_channels, layers: int, out_channels: int, groups: int):
        super().__init__()
        self.conv_in = nn.Conv2d(latent, up_channels[0], 3, padding=1)
        self.mid_block = MidBlock(up_channels[0], groups)
        n = len(up_channels)
        self.up_blocks = nn.ModuleList([
            UpBlock(up_channels[max(i - 1, 0)], up_channels[i], layers, i < n - 1, groups)
            for i in range(n)])
        self.conv_norm_out = nn.GroupNorm(groups, up_channels[-1], eps=EPS)
        self.conv_out = nn.Conv2d(up_channels[-1], out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class VaeDecoder(nn.Module):
    """post_quant_conv (1x1) + decoder; the attributes are what eoc reads (docs/VAE.md)."""

    def __init__(self, latent: int, up_channels, layers: int, out_channels: int = 3,
                 groups: int = 32, model_name: str = "vae"):
        super().__init__()
        self.post_quant_conv = nn.Conv2d(latent, latent, 1)
        self.decoder = Decoder(latent, up_channels, layers, out_channels, groups)
        self.vae_contract_version = CONTRACT_VERSION
        self.latent_channels = latent
        self.upscale = 2 ** (len(up_channels) - 1)
        self.model_name = model_name

    def forward(self, z: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z))


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def require(sd, key):
    if key not in sd:
        raise ExportError(f"VAE weights lack tensor '{key}' (not a diffusers AutoencoderKL?)")
    return sd[key]


def infer_config(sd):
    """(latent channels, up-block channels in decoder order, resnets per up block, out channels)."""
    pq = require(sd, "post_quant_conv.weight")
    if pq.dim() != 4:
        raise ExportError(f"tensor 'post_quant_conv.weight' has shape {list(pq.shape)}, expected [C, C, 1, 1]")
    blocks = 0
    while f"decoder.up_blocks.{blocks}.resnets.0.conv1.weight" in sd:
        blocks += 1
    if blocks == 0:
        raise ExportError("VAE weights lack tensor 'decoder.up_blocks.0.resnets.0.conv1.weight'")
    up_channels = [sd[f"decoder.up_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(blocks)]
    layers = 0
    while f"decoder.up_blocks.0.resnets.{layers}.conv1.weight" in sd:
        layers += 1
    out_channels = require(sd, "decoder.conv_out.weight").shape[0]
    return pq.shape[0], up_channels, layers, out_channels


def check_groups(up_channels, groups):
    for c in up_channels:
        if groups <= 0 or c % groups != 0:
            raise ExportError(f"--norm-groups {groups} does not divide the channel count {c}")


def build_module(sd, groups, name):
    latent, up_channels, layers, out_channels = infer_config(sd)
    check_groups(up_channels, groups)
    if out_channels != 3:
        raise ExportError(f"tensor 'decoder.conv_out.weight' gives {out_channels} output channels, expected 3 (RGB)")
    model = VaeDecoder(latent, up_channels, layers, out_channels, groups, name)
    expected = model.state_dict()
    for key, tensor in expected.items():
        if tuple(require(sd, key).shape) != tuple(tensor.shape):
            raise ExportError(f"tensor '{key}' has shape {list(sd[key].shape)}, expected {list(tensor.shape)}")
    extra = sorted(set(sd) - set(expected))
    if extra:
        raise ExportError(f"VAE weights have unexpected tensor '{extra[0]}' ({len(extra)} unexpected in all)")
    model.load_state_dict(sd)
    return model.eval(), dict(latent=latent, up_channels=up_channels, layers=layers)


def export(weights, out, groups=32, name=None):
    sd = normalise_keys(load_state_dict(weights))
    name = name or os.path.splitext(os.path.basename(os.path.normpath(weights)))[0]
    model, cfg = build_module(sd, groups, name)
    scripted = torch.jit.script(model)
    tmp = out + ".tmp"
    scripted.save(tmp)
    os.replace(tmp, out)
    return cfg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", help="VAE .safetensors / .bin, or a diffusers model folder")
    parser.add_argument("-o", "--out", required=True, help="TorchScript file to write")
    parser.add_argument("--norm-groups", type=int, default=32, help="GroupNorm groups (32 for SD's VAE)")
    parser.add_argument("--name", help="name recorded in the module (default: the file name)")
    args = parser.parse_args(argv)
    try:
        cfg = export(args.weights, args.out, args.norm_groups, args.name)
    except ExportError as exc:
        print(f"export_vae.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: latent channels {cfg['latent']}, up blocks {cfg['up_channels']} x "
          f"{cfg['layers']} resnets, upscale {2 ** (len(cfg['up_channels']) - 1)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

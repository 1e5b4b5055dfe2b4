#!/usr/bin/env python3
"""Write a random-weight VAE in the diffusers AutoencoderKL state-dict layout (test fixtures).

    make_random_vae.py -o vae.safetensors [--block-out-channels 32,32] [--layers-per-block 2]
        [--latent-channels 4] [--old-attention-names] [--dtype F32|F16|BF16] [--seed 0]

The key list is written here from the layout description (docs/VAE.md), independently of
export_vae.py, so the exporter's check is tested against it. SD's VAE is
--block-out-channels 128,256,512,512 --layers-per-block 2 (the decoder's up blocks hold
layers + 1 = 3 ResNets). A few encoder and quant_conv tensors are included: the exporter
must ignore them. `.safetensors` files are written by a small writer here; other names with
torch.save (the .bin format).
"""
import argparse
import json
import math

import torch


def _resnet(prefix, cin, cout, add):
    add(prefix + "norm1.weight", [cin], "norm")
    add(prefix + "norm1.bias", [cin], "bias")
    add(prefix + "conv1.weight", [cout, cin, 3, 3], "conv")
    add(prefix + "conv1.bias", [cout], "bias")
    add(prefix + "norm2.weight", [cout], "norm")
    add(prefix + "norm2.bias", [cout], "bias")
    add(prefix + "conv2.weight", [cout, cout, 3, 3], "conv")
    add(prefix + "conv2.bias", [cout], "bias")
    if cin != cout:
        add(prefix + "conv_shortcut.weight", [cout, cin, 1, 1], "conv")
        add(prefix + "conv_shortcut.bias", [cout], "bias")


def layout(block_out_channels, layers_per_block, latent_channels, old_attention_names=False):
    """[(key, shape, kind)] of the decoder side (+ a few encoder tensors) of AutoencoderKL."""
    keys = []

    def add(key, shape, kind):
        keys.append((key, shape, kind))

    top = block_out_channels[-1]
    add("encoder.conv_in.weight", [block_out_channels[0], 3, 3, 3], "conv")
    add("encoder.conv_in.bias", [block_out_channels[0]], "bias")
    add("quant_conv.weight", [2 * latent_channels, 2 * latent_channels, 1, 1], "conv")
    add("quant_conv.bias", [2 * latent_channels], "bias")
    add("post_quant_conv.weight", [latent_channels, latent_channels, 1, 1], "conv")
    add("post_quant_conv.bias", [latent_channels], "bias")
    add("decoder.conv_in.weight", [top, latent_channels, 3, 3], "conv")
    add("decoder.conv_in.bias", [top], "bias")
    for j in range(2):
        _resnet(f"decoder.mid_block.resnets.{j}.", top, top, add)
    attn = "decoder.mid_block.attentions.0."
    add(attn + "group_norm.weight", [top], "norm")
    add(attn + "group_norm.bias", [top], "bias")
    names = ["query", "key", "value", "proj_attn"] if old_attention_names else ["to_q", "to_k", "to_v", "to_out.0"]
    for name in names:
        add(attn + name + ".weight", [top, top], "linear")
        add(attn + name + ".bias", [top], "bias")
    reversed_channels = list(reversed(block_out_channels))
    for i, cout in enumerate(reversed_channels):
        prev = reversed_channels[max(i - 1, 0)]
        for j in range(layers_per_block + 1):
            _resnet(f"decoder.up_blocks.{i}.resnets.{j}.", prev if j == 0 else cout, cout, add)
        if i < len(reversed_channels) - 1:
            add(f"decoder.up_blocks.{i}.upsamplers.0.conv.weight", [cout, cout, 3, 3], "conv")
            add(f"decoder.up_blocks.{i}.upsamplers.0.conv.bias", [cout], "bias")
    add("decoder.conv_norm_out.weight", [block_out_channels[0]], "norm")
    add("decoder.conv_norm_out.bias", [block_out_channels[0]], "bias")
    add("decoder.conv_out.weight", [3, block_out_channels[0], 3, 3], "conv")
    add("decoder.conv_out.bias", [3], "bias")
    return keys


def random_state_dict(block_out_channels=(32, 32), layers_per_block=2, latent_channels=4,
                      old_attention_names=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape, kind in layout(block_out_channels, layers_per_block, latent_channels,
                                   old_attention_names):
        noise = torch.randn(*shape, generator=gen)
        if kind == "norm":
            sd[key] = 1.0 + 0.1 * noise
        elif kind == "bias":
            sd[key] = 0.02 * noise
        else:  # conv / linear: unit-variance outputs
            sd[key] = noise / math.sqrt(math.prod(shape[1:]))
    return sd


_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def write_safetensors(sd, path, dtype="F32"):
    header, chunks, offset = {}, [], 0
    for key, tensor in sd.items():
        t = tensor.to(_DTYPES[dtype]).contiguous()
        raw = (t.view(torch.int16) if t.element_size() == 2 else t).numpy().tobytes()
        header[key] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for raw in chunks:
            f.write(raw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", required=True, help=".safetensors, or any other name for torch.save")
    ap.add_argument("--block-out-channels", default="32,32", help="encoder order, e.g. 128,256,512,512")
    ap.add_argument("--layers-per-block", type=int, default=2)
    ap.add_argument("--latent-channels", type=int, default=4)
    ap.add_argument("--old-attention-names", action="store_true", help="query/key/value/proj_attn")
    ap.add_argument("--dtype", choices=sorted(_DTYPES), default="F32")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    channels = [int(c) for c in a.block_out_channels.split(",")]
    sd = random_state_dict(channels, a.layers_per_block, a.latent_channels, a.old_attention_names, a.seed)
    if a.out.endswith(".safetensors"):
        write_safetensors(sd, a.out, a.dtype)
    else:
        torch.save({k: v.to(_DTYPES[a.dtype]) for k, v in sd.items()}, a.out)


if __name__ == "__main__":
    main()

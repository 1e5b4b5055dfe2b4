"""scripts/tools/export_vae.py: the exported TorchScript VAE decoder against an independent
functional decoder computed in float64 straight from the diffusers state dict (both attention
naming schemes, F32/BF16/F16 safetensors and a torch .bin), and its one-line errors naming the
bad tensor. `eoc sample --vae` with an exported decoder is tested in cli/test_fid_runs.py."""
import os
import subprocess
import sys

import pytest
import torch

import export_vae
import make_random_vae


def _group_norm(x, sd, name):
    return torch.nn.functional.group_norm(x, 32, sd[name + ".weight"], sd[name + ".bias"], eps=1e-6)


def _conv(x, sd, name):
    w = sd[name + ".weight"]
    return torch.nn.functional.conv2d(x, w, sd[name + ".bias"], padding=w.shape[-1] // 2)


def _resnet(x, sd, p):
    silu = torch.nn.functional.silu
    h = _conv(silu(_group_norm(x, sd, p + "norm1")), sd, p + "conv1")
    h = _conv(silu(_group_norm(h, sd, p + "norm2")), sd, p + "conv2")
    if p + "conv_shortcut.weight" in sd:
        x = _conv(x, sd, p + "conv_shortcut")
    return x + h


def _attention(x, sd, p, names):
    b, c, hh, ww = x.shape
    t = _group_norm(x, sd, p + "group_norm").reshape(b, c, hh * ww).permute(0, 2, 1)
    q, k, v, o = [t @ sd[p + n + ".weight"].T + sd[p + n + ".bias"] for n in names[:3]] + [None]
    a = torch.softmax(q @ k.transpose(1, 2) / c ** 0.5, dim=-1) @ v
    out = a @ sd[p + names[3] + ".weight"].T + sd[p + names[3] + ".bias"]
    return out.permute(0, 2, 1).reshape(b, c, hh, ww) + x


def functional_decode(sd, z, old_names=False):
    """The AutoencoderKL decoder computed in float64 straight from the state dict."""
    sd = {k: v.double() for k, v in sd.items()}
    names = ["query", "key", "value", "proj_attn"] if old_names else ["to_q", "to_k", "to_v", "to_out.0"]
    x = _conv(_conv(z.double(), sd, "post_quant_conv"), sd, "decoder.conv_in")
    x = _resnet(x, sd, "decoder.mid_block.resnets.0.")
    x = _attention(x, sd, "decoder.mid_block.attentions.0.", names)
    x = _resnet(x, sd, "decoder.mid_block.resnets.1.")
    i = 0
    while f"decoder.up_blocks.{i}.resnets.0.conv1.weight" in sd:
        j = 0
        while f"decoder.up_blocks.{i}.resnets.{j}.conv1.weight" in sd:
            x = _resnet(x, sd, f"decoder.up_blocks.{i}.resnets.{j}.")
            j += 1
        if f"decoder.up_blocks.{i}.upsamplers.0.conv.weight" in sd:
            x = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
            x = _conv(x, sd, f"decoder.up_blocks.{i}.upsamplers.0.conv")
        i += 1
    x = torch.nn.functional.silu(_group_norm(x, sd, "decoder.conv_norm_out"))
    return _conv(x, sd, "decoder.conv_out")


@pytest.mark.parametrize("dtype,old_names,fmt", [("F32", False, "safetensors"), ("BF16", False, "safetensors"),
                                                 ("F16", True, "safetensors"), ("F32", True, "bin")])
def test_export_vae_matches_functional_decoder(tmp_path, dtype, old_names, fmt):
    sd = make_random_vae.random_state_dict((32, 32, 64), 1, 4, old_names, seed=5)
    path = str(tmp_path / f"vae.{fmt}")
    if fmt == "safetensors":
        make_random_vae.write_safetensors(sd, path, dtype)
    else:
        torch.save(sd, path)
    export_vae.export(path, str(tmp_path / "vae.ts"))
    module = torch.jit.load(str(tmp_path / "vae.ts"))
    assert (module.latent_channels, module.upscale, module.vae_contract_version) == (4, 4, 1)
    rounded = {k: v.to(make_random_vae._DTYPES[dtype]).float() for k, v in sd.items()}
    z = torch.randn(2, 4, 6, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = module(z)
    want = functional_decode(rounded, z, old_names)
    assert got.shape == (2, 3, 24, 20)
    assert torch.allclose(got.double(), want, atol=1e-4, rtol=1e-4)


def test_export_vae_names_the_bad_tensor(tmp_path):
    sd = make_random_vae.random_state_dict((32, 32), 1, 4, seed=1)
    bad = dict(sd)
    del bad["decoder.up_blocks.1.resnets.1.conv2.bias"]
    torch.save(bad, tmp_path / "missing.bin")
    bad = dict(sd)
    bad["decoder.mid_block.attentions.0.to_k.weight"] = torch.zeros(32, 16)
    torch.save(bad, tmp_path / "shape.bin")
    bad = dict(sd, **{"decoder.extra.weight": torch.zeros(1)})
    torch.save(bad, tmp_path / "extra.bin")
    script = os.path.join(os.path.dirname(export_vae.__file__), "export_vae.py")
    for name, expect in [("missing", "decoder.up_blocks.1.resnets.1.conv2.bias"),
                         ("shape", "decoder.mid_block.attentions.0.to_k.weight"),
                         ("extra", "decoder.extra.weight")]:
        proc = subprocess.run([sys.executable, script, str(tmp_path / f"{name}.bin"), "-o", str(tmp_path / "x.ts")],
                              capture_output=True, text=True)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expect in lines[0], proc.stderr
    with open(tmp_path / "trunc.safetensors", "wb") as f:
        f.write((1000).to_bytes(8, "little") + b"{}")
    with pytest.raises(export_vae.ExportError, match="header"):
        export_vae.export(str(tmp_path / "trunc.safetensors"), str(tmp_path / "x.ts"))

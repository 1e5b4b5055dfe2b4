"""Exported TorchScript DiT vs. an independent functional implementation of the official DiT
forward, written here straight from the state dict (docs: reference/dit.md), plus the export
script's error handling."""
import math
import os
import subprocess

import pytest
import torch

import export_dit

# --------------------------------------------------------------------------------------------
# Independent functional DiT forward (float64), from the official state-dict layout
# --------------------------------------------------------------------------------------------


def _linear(x, sd, name):
    return x @ sd[name + ".weight"].t() + sd[name + ".bias"]


def _layer_norm(x, eps=1e-6):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _silu(x):
    return x * torch.sigmoid(x)


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _modulate(x, shift, scale):
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


def _timestep_embedding(t, dim=256):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    args = t.to(torch.float64)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def official_forward(sd, x, t, y, heads):
    """The official DiT forward computed in float64 from an official-layout state dict."""
    sd = {k: v.to(torch.float64) for k, v in sd.items()}
    x = x.to(torch.float64)
    w = sd["x_embedder.proj.weight"]
    D, C, p, _ = w.shape
    B, _, H, W = x.shape
    h, wd = H // p, W // p
    # patch embedding as a matmul over (C, p, p) patches, row-major token order
    patches = x.reshape(B, C, h, p, wd, p).permute(0, 2, 4, 1, 3, 5).reshape(B, h * wd, C * p * p)
    tokens = patches @ w.reshape(D, C * p * p).t() + sd["x_embedder.proj.bias"] + sd["pos_embed"]
    temb = _linear(_silu(_linear(_timestep_embedding(t), sd, "t_embedder.mlp.0")), sd, "t_embedder.mlp.2")
    c = temb + sd["y_embedder.embedding_table.weight"][y]
    depth = 0
    while f"blocks.{depth}.attn.qkv.weight" in sd:
        depth += 1
    hd = D // heads
    T = tokens.shape[1]
    for i in range(depth):
        pre = f"blocks.{i}."
        mod = _linear(_silu(c), sd, pre + "adaLN_modulation.1")
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=1)
        a_in = _modulate(_layer_norm(tokens), shift_msa, scale_msa)
        qkv = _linear(a_in, sd, pre + "attn.qkv").reshape(B, T, 3, heads, hd)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, T, heads, hd)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
        att = torch.softmax(scores, dim=-1)
        o = torch.einsum("bhqk,bkhd->bqhd", att, v).reshape(B, T, D)
        tokens = tokens + gate_msa[:, None, :] * _linear(o, sd, pre + "attn.proj")
        m_in = _modulate(_layer_norm(tokens), shift_mlp, scale_mlp)
        m = _linear(_gelu_tanh(_linear(m_in, sd, pre + "mlp.fc1")), sd, pre + "mlp.fc2")
        tokens = tokens + gate_mlp[:, None, :] * m
    shift, scale = _linear(_silu(c), sd, "final_layer.adaLN_modulation.1").chunk(2, dim=1)
    out = _linear(_modulate(_layer_norm(tokens), shift, scale), sd, "final_layer.linear")
    oc = out.shape[-1] // (p * p)
    out = out.reshape(B, h, wd, p, p, oc).permute(0, 5, 1, 3, 2, 4).reshape(B, oc, h * p, wd * p)
    return out


def _inputs(model, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    C, S, K = int(model.in_channels), int(model.input_size), int(model.num_classes)
    x = torch.randn(batch, C, S, S, generator=g)
    t = torch.tensor([999, 500, 0, 250, 37, 1][:batch], dtype=torch.int64)
    y = torch.tensor([0, K, K - 1, 1, 2, 3][:batch], dtype=torch.int64)  # K = null label
    return x, t, y


def _assert_close_to_official(model, sd, heads, tol=1e-5):
    x, t, y = _inputs(model)
    with torch.no_grad():
        got = model(x, t, y)
    ref = official_forward(sd, x, t, y, heads)
    assert got.dtype == torch.float32
    assert got.shape == ref.shape
    err = (got.double() - ref).abs().max().item()
    assert err <= tol * max(1.0, ref.abs().max().item()), err


@pytest.mark.parametrize("name", ["latent", "pixel"])
def test_export_matches_official_forward_random(random_dits, name):
    fx = random_dits[name]
    model = torch.jit.load(fx["ts"])
    assert int(model.depth) == fx["depth"]
    assert int(model.hidden_size) == fx["hidden"]
    assert int(model.patch_size) == fx["patch"]
    assert int(model.input_size) == fx["input_size"]
    assert int(model.in_channels) == fx["in_channels"]
    assert int(model.num_classes) == fx["num_classes"]
    assert bool(model.learn_sigma) == fx["learn_sigma"]
    assert int(model.out_channels) == fx["in_channels"] * (2 if fx["learn_sigma"] else 1)
    assert int(model.num_heads) == fx["heads"]
    assert int(model.contract_version) >= 1
    _assert_close_to_official(model, fx["sd"], fx["heads"])


def test_export_matches_official_forward_fmnist(fmnist_ckpt, fixture_dir):
    out = str(fixture_dir / "fmnist.ts")
    cfg, heads = export_dit.export(fmnist_ckpt, out, num_heads=3)
    assert cfg == dict(input_size=32, patch_size=4, in_channels=1, hidden_size=192, depth=12,
                       num_classes=10, learn_sigma=True)
    sd = torch.load(fmnist_ckpt, map_location="cpu")
    sd = {k: v.float() for k, v in sd.items()}
    _assert_close_to_official(torch.jit.load(out), sd, 3)


def test_shipped_fmnist_ts_matches_checkpoint(fmnist_ckpt, fmnist_ts):
    sd = {k: v.float() for k, v in torch.load(fmnist_ckpt, map_location="cpu").items()}
    _assert_close_to_official(torch.jit.load(fmnist_ts), sd, 3)


def test_forward_equals_method_by_hand(latent_dit):
    model = torch.jit.load(latent_dit["ts"])
    x, t, y = _inputs(model, batch=4)
    with torch.no_grad():
        want = model(x, t, y)
        tokens, c = model.embed(x, t, y)
        assert tokens.shape == (4, (16 // 2) ** 2, 64) and c.shape == (4, 64)
        for i in range(int(model.depth)):
            blk = getattr(model.blocks, str(i))
            mods = blk.modulation(c)
            assert len(mods) == 6
            s1, c1, g1, s2, c2, g2 = mods
            a = blk.attn(tokens, s1, c1)
            assert a.shape == tokens.shape
            tokens = tokens + g1.unsqueeze(1) * a
            m = blk.mlp(tokens, s2, c2)
            tokens = tokens + g2.unsqueeze(1) * m
        got = model.final(tokens, c)
    assert torch.equal(got, want)


def test_branch_methods_match_official_pieces(latent_dit):
    """modulation chunk order and un-gated attn/mlp outputs against the state dict."""
    model = torch.jit.load(latent_dit["ts"])
    sd = {k: v.double() for k, v in latent_dit["sd"].items()}
    x, t, y = _inputs(model)
    with torch.no_grad():
        tokens, c = model.embed(x, t, y)
        blk = getattr(model.blocks, "1")
        mods = blk.modulation(c)
        ref_mods = _linear(_silu(c.double()), sd, "blocks.1.adaLN_modulation.1").chunk(6, dim=1)
        for got, ref in zip(mods, ref_mods):
            assert torch.allclose(got.double(), ref, atol=1e-5)
        s1, c1 = mods[0], mods[1]
        got = blk.mlp(tokens, mods[3], mods[4]).double()
        m_in = _modulate(_layer_norm(tokens.double()), mods[3].double(), mods[4].double())
        ref = _linear(_gelu_tanh(_linear(m_in, sd, "blocks.1.mlp.fc1")), sd, "blocks.1.mlp.fc2")
        assert torch.allclose(got, ref, atol=1e-5)
        assert blk.attn(tokens, s1, c1).shape == tokens.shape


# --------------------------------------------------------------------------------------------
# Export script behaviour
# --------------------------------------------------------------------------------------------


def _run_export(python_exe, repo_root, ckpt, out, *extra):
    script = os.path.join(repo_root, "scripts", "tools", "export_dit.py")
    return subprocess.run([python_exe, script, ckpt, "-o", out, *extra], capture_output=True, text=True,
                          timeout=120)


def _assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("export_dit.py: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_export_cli_missing_tensor(python_exe, repo_root, latent_dit, tmp_path):
    sd = dict(latent_dit["sd"])
    del sd["blocks.1.mlp.fc2.bias"]
    ckpt = str(tmp_path / "missing.pt")
    torch.save(sd, ckpt)
    out = str(tmp_path / "missing.ts")
    proc = _run_export(python_exe, repo_root, ckpt, out, "--num-heads", "4")
    _assert_one_line_error(proc, "blocks.1.mlp.fc2.bias")
    assert not os.path.exists(out)


def test_export_errors_in_process(latent_dit, tmp_path):
    """Wrong shape, preset mismatch and missing heads, without a subprocess each."""
    sd = dict(latent_dit["sd"])
    sd["blocks.2.attn.proj.weight"] = torch.zeros(64, 63)
    bad = str(tmp_path / "shape.pt")
    torch.save(sd, bad)
    with pytest.raises(export_dit.ExportError, match=r"blocks\.2\.attn\.proj\.weight"):
        export_dit.export(bad, str(tmp_path / "shape.ts"), num_heads=4)
    with pytest.raises(export_dit.ExportError, match=r"DiT-S/2.*tensor '"):
        export_dit.export(latent_dit["ckpt"], str(tmp_path / "preset.ts"), preset="DiT-S/2")
    with pytest.raises(export_dit.ExportError, match="head"):
        export_dit.export(latent_dit["ckpt"], str(tmp_path / "heads.ts"))
    with pytest.raises(export_dit.ExportError, match="does not exist"):
        export_dit.export(str(tmp_path / "nope.pt"), str(tmp_path / "nope.ts"), num_heads=4)


def test_export_cli_wrong_shape_and_preset(python_exe, repo_root, latent_dit, tmp_path):
    sd = dict(latent_dit["sd"])
    sd["blocks.2.attn.proj.weight"] = torch.zeros(64, 63)
    bad = str(tmp_path / "shape.pt")
    torch.save(sd, bad)
    _assert_one_line_error(_run_export(python_exe, repo_root, bad, str(tmp_path / "a.ts"), "--num-heads", "4"),
                           "blocks.2.attn.proj.weight", "[64, 63]")
    _assert_one_line_error(_run_export(python_exe, repo_root, latent_dit["ckpt"], str(tmp_path / "b.ts"),
                                       "--preset", "DiT-S/2"), "DiT-S/2", "tensor '")


def test_export_cli_no_heads(python_exe, repo_root, latent_dit, tmp_path):
    _assert_one_line_error(_run_export(python_exe, repo_root, latent_dit["ckpt"], str(tmp_path / "c.ts")),
                           "--num-heads")


@pytest.mark.parametrize("variant", ["ema", "model", "float16"])
def test_export_wrapped_and_half(latent_dit, tmp_path, variant):
    sd = latent_dit["sd"]
    if variant == "float16":
        obj = {k: v.half() for k, v in sd.items()}
        ref_sd = {k: v.float() for k, v in obj.items()}
    else:
        obj = {variant: sd, "args": {"note": "training checkpoint"}}
        if variant == "ema":  # 'ema' wins over 'model'
            obj["model"] = {k: torch.zeros_like(v) for k, v in sd.items()}
        ref_sd = sd
    ckpt = str(tmp_path / f"{variant}.pt")
    out = str(tmp_path / f"{variant}.ts")
    torch.save(obj, ckpt)
    cfg, heads = export_dit.export(ckpt, out, num_heads=4)
    assert heads == 4 and cfg["depth"] == 3 and cfg["learn_sigma"]
    model = torch.jit.load(out)
    for name, param in model.named_parameters():
        assert param.dtype == torch.float32, name
    _assert_close_to_official(model, ref_sd, 4)

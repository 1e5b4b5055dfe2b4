"""Model contract version 2 and the flow-matching families of export_dit.py (--family dit|sit|repa):
the v2 DiT export against the v1 one (bit for bit, float against int64 timesteps), SiT exports
against a SiT forward written here from the published math, REPA exports against REPA's raw
network on its own time, the checkpoint handling of REPA (projectors, legacy layout, qk_norm),
the attributes, the CLI, and reference_flow.py sampling both conventions of one flow."""
import math
import os
import subprocess

import pytest
import torch
import torch.nn.functional as F

import dit_module
import export_dit
import make_random_dit
import reference_flow as rf

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HEADS = 4
# tiny latent-like model: 4 channels, 8x8 input, patch 2 (16 tokens), 10 classes
ARCH = dict(depth=2, hidden=32, patch=2, input_size=8, in_channels=4, num_classes=10)
TIMES = [0.0, 0.03125, 0.25, 0.5, 0.7, 0.96, 1.0]


# --------------------------------------------------------------------------------------------
# SiT's network, written here (float64) from an official-layout state dict: DiT's forward with
# the time, a float in [0, 1], through the same sinusoidal embedding, and the sigma half dropped
# --------------------------------------------------------------------------------------------

def _dense(h, sd, name):
    return F.linear(h, sd[name + ".weight"], sd[name + ".bias"])


def _adaln(h, shift, scale):
    return F.layer_norm(h, h.shape[-1:], eps=1e-6) * (1 + scale[:, None]) + shift[:, None]


def network(sd, x, t, y, heads=HEADS):
    """The raw network (DiT = SiT = REPA's SiT) at time values t in its own units, all of its
    output channels. Tensors not used in sampling (projectors.*) are ignored."""
    sd = {k: v.double() for k, v in sd.items() if not k.startswith("projectors.")}
    w = sd["x_embedder.proj.weight"]
    D, p = w.shape[0], w.shape[2]
    x = x.double()
    n = x.shape[-1] // p
    h = F.conv2d(x, w, sd["x_embedder.proj.bias"], stride=p).flatten(2).transpose(1, 2)
    h = h + sd["pos_embed"]
    k = torch.arange(128, dtype=torch.float64)
    ang = t.double()[:, None] * torch.exp(-math.log(10000.0) * k / 128)[None]
    temb = _dense(F.silu(_dense(torch.cat([ang.cos(), ang.sin()], 1), sd, "t_embedder.mlp.0")),
                  sd, "t_embedder.mlp.2")
    c = temb + sd["y_embedder.embedding_table.weight"][y]
    B, T, hd = h.shape[0], h.shape[1], D // heads
    i = 0
    while f"blocks.{i}.adaLN_modulation.1.weight" in sd:
        pre = f"blocks.{i}."
        s1, c1, g1, s2, c2, g2 = _dense(F.silu(c), sd, pre + "adaLN_modulation.1").chunk(6, 1)
        q, kk, v = _dense(_adaln(h, s1, c1), sd, pre + "attn.qkv").view(B, T, 3, heads, hd).unbind(2)
        att = torch.softmax(torch.einsum("bihd,bjhd->bhij", q, kk) / math.sqrt(hd), dim=-1)
        a = torch.einsum("bhij,bjhd->bihd", att, v).reshape(B, T, D)
        h = h + g1[:, None] * _dense(a, sd, pre + "attn.proj")
        m = _dense(F.gelu(_dense(_adaln(h, s2, c2), sd, pre + "mlp.fc1"), approximate="tanh"),
                   sd, pre + "mlp.fc2")
        h = h + g2[:, None] * m
        i += 1
    shift, scale = _dense(F.silu(c), sd, "final_layer.adaLN_modulation.1").chunk(2, 1)
    out = _dense(_adaln(h, shift, scale), sd, "final_layer.linear")
    oc = out.shape[-1] // (p * p)
    return torch.einsum("nhwpqc->nchpwq", out.reshape(B, n, n, p, p, oc)).reshape(B, oc, n * p, n * p)


def sit_forward(sd, x, t, y):
    """SiT's forward: the network at SiT time t, the second half of a 2C output dropped."""
    out = network(sd, x, t, y)
    C = x.shape[1]
    return out[:, :C] if out.shape[1] == 2 * C else out


def repa_forward(sd, x, t, y):
    """REPA's network at REPA time t (1 = noise): its output, eps - x (C channels)."""
    return network(sd, x, t, y)


def _inputs(batch=len(TIMES), seed=0):
    g = torch.Generator().manual_seed(seed)
    C, S, K = ARCH["in_channels"], ARCH["input_size"], ARCH["num_classes"]
    x = torch.randn(batch, C, S, S, generator=g)
    y = torch.tensor([K, 0, 3, K - 1, 5, 1, 2][:batch], dtype=torch.int64)  # K = null label
    return x, y


def _close(got, ref, tol=1e-5):
    assert got.dtype == torch.float32 and got.shape == ref.shape, (got.dtype, got.shape, ref.shape)
    err = (got.double() - ref).abs().max().item()
    assert err <= tol * max(1.0, ref.abs().max().item()), err


# --------------------------------------------------------------------------------------------
# Fixtures: random checkpoints of each family, exported
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """name -> dict(sd, ckpt, ts, module). The REPA checkpoint (two projector heads) shares
    every sampling tensor with 'sit' (same seed, no sigma half); 'raw' is that network exported
    as a SiT, i.e. REPA's raw network on REPA's time."""
    d = tmp_path_factory.mktemp("flow_exports")
    specs = {
        "dit_v1": ("dit", 1, True), "dit_v2": ("dit", 2, True),
        "sit_sigma": ("sit", 2, True), "sit": ("sit", 2, False), "repa": ("repa", 2, False),
    }
    out = {}
    for name, (family, version, learn_sigma) in specs.items():
        sd = make_random_dit.family_state_dict(family, **ARCH, learn_sigma=learn_sigma, seed=5,
                                               z_dims=(24, 40) if family == "repa" else None)
        ckpt, ts = str(d / f"{name}.pt"), str(d / f"{name}.ts")
        torch.save(sd, ckpt)
        info = export_dit.export_model(ckpt, ts, num_heads=HEADS, family=family,
                                       contract_version=version)
        out[name] = dict(sd=sd, ckpt=ckpt, ts=ts, info=info, module=torch.jit.load(ts))
    # REPA's raw network: the REPA weights without projectors, time and sign untouched.
    raw_sd = {k: v for k, v in out["repa"]["sd"].items() if not k.startswith("projectors.")}
    ts = str(d / "raw.ts")
    export_dit.export_state_dict(raw_sd, ts, "raw", num_heads=HEADS, family="sit")
    out["raw"] = dict(sd=raw_sd, ts=ts, module=torch.jit.load(ts))
    return out


def test_shared_tensors_of_repa_and_sit_fixtures(exports):
    """make_random_dit draws REPA's projectors after everything else: the sampling tensors are
    the SiT checkpoint's of the same seed."""
    repa, sit = exports["repa"]["sd"], exports["sit"]["sd"]
    assert sorted(k for k in repa if k.startswith("projectors.")) == sorted(
        f"projectors.{j}.{layer}.{kind}" for j in (0, 1) for layer in (0, 2, 4)
        for kind in ("weight", "bias"))
    assert repa["projectors.1.4.weight"].shape == (40, 64)
    assert set(exports["raw"]["sd"]) == set(sit)
    assert all(torch.equal(exports["raw"]["sd"][k], sit[k]) for k in sit)


# --------------------------------------------------------------------------------------------
# Attributes
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,version,prediction,family,out_ch,learn_sigma", [
    ("dit_v1", 1, None, None, 8, True),
    ("dit_v2", 2, "eps", "dit", 8, True),
    ("sit_sigma", 2, "velocity", "sit", 8, True),
    ("sit", 2, "velocity", "sit", 4, False),
    ("repa", 2, "velocity", "repa", 4, False),
])
def test_exported_attributes(exports, name, version, prediction, family, out_ch, learn_sigma):
    m = exports[name]["module"]
    assert int(m.contract_version) == version
    assert int(m.out_channels) == out_ch and int(m.in_channels) == 4
    assert bool(m.learn_sigma) == learn_sigma
    assert int(m.num_heads) == HEADS and int(m.depth) == 2 and int(m.hidden_size) == 32
    c = m._c
    if version == 1:  # the version-1 attribute set, as the shipped model has it
        assert not c.hasattr("prediction") and not c.hasattr("model_family")
    else:
        assert c.hasattr("prediction") and c.hasattr("model_family")
        assert m.prediction == prediction and isinstance(m.prediction, str)
        assert m.model_family == family and isinstance(m.model_family, str)
    info = exports[name]["info"]
    assert info["contract_version"] == version and info["family"] == (family or "dit")
    assert dit_module.CONTRACT_VERSION == 2 and dit_module.FAMILIES == dict(
        dit="eps", sit="velocity", repa="velocity")


# --------------------------------------------------------------------------------------------
# DiT: version 2 is version 1 with float timesteps
# --------------------------------------------------------------------------------------------

def test_dit_v2_equals_v1_bit_for_bit(exports):
    v1, v2 = exports["dit_v1"]["module"], exports["dit_v2"]["module"]
    x, y = _inputs()
    t = torch.tensor([999, 500, 0, 250, 37, 1, 998], dtype=torch.int64)
    tf = t.to(torch.float32)
    with torch.no_grad():
        want = v1(x, t, y)
        assert torch.equal(v2(x, tf, y), want)
        assert torch.equal(v2(x, t, y), want)  # int64 still accepted, same bits
        # the pieces eoc drives, one by one
        tok1, c1 = v1.embed(x, t, y)
        tok2, c2 = v2.embed(x, tf, y)
        assert torch.equal(tok1, tok2) and torch.equal(c1, c2)
        for i in range(2):
            b1, b2 = getattr(v1.blocks, str(i)), getattr(v2.blocks, str(i))
            mods = b1.modulation(c1)
            assert all(torch.equal(a, b) for a, b in zip(mods, b2.modulation(c2)))
            assert torch.equal(b1.attn(tok1, mods[0], mods[1]), b2.attn(tok2, mods[0], mods[1]))
            assert torch.equal(b1.mlp(tok1, mods[3], mods[4]), b2.mlp(tok2, mods[3], mods[4]))
        assert torch.equal(v1.final(tok1, c1), v2.final(tok2, c2))
    _close(want, network(exports["dit_v1"]["sd"], x, t, y))


def test_default_cli_export_is_dit_v2(exports, python_exe, repo_root, tmp_path):
    out = str(tmp_path / "cli.ts")
    proc = subprocess.run([python_exe, os.path.join(repo_root, "scripts", "tools", "export_dit.py"),
                           exports["dit_v1"]["ckpt"], "-o", out, "--num-heads", str(HEADS)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "family dit (prediction eps, contract version 2)" in proc.stderr
    m = torch.jit.load(out)
    assert (m.prediction, m.model_family, int(m.contract_version)) == ("eps", "dit", 2)
    x, y = _inputs()
    t = torch.tensor([999, 500, 0, 250, 37, 1, 998], dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(m(x, t, y), exports["dit_v2"]["module"](x, t, y))


# --------------------------------------------------------------------------------------------
# SiT: the velocity at SiT's t in [0, 1]
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sit_sigma", "sit"])
def test_sit_export_matches_sit_forward(exports, name):
    fx = exports[name]
    m = fx["module"]
    x, y = _inputs()
    t = torch.tensor(TIMES, dtype=torch.float32)
    with torch.no_grad():
        out = m(x, t, y)
    C = x.shape[1]
    assert out.shape[1] == int(m.out_channels) == (2 * C if name == "sit_sigma" else C)
    _close(out[:, :C], sit_forward(fx["sd"], x, t, y))
    # the time really is used as a float: t and t + 1/64 differ
    with torch.no_grad():
        assert not torch.allclose(m(x, t + 1.0 / 64, y)[:, :C], out[:, :C], atol=1e-4)


# --------------------------------------------------------------------------------------------
# REPA: the module presents SiT's convention around REPA's own network
# --------------------------------------------------------------------------------------------

def test_repa_export_is_minus_repa_network_at_one_minus_t(exports):
    m, sd = exports["repa"]["module"], exports["repa"]["sd"]
    x, y = _inputs()
    t = torch.tensor(TIMES, dtype=torch.float32)
    with torch.no_grad():
        got = m(x, t, y)
    _close(got, -repa_forward(sd, x, 1 - t.double(), y))
    # and it is not the network on SiT's time (the conversion is not a no-op here)
    assert (got.double() - repa_forward(sd, x, t, y)).abs().max() > 1e-2


def test_repa_wrapper_sits_outside_the_blocks(exports):
    """embed takes 1 - t, final negates; the blocks (what the cache stores) are REPA's own:
    bit for bit the raw network's pieces at REPA time."""
    m, raw = exports["repa"]["module"], exports["raw"]["module"]
    x, y = _inputs()
    t = torch.tensor(TIMES, dtype=torch.float32)
    t_repa = 1 - t
    with torch.no_grad():
        tok, c = m.embed(x, t, y)
        tok_r, c_r = raw.embed(x, t_repa, y)
        assert torch.equal(tok, tok_r) and torch.equal(c, c_r)
        for i in range(2):
            b, br = getattr(m.blocks, str(i)), getattr(raw.blocks, str(i))
            mods = b.modulation(c)
            assert all(torch.equal(p, q) for p, q in zip(mods, br.modulation(c_r)))
            a = b.attn(tok, mods[0], mods[1])
            assert torch.equal(a, br.attn(tok, mods[0], mods[1]))
            tok = tok + mods[2][:, None] * a
            mm = b.mlp(tok, mods[3], mods[4])
            assert torch.equal(mm, br.mlp(tok, mods[3], mods[4]))
            tok = tok + mods[5][:, None] * mm
        assert torch.equal(m.final(tok, c), -raw.final(tok, c))
        assert torch.equal(m(x, t, y), -raw(x, t_repa, y))
        assert torch.equal(m.final(tok, c), m(x, t, y))


def test_repa_log_line_reports_projectors_dropped(exports, python_exe, repo_root, tmp_path):
    info = exports["repa"]["info"]
    assert any("dropped 12 projector tensors" in n and "projectors.{0,1}.*" in n
               for n in info["notes"]), info["notes"]
    params = dict(exports["repa"]["module"].named_parameters())
    assert not any("projector" in k for k in params)
    assert set(params) == set(dict(exports["raw"]["module"].named_parameters()))
    out = str(tmp_path / "repa.ts")
    proc = subprocess.run([python_exe, os.path.join(repo_root, "scripts", "tools", "export_dit.py"),
                           exports["repa"]["ckpt"], "-o", out, "--family", "repa", "--num-heads",
                           str(HEADS)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in ("family repa (prediction velocity, contract version 2)", "t -> 1 - t",
                   "negated", "dropped 12 projector tensors", "projectors."):
        assert needle in lines[0], (needle, lines[0])
    x, y = _inputs()
    t = torch.tensor(TIMES, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(torch.jit.load(out)(x, t, y), exports["repa"]["module"](x, t, y))


def test_repa_legacy_layout_is_renumbered(exports, tmp_path):
    """REPA's legacy checkpoints keep blocks after the encoder depth as decoder_blocks.j."""
    sd = {}
    for k, v in exports["repa"]["sd"].items():
        parts = k.split(".")
        if parts[0] == "blocks" and int(parts[1]) >= 1:  # encoder depth 1 of 2
            parts[0], parts[1] = "decoder_blocks", str(int(parts[1]) - 1)
        sd[".".join(parts)] = v
    assert "decoder_blocks.0.attn.qkv.weight" in sd and "blocks.1.attn.qkv.weight" not in sd
    ckpt, out = str(tmp_path / "legacy.pt"), str(tmp_path / "legacy.ts")
    torch.save({"ema": sd}, ckpt)
    info = export_dit.export_model(ckpt, out, num_heads=HEADS, family="repa")
    assert any("decoder_blocks.0-0 renumbered to blocks.1-1" in n for n in info["notes"])
    x, y = _inputs()
    t = torch.tensor(TIMES, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(torch.jit.load(out)(x, t, y), exports["repa"]["module"](x, t, y))


def test_repa_qk_norm_refused(python_exe, repo_root, tmp_path):
    sd = make_random_dit.family_state_dict("repa", **ARCH, learn_sigma=False, seed=5,
                                           qk_norm=True, heads=HEADS)
    assert "blocks.0.attn.q_norm.weight" in sd and sd["blocks.1.attn.k_norm.bias"].shape == (8,)
    ckpt = str(tmp_path / "qk.pt")
    torch.save(sd, ckpt)
    for family in ("repa", "sit"):
        with pytest.raises(export_dit.ExportError, match=r"qk_norm.*not supported"):
            export_dit.export(ckpt, str(tmp_path / "qk.ts"), num_heads=HEADS, family=family)
    out = str(tmp_path / "qk_cli.ts")
    proc = subprocess.run([python_exe, os.path.join(repo_root, "scripts", "tools", "export_dit.py"),
                           ckpt, "-o", out, "--family", "repa", "--num-heads", str(HEADS)],
                          capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("export_dit.py: error: checkpoint has tensor 'blocks.0.attn.")
    assert "qk_norm" in lines[0]
    assert not os.path.exists(out)


def test_repa_checkpoint_under_another_family_refused(exports, tmp_path):
    for family in ("dit", "sit"):
        with pytest.raises(export_dit.ExportError,
                           match=r"'projectors\.0\.0\.bias'.*--family repa, not " + family):
            export_dit.export(exports["repa"]["ckpt"], str(tmp_path / "x.ts"), num_heads=HEADS,
                              family=family)
    assert not os.path.exists(str(tmp_path / "x.ts"))


# --------------------------------------------------------------------------------------------
# --family, presets, contract versions
# --------------------------------------------------------------------------------------------

def test_family_values(exports, python_exe, repo_root, tmp_path):
    script = os.path.join(repo_root, "scripts", "tools", "export_dit.py")
    proc = subprocess.run([python_exe, script, exports["sit"]["ckpt"], "-o", str(tmp_path / "x.ts"),
                           "--family", "flow", "--num-heads", str(HEADS)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--family" in proc.stderr and "'dit', 'sit', 'repa'" in proc.stderr
    assert not os.path.exists(str(tmp_path / "x.ts"))
    helptext = subprocess.run([python_exe, script, "--help"], capture_output=True, text=True,
                              timeout=120).stdout
    assert "{dit,sit,repa}" in helptext and "default dit" in helptext
    assert "cannot be read off the weights" in " ".join(helptext.split())
    with pytest.raises(export_dit.ExportError, match="unknown family 'flow'"):
        export_dit.export(exports["sit"]["ckpt"], str(tmp_path / "y.ts"), num_heads=HEADS,
                          family="flow")
    for family in ("sit", "repa"):
        with pytest.raises(export_dit.ExportError, match="version 1 only for DiT"):
            export_dit.export(exports[family]["ckpt"], str(tmp_path / "z.ts"), num_heads=HEADS,
                              family=family, contract_version=1)
    with pytest.raises(export_dit.ExportError, match="contract version 3"):
        export_dit.export(exports["sit"]["ckpt"], str(tmp_path / "z.ts"), num_heads=HEADS,
                          contract_version=3)


def test_presets_per_family(exports, tmp_path):
    assert export_dit.PRESETS["SiT-XL/2"] == (28, 1152, 16, 2) == export_dit.PRESETS["DiT-XL/2"]
    assert export_dit.PRESETS["SiT-B/4"] == (12, 768, 12, 4)
    assert export_dit.PRESETS["SiT-S/8"] == (12, 384, 6, 8)
    with pytest.raises(export_dit.ExportError, match=r"preset DiT-S/2 names a DiT.*SiT-S/2"):
        export_dit.export(exports["sit"]["ckpt"], str(tmp_path / "p.ts"), preset="DiT-S/2",
                          family="sit")
    with pytest.raises(export_dit.ExportError, match=r"preset SiT-S/2 names a SiT.*DiT-S/2"):
        export_dit.export(exports["dit_v2"]["ckpt"], str(tmp_path / "p.ts"), preset="SiT-S/2")
    # a SiT preset is checked against the shapes like a DiT one
    with pytest.raises(export_dit.ExportError, match=r"preset SiT-S/2 expects depth 12"):
        export_dit.export(exports["repa"]["ckpt"], str(tmp_path / "p.ts"), preset="SiT-S/2",
                          family="repa")


def test_make_random_dit_cli_writes_every_family_and_version(python_exe, repo_root, tmp_path):
    script = os.path.join(repo_root, "scripts", "testing", "make_random_dit.py")
    arch = ["--depth", "1", "--hidden", "16", "--input-size", "4", "--num-classes", "3",
            "--num-heads", "2"]
    want = {"d1": ("dit", "1", None, 8), "d2": ("dit", "2", "eps", 8),
            "s2": ("sit", "2", "velocity", 8), "r2": ("repa", "2", "velocity", 4)}
    for name, (family, version, prediction, out_ch) in want.items():
        proc = subprocess.run([python_exe, script, "-o", str(tmp_path / f"{name}.pt"), *arch,
                               "--family", family, "--ts", str(tmp_path / f"{name}.ts"),
                               "--contract-version", version], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        m = torch.jit.load(str(tmp_path / f"{name}.ts"))
        assert int(m.contract_version) == int(version) and int(m.out_channels) == out_ch
        assert (m.prediction if m._c.hasattr("prediction") else None) == prediction
        sd = torch.load(str(tmp_path / f"{name}.pt"))
        assert any(k.startswith("projectors.") for k in sd) == (family == "repa")
    proc = subprocess.run([python_exe, script, "-o", str(tmp_path / "bad.pt"), *arch,
                           "--family", "sit", "--ts", str(tmp_path / "bad.ts"),
                           "--contract-version", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "version 1 only for DiT" in proc.stderr


# --------------------------------------------------------------------------------------------
# reference_flow.py: the SiT and REPA conventions describe the same flow
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler,cfg", [("euler", 1.0), ("heun", 3.0), ("sde", 2.0),
                                         ("repa-euler", 2.5), ("repa-sde", 1.0)])
def test_reference_flow_repa_export_equals_raw_network_with_convention(exports, sampler, cfg):
    """Sampling the REPA export as a SiT model equals sampling REPA's raw network with
    reference_flow's own convention handling (convention='repa'). SiT samplers: bit for bit
    (both take 1 - t in float32 and negate); REPA samplers: the export's 1 - (1 - t) can differ
    from t by a float32 rounding."""
    kw = dict(sampler=sampler, steps=6, cfg_scale=cfg, classes="1,9,4", num_samples=3, seed=11,
              seed_mode="per-image")
    a = rf.sample(exports["repa"]["module"], convention="sit", **kw)
    b = rf.sample(exports["raw"]["module"], convention="repa", **kw)
    assert torch.isfinite(a).all() and a.abs().max() > 0.1
    if sampler.startswith("repa"):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a - b).abs().max()
    else:
        assert torch.equal(a, b)


def test_reference_flow_sit_and_repa_samplers_integrate_the_same_flow(exports):
    """SiT's Euler on N + 1 grid points and REPA's Euler with N steps visit the same times (t_sit
    = i/N = 1 - t_repa) and take the same steps: on the REPA export (SiT convention) and on
    REPA's raw network (its own convention) they give the same samples up to rounding (with
    guidance on the same channels: SiT guides 3 by default, REPA all)."""
    n = 8
    kw = dict(cfg_scale=2.0, cfg_channels="all", classes="0,9,7", num_samples=3, seed=3,
              seed_mode="official")
    sit = rf.sample(exports["repa"]["module"], sampler="euler", steps=n + 1, convention="sit", **kw)
    repa = rf.sample(exports["raw"]["module"], sampler="repa-euler", steps=n, convention="repa", **kw)
    assert sit.abs().max() > 0.1
    assert torch.allclose(sit, repa, atol=1e-5, rtol=1e-5), (sit - repa).abs().max()
    # the convention matters: the raw network sampled as if it were a SiT model differs
    wrong = rf.sample(exports["raw"]["module"], sampler="euler", steps=n + 1, convention="sit", **kw)
    assert (wrong - sit).abs().max() > 1e-2

"""The Python reference sampler: schedules against hand-computed values, seed-mode streams against
inline re-implementations of DiT's sample.py / sample_ddp.py loops, and the feature-cache
reference's invariants."""
import os
import subprocess

import numpy as np
import pytest
import torch

import reference_sampler as rs

# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


def _beta(j):
    """Linear beta of original step j, from the definition (python floats)."""
    return 1e-4 + j * (0.02 - 1e-4) / 999


def test_linear_betas():
    b = rs.linear_betas()
    assert b.dtype == np.float64 and b.shape == (1000,)
    assert b[0] == 1e-4 and b[-1] == 0.02
    for j in (1, 2, 500, 998):
        assert abs(b[j] - _beta(j)) < 1e-15


def test_even_respacing_250():
    # stride 999/249 = 4.012048...: k*stride stays below x.5 until k = 42 (168.506 -> 169)
    kept = rs.space_timesteps(1000, 250, "even")
    assert len(kept) == 250
    assert kept[:12] == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44]
    assert kept[41] == 164 and kept[42] == 169 and kept[43] == 173
    assert kept[-3:] == [991, 995, 999]


def test_even_respacing_small():
    # stride 999/19 = 52.5789...
    assert rs.space_timesteps(1000, 20, "even") == [0, 53, 105, 158, 210, 263, 315, 368, 421, 473, 526,
                                                   578, 631, 684, 736, 789, 841, 894, 946, 999]
    assert rs.space_timesteps(1000, 2, "even") == [0, 999]
    assert rs.space_timesteps(1000, 1, "even") == [0]
    assert rs.space_timesteps(1000, 1000, "even") == list(range(1000))
    with pytest.raises(ValueError):
        rs.space_timesteps(1000, 1001, "even")


def test_ddim_respacing():
    assert rs.space_timesteps(1000, 20, "ddim") == list(range(0, 1000, 50))
    assert rs.space_timesteps(1000, 25, "ddim") == list(range(0, 1000, 40))
    assert rs.space_timesteps(1000, 50, "ddim") == list(range(0, 1000, 20))
    assert rs.space_timesteps(1000, 250, "ddim") == list(range(0, 1000, 4))
    # 30 does not divide 1000: the smallest stride giving exactly 30 steps is 34
    assert rs.space_timesteps(1000, 30, "ddim") == list(range(0, 1000, 34))
    with pytest.raises(ValueError):  # strides 3 -> 334 steps, 4 -> 250: none gives 300
        rs.space_timesteps(1000, 300, "ddim")


def test_respaced_schedule_arrays():
    s = rs.Schedule(250, "even")
    assert s.num_steps == 250 and s.timesteps[:3] == [0, 4, 8]
    # beta of the respaced process: 1 - abar[t_k] / abar[t_{k-1}]
    assert abs(s.betas[0] - 1e-4) < 1e-15
    prod = 1.0
    for j in range(1, 5):
        prod *= 1 - _beta(j)
    assert abs(s.betas[1] - (1 - prod)) < 1e-14
    base_abar = np.cumprod(1 - rs.linear_betas())
    np.testing.assert_allclose(s.alphas_cumprod, base_abar[s.timesteps], rtol=1e-12)
    assert s.alphas_cumprod_prev[0] == 1.0
    assert s.posterior_variance[0] == 0.0
    assert s.posterior_log_variance_clipped[0] == s.posterior_log_variance_clipped[1]
    k = 7
    ab, abp, be = s.alphas_cumprod[k], s.alphas_cumprod[k - 1], s.betas[k]
    assert abs(s.posterior_mean_coef1[k] - be * abp ** 0.5 / (1 - ab)) < 1e-12
    assert abs(s.posterior_mean_coef2[k] - (1 - abp) * (1 - be) ** 0.5 / (1 - ab)) < 1e-12
    assert abs(s.sqrt_recipm1_alphas_cumprod[k] - (1 / ab - 1) ** 0.5) < 1e-12
    assert abs(s.fixed_large_log_variance[k] - np.log(be)) < 1e-12
    assert s.fixed_large_log_variance[0] == np.log(s.posterior_variance[1])
    v = rs.Schedule.extract(s.posterior_mean_coef1, k)
    assert v.dtype == torch.float32 and v.item() == float(np.float32(s.posterior_mean_coef1[k]))


def test_full_schedule_is_identity():
    s = rs.Schedule(1000, "even")
    np.testing.assert_allclose(s.betas, rs.linear_betas(), rtol=1e-9, atol=1e-15)


# --------------------------------------------------------------------------------------------
# Seeds and labels
# --------------------------------------------------------------------------------------------


def test_splitmix64_vectors():
    # the standard splitmix64 stream seeded with 0 (state advanced by the golden gamma)
    assert rs.splitmix64(0) == 0xE220A8397B1DCDAF
    assert rs.splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4
    assert rs.splitmix64((2 * 0x9E3779B97F4A7C15) % 2 ** 64) == 0x06C45D188009454F
    assert rs.image_seed(5, 3) == rs.splitmix64(rs.splitmix64(5) ^ 3)
    assert rs.per_image_label(5, 3, 10) == rs.splitmix64(rs.image_seed(5, 3) ^ 0x6C6162656C5F6964) % 10
    assert 0 <= rs.image_seed(2 ** 64 - 1, 10 ** 6) < 2 ** 64


def test_resolve_labels():
    assert rs.resolve_labels(None, 10, 1000) == [207, 360, 387, 974, 88, 979, 417, 279, 207, 360]
    assert rs.resolve_labels(None, 12, 10) == [i % 10 for i in range(12)]
    assert rs.resolve_labels("3,4", 5, 10) == [3, 4, 3, 4, 3]
    assert rs.resolve_labels([1], 2, 10) == [1, 1]
    assert rs.resolve_labels("random", 4, 10) == "random"
    with pytest.raises(ValueError):
        rs.resolve_labels("10", 1, 10)


# --------------------------------------------------------------------------------------------
# Inline re-implementation of DiT's sampling loops (IDDPM style: doubled CFG state, batch-shaped
# timesteps, coefficients broadcast as IDDPM's _extract_into_tensor does)
# --------------------------------------------------------------------------------------------


def _inline_official(ts_path, steps, cfg_scale, labels, num_samples, batch, seed, sampler="ddpm", eta=0.0,
                     per_image=False):
    model = torch.jit.load(ts_path)
    C, S, K = int(model.in_channels), int(model.input_size), int(model.num_classes)
    learn_sigma = int(model.out_channels) == 2 * C
    betas0 = np.linspace(0.0001, 0.02, 1000, dtype=np.float64)
    abar0 = np.cumprod(1.0 - betas0, axis=0)
    use, cur, frac = set(), 0.0, (1000 - 1) / (steps - 1)
    for _ in range(steps):
        use.add(round(cur))
        cur += frac
    new_betas, tmap, last = [], [], 1.0
    for i, a in enumerate(abar0):
        if i in use:
            new_betas.append(1 - a / last)
            last = a
            tmap.append(i)
    betas = np.array(new_betas)
    alphas = 1.0 - betas
    abar = np.cumprod(alphas, axis=0)
    abar_prev = np.append(1.0, abar[:-1])
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    post_logvar = np.log(np.append(post_var[1], post_var[1:]))
    coef1 = betas * np.sqrt(abar_prev) / (1.0 - abar)
    coef2 = (1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar)
    fixed_large_log = np.log(np.append(post_var[1], betas[1:]))

    def ext(arr, t, shape):
        res = torch.from_numpy(arr)[t].float()
        while res.dim() < len(shape):
            res = res[..., None]
        return res.expand(shape)

    map_tensor = torch.tensor(tmap)

    def net(x, t, y):
        return model(x, map_tensor[t], y)

    def forward_with_cfg(x, t, y):
        half = x[: len(x) // 2]
        out = net(torch.cat([half, half], 0), t, y)
        eps, rest = out[:, :3], out[:, 3:]
        cond, uncond = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([half_eps, half_eps], 0), rest], dim=1)

    using_cfg = cfg_scale != 1.0
    out_samples, out_labels = [], []
    if not per_image:
        torch.manual_seed(seed)
    for start in range(0, num_samples, batch):
        n = min(batch, num_samples - start)
        if per_image:
            gens = [torch.Generator().manual_seed(rs.image_seed(seed, start + j)) for j in range(n)]
            z = torch.stack([torch.randn(C, S, S, generator=g) for g in gens])
            if labels == "random":
                y = torch.tensor([rs.per_image_label(seed, start + j, K) for j in range(n)])
        else:
            z = torch.randn(n, C, S, S)
            if labels == "random":
                y = torch.randint(0, K, (n,))
        if labels != "random":
            y = torch.tensor([labels[(start + j) % len(labels)] for j in range(n)])
        out_labels += y.tolist()
        fn = net
        if using_cfg:
            z = torch.cat([z, z], 0)
            y = torch.cat([y, torch.tensor([K] * n)], 0)
            fn = forward_with_cfg
        img = z
        with torch.no_grad():
            for i in reversed(range(steps)):
                t = torch.tensor([i] * img.shape[0])
                shape = img.shape
                model_output = fn(img, t, y)
                if learn_sigma:
                    model_output, var_values = torch.split(model_output, C, dim=1)
                    min_log = ext(post_logvar, t, shape)
                    max_log = ext(np.log(betas), t, shape)
                    f = (var_values + 1) / 2
                    log_var = f * max_log + (1 - f) * min_log
                else:
                    log_var = ext(fixed_large_log, t, shape)
                x0 = (ext(np.sqrt(1.0 / abar), t, shape) * img
                      - ext(np.sqrt(1.0 / abar - 1), t, shape) * model_output)
                mask = (t != 0).float().view(-1, 1, 1, 1)

                def draw():
                    if per_image:  # one draw per image and step; both CFG halves share it
                        nz = torch.stack([torch.randn(C, S, S, generator=g) for g in gens])
                        return torch.cat([nz, nz], 0) if using_cfg else nz
                    return torch.randn_like(img)

                if sampler == "ddpm":
                    mean = ext(coef1, t, shape) * x0 + ext(coef2, t, shape) * img
                    img = mean + mask * torch.exp(0.5 * log_var) * draw()
                else:
                    eps = (ext(np.sqrt(1.0 / abar), t, shape) * img - x0) / ext(np.sqrt(1.0 / abar - 1), t, shape)
                    ab, abp = ext(abar, t, shape), ext(abar_prev, t, shape)
                    sigma = eta * torch.sqrt((1 - abp) / (1 - ab)) * torch.sqrt(1 - ab / abp)
                    mean_pred = x0 * torch.sqrt(abp) + torch.sqrt(1 - abp - sigma ** 2) * eps
                    # IDDPM's ddim_sample calls randn_like at every step, used or not; the
                    # per-image streams (this project's) draw only when eta > 0.
                    noise = draw() if (eta > 0 or not per_image) else None
                    img = mean_pred + mask * sigma * noise if eta > 0 else mean_pred
        out_samples.append(img[:n])
    return torch.cat(out_samples, 0), out_labels


OFFICIAL_CASES = [
    # name, fixture, kwargs
    ("sample_py_cfg4", "latent", dict(sampler="ddpm", cfg_scale=4.0, labels=[1, 2, 3], num_samples=3, batch=3)),
    ("sample_ddp_random", "latent", dict(sampler="ddpm", cfg_scale=1.5, labels="random", num_samples=5, batch=3)),
    ("no_cfg_fixed_large", "pixel", dict(sampler="ddpm", cfg_scale=1.0, labels="random", num_samples=5, batch=2)),
    ("fixed_large_cfg", "pixel", dict(sampler="ddpm", cfg_scale=3.0, labels=[4, 0], num_samples=3, batch=2)),
    ("ddim_eta", "latent", dict(sampler="ddim", eta=0.5, cfg_scale=2.0, labels="random", num_samples=4, batch=3)),
    ("ddim_eta0", "latent", dict(sampler="ddim", cfg_scale=1.5, labels=[7], num_samples=4, batch=3)),
]


@pytest.mark.parametrize("name,fixture,kw", OFFICIAL_CASES, ids=[c[0] for c in OFFICIAL_CASES])
def test_official_seed_mode_matches_inline_loop(random_dits, name, fixture, kw):
    ts = random_dits[fixture]["ts"]
    want, want_labels = _inline_official(ts, 3, kw["cfg_scale"], kw["labels"], kw["num_samples"], kw["batch"],
                                         seed=11, sampler=kw["sampler"], eta=kw.get("eta", 0.0))
    got, labels = rs.sample(ts, sampler=kw["sampler"], steps=3, eta=kw.get("eta", 0.0), cfg_scale=kw["cfg_scale"],
                            classes=kw["labels"], num_samples=kw["num_samples"], batch_size=kw["batch"], seed=11,
                            seed_mode="official", return_labels=True)
    assert labels == want_labels
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(got, want)


@pytest.mark.parametrize("sampler,eta", [("ddpm", 0.0), ("ddim", 0.7)])
def test_per_image_mode_matches_inline_loop(latent_dit, sampler, eta):
    ts = latent_dit["ts"]
    want, want_labels = _inline_official(ts, 3, 1.5, "random", 4, 4, seed=3, sampler=sampler, eta=eta,
                                         per_image=True)
    got, labels = rs.sample(ts, sampler=sampler, steps=3, eta=eta, cfg_scale=1.5, classes="random", num_samples=4,
                            batch_size=4, seed=3, seed_mode="per-image", return_labels=True)
    assert labels == want_labels
    assert torch.equal(got, want)


def test_per_image_batch_invariance(latent_dit):
    kw = dict(sampler="ddpm", steps=3, cfg_scale=1.5, classes="random", num_samples=10, seed=5,
              seed_mode="per-image", return_labels=True)
    a, la = rs.sample(latent_dit["ts"], batch_size=3, **kw)
    b, lb = rs.sample(latent_dit["ts"], batch_size=10, **kw)
    assert la == lb
    # same noise and labels; the model's float32 GEMMs may round differently per batch shape,
    # so equality is up to float32 rounding (random-weight outputs here reach |x| ~ 1e3)
    err = (a - b).abs().max().item()
    assert err <= 1e-5 * b.abs().max().item(), err
    # image i depends on (seed, i) only: a different seed changes every image
    c = rs.sample(latent_dit["ts"], batch_size=10, **dict(kw, seed=6, return_labels=False))
    assert ((c - b).flatten(1).abs().max(dim=1).values > 1e-3).all()


def test_official_mode_depends_on_batching(latent_dit):
    kw = dict(sampler="ddpm", steps=2, cfg_scale=1.5, num_samples=4, seed=0, seed_mode="official")
    a = rs.sample(latent_dit["ts"], batch_size=2, **kw)
    b = rs.sample(latent_dit["ts"], batch_size=4, **kw)
    assert not torch.allclose(a, b)


def test_cfg_channels(random_dits):
    kw = dict(sampler="ddim", steps=2, cfg_scale=3.0, num_samples=2, seed=1)
    lat = random_dits["latent"]["ts"]  # 8 output channels: "3" guides eps channels 0..2 only
    assert not torch.allclose(rs.sample(lat, cfg_channels="3", **kw), rs.sample(lat, cfg_channels="all", **kw))
    pix = random_dits["pixel"]["ts"]  # 1 output channel: both choices guide everything
    assert torch.equal(rs.sample(pix, cfg_channels="3", **kw), rs.sample(pix, cfg_channels="all", **kw))


# --------------------------------------------------------------------------------------------
# Feature-cache reference
# --------------------------------------------------------------------------------------------


def test_fora_plan_shape_and_steps():
    plan = rs.fora_plan(20, 4, 3)
    assert plan.shape == (20, 4, 2) and plan.dtype == bool
    computed = [k for k in range(20) if not plan[k].any()]
    assert computed == [0, 1, 4, 7, 10, 13, 16, 19]  # i = 19, 18, 15, 12, ..., 0
    assert all(plan[k].all() for k in range(20) if k not in computed)
    assert not rs.fora_plan(5, 2, 1).any()
    assert [k for k in range(4) if not rs.fora_plan(4, 1, 2)[k].any()] == [0, 1, 3]
    with pytest.raises(ValueError):
        rs.make_plan(np.ones((3, 2, 2), dtype=bool), 3, 2)  # reuse at step 0
    with pytest.raises(ValueError):
        rs.make_plan(np.zeros((3, 2, 1), dtype=bool), 3, 2)


def test_feature_cache_taylor_arithmetic():
    cache = rs.FeatureCache("taylor")
    f0, f2 = torch.full((1, 2, 3), 1.0), torch.full((1, 2, 3), 4.0)
    cache.store(0, 1, 0, f0)
    assert torch.equal(cache.fetch(0, 1, 1), f0)  # no p yet: plain
    cache.store(0, 1, 2, f2)
    # tau = (k - r) / (r - p) = (5 - 2) / (2 - 0) = 1.5
    assert torch.allclose(cache.fetch(0, 1, 5), f2 + 1.5 * (f2 - f0))
    plain = rs.FeatureCache("none")
    plain.store(0, 1, 0, f0)
    plain.store(0, 1, 2, f2)
    assert torch.equal(plain.fetch(0, 1, 5), f2)
    with pytest.raises(ValueError):
        plain.fetch(3, 0, 4)


BASE = dict(sampler="ddim", steps=4, cfg_scale=1.5, num_samples=2, seed=2, seed_mode="per-image")


def test_fora1_equals_uncached(latent_dit):
    ts = latent_dit["ts"]
    ref = rs.sample(ts, **BASE)
    assert torch.equal(rs.sample(ts, cache="fora:1", **BASE), ref)
    assert torch.equal(rs.sample(ts, cache=np.zeros((4, 3, 2), dtype=bool).tolist(), **BASE), ref)
    assert torch.equal(rs.sample(ts, cache="fora:1", correct="taylor", **dict(BASE, sampler="ddpm")),
                       rs.sample(ts, **dict(BASE, sampler="ddpm")))


def test_taylor_without_second_point_equals_none(latent_dit):
    ts = latent_dit["ts"]
    kw = dict(BASE, steps=3)  # fora:2 over 3 steps: computed k = 0, 2; k = 1 reuses with no p
    none = rs.sample(ts, cache="fora:2", correct="none", **kw)
    assert torch.equal(rs.sample(ts, cache="fora:2", correct="taylor", **kw), none)
    assert not torch.equal(none, rs.sample(ts, **kw))


def test_plan_array_equals_fora_string_and_taylor_differs(latent_dit):
    ts = latent_dit["ts"]
    plan = rs.fora_plan(4, 3, 2)  # computed k = 0, 1, 3; k = 2 reuses with r = 1, p = 0
    a = rs.sample(ts, cache="fora:2", **BASE)
    assert torch.equal(rs.sample(ts, cache=plan, **BASE), a)
    t = rs.sample(ts, cache="fora:2", correct="taylor", **BASE)
    assert not torch.equal(t, a)
    # a partial plan: only block 1's mlp reused at step 2
    part = np.zeros((4, 3, 2), dtype=bool)
    part[2, 1, 1] = True
    p = rs.sample(ts, cache=part, **BASE)
    assert not torch.equal(p, a) and not torch.equal(p, rs.sample(ts, **BASE))


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def test_cli_writes_raw_samples(python_exe, repo_root, latent_dit, tmp_path):
    out = str(tmp_path / "raw.npy")
    cmd = [python_exe, os.path.join(repo_root, "scripts", "testing", "reference_sampler.py"), "--model", latent_dit["ts"],
           "--sampler", "ddim", "--steps", "4", "--eta", "0.3", "--cfg-scale", "1.5", "--classes", "random",
           "--num-samples", "3", "--batch-size", "2", "--seed", "9", "--seed-mode", "per-image",
           "--cache", "fora:2", "--correct", "taylor", "--out-raw", out, "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    arr = np.load(out)
    assert arr.dtype == np.float32 and arr.shape == (3, 4, 16, 16)
    # The same thread count as the CLI's --threads 1: a GEMM's rounding can depend on how
    # OpenBLAS splits it (this test used to pass only after another module left torch at 1).
    before = torch.get_num_threads()
    rs.set_threads(1)
    try:
        want = rs.sample(latent_dit["ts"], sampler="ddim", steps=4, eta=0.3, cfg_scale=1.5, classes="random",
                         num_samples=3, batch_size=2, seed=9, seed_mode="per-image", cache="fora:2",
                         correct="taylor")
    finally:
        rs.set_threads(before)
    np.testing.assert_allclose(arr, want.numpy(), rtol=0, atol=1e-5)

    bad = subprocess.run(cmd[:-4] + ["--cache", "bogus", "--out-raw", out], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "reference_sampler.py: error:" in bad.stderr

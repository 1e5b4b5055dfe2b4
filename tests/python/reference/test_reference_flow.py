"""scripts/testing/reference_flow.py: the flow-matching (SiT / REPA) reference sampler, checked by
hand on toy velocity fields (no official code needed): grids, one Euler step, Heun's exactness,
the SDE's Mean last step, the noise draws of official seeding, guidance and its interval."""
import numpy as np
import pytest
import torch

import reference_flow as rf

B, C, H, K = 2, 4, 4, 5
SEED = 3


class Toy(torch.nn.Module):
    """A velocity model from a function fn(x, t, y); records (rows, t, y) of every call."""

    def __init__(self, fn, channels=C, size=H, classes=K):
        super().__init__()
        self.in_channels, self.input_size, self.num_classes = channels, size, classes
        self.fn = fn
        self.calls = []

    def forward(self, x, t, y):
        assert x.dtype == torch.float32 and t.dtype == torch.float32 and y.dtype == torch.int64
        assert t.shape == (x.shape[0],) and y.shape == (x.shape[0],)
        self.calls.append((x.shape[0], t.clone(), y.clone()))
        return self.fn(x, t, y)


def label_const(x, t, y):
    """v = (label + 1) * (channel + 1): cond and null rows differ, nothing depends on x or t."""
    ch = torch.arange(1, x.shape[1] + 1, dtype=torch.float32).view(1, -1, 1, 1)
    return (y.float() + 1).view(-1, 1, 1, 1) * ch * torch.ones_like(x)


def nonlinear(x, t, y):
    return torch.sin(x) * (1 + t.view(-1, 1, 1, 1)) + 0.1 * y.float().view(-1, 1, 1, 1)


def run(model, sampler, steps, **kw):
    kw.setdefault("classes", [1, 3])
    kw.setdefault("num_samples", B)
    kw.setdefault("seed", SEED)
    return rf.sample(model, sampler, steps, **kw)


def official_noise(rows_per_step, draws, dtype=torch.float32):
    """torch's global stream as official seeding uses it: z, then `draws` step noises."""
    torch.manual_seed(SEED)
    z = torch.randn(B, C, H, H)
    return z, [torch.randn(rows_per_step, C, H, H, dtype=dtype)[:B] for _ in range(draws)]


# --------------------------------------------------------------------------------------------
# Grids and descriptions
# --------------------------------------------------------------------------------------------

def test_time_grids_and_their_endpoints():
    g = rf.time_grid("euler", 6)
    assert g.dtype == torch.float32 and len(g) == 6 and g[0] == 0 and g[-1] == 1
    assert torch.equal(rf.time_grid("heun", 6), g)
    s = rf.time_grid("sde", 6)
    assert s.dtype == torch.float32 and len(s) == 6 and s[0] == 0
    assert s[-1] == torch.tensor(0.96, dtype=torch.float32)
    assert rf.time_grid("sde", 6, last_step_size=0.1)[-1] == torch.tensor(0.9, dtype=torch.float32)
    r = rf.time_grid("repa-euler", 5)
    assert r.dtype == torch.float64 and len(r) == 6 and r[0] == 1 and r[-1] == 0
    q = rf.time_grid("repa-sde", 5)
    assert q.dtype == torch.float64 and len(q) == 6 and q[0] == 1 and q[-2] == 0.04 and q[-1] == 0
    with pytest.raises(ValueError):
        rf.time_grid("euler", 1)  # SiT's N counts grid points
    with pytest.raises(ValueError):
        rf.time_grid("nope", 4)


@pytest.mark.parametrize("sampler", rf.SAMPLERS)
def test_described_evaluations_and_draws_are_what_the_sampler_does(sampler):
    n = 5
    d = rf.describe(sampler, n, cfg_scale=4.0)
    model = Toy(nonlinear)
    run(model, sampler, n, cfg_scale=4.0)
    assert len(model.calls) == d["model_evals"]
    assert all(rows == 2 * B for rows, _, _ in model.calls)  # guided everywhere: CFG batches
    assert d["steps"] == len(d["grid"]) - 1 == len(d["guided_steps"]) == len(d["interval_times"])
    want = {"euler": (n - 1, n - 1, 0), "heun": (n - 1, 2 * (n - 1), 0),
            "sde": (n, n, n - 1), "sde-heun": (n, 2 * n - 1, n - 1),
            "repa-euler": (n, n, 0), "repa-heun": (n, 2 * n - 1, 0), "repa-sde": (n, n, n - 1)}
    assert (d["steps"], d["model_evals"], d["noise_draws"]) == want[sampler]
    # SiT's SDE code calls the network for the velocity and again for the score
    assert d["official_network_calls"] == d["model_evals"] * (2 if sampler in ("sde", "sde-heun") else 1)
    assert d["grid_sit_time"][0] == 0.0 and d["grid_sit_time"][-1] == 1.0


# --------------------------------------------------------------------------------------------
# ODE steps by hand
# --------------------------------------------------------------------------------------------

def test_one_euler_step_is_x0_plus_v_dt():
    model = Toy(nonlinear)
    out = run(model, "euler", 2)
    z, _ = official_noise(B, 0)
    y = torch.tensor([1, 3])
    assert torch.equal(out, z + 1.0 * nonlinear(z, torch.zeros(B), y))
    (rows, t, labels), = model.calls
    assert rows == B and torch.equal(t, torch.zeros(B)) and labels.tolist() == [1, 3]


def test_euler_steps_on_the_float32_grid():
    model = Toy(nonlinear)
    out = run(model, "euler", 4)
    x, _ = official_noise(B, 0)
    grid = torch.linspace(0, 1, 4)
    y = torch.tensor([1, 3])
    for i in range(3):
        x = x + (grid[i + 1] - grid[i]) * nonlinear(x, torch.ones(B) * grid[i], y)
    assert torch.equal(out, x)
    assert [float(t[0]) for _, t, _ in model.calls] == [float(v) for v in grid[:-1]]


def test_heun_is_exact_for_a_velocity_linear_in_time_and_euler_is_not():
    c, d = 0.7, -1.3

    def field(x, t, y):
        return (c + d * t).view(-1, 1, 1, 1) * torch.ones_like(x)
    z, _ = official_noise(B, 0)
    exact = z + c + d / 2  # x(1) = x(0) + int_0^1 (c + d t) dt
    heun = run(Toy(field), "heun", 5)
    euler = run(Toy(field), "euler", 5)
    assert torch.allclose(heun, exact, atol=1e-6)
    assert (euler - exact).abs().max() > 0.1
    # REPA's Heun (its time runs 1 -> 0, v_repa = -v_sit) drops the correction on its last step
    n = 4

    def field_repa(x, t, y):
        return -field(x, 1 - t, y)
    repa = run(Toy(field_repa), "repa-heun", n, convention="repa")
    h = 1.0 / n  # the last step (SiT time 1 - h to 1) is Euler: it misses d h^2 / 2
    want = z.double() + c + d / 2 - d * h * h / 2
    assert torch.allclose(repa.double(), want, atol=1e-6)


def test_heun_on_a_velocity_linear_in_x_multiplies_by_the_rk2_factor():
    lam = -0.8
    n = 6
    out = run(Toy(lambda x, t, y: lam * x), "heun", n)
    z, _ = official_noise(B, 0)
    h = 1.0 / (n - 1)
    factor = (1 + lam * h + (lam * h) ** 2 / 2) ** (n - 1)
    assert torch.allclose(out, z * factor, rtol=1e-5, atol=1e-6)
    assert abs(factor - np.exp(lam)) < 5e-3  # and close to the exact solution


# --------------------------------------------------------------------------------------------
# SDE: drift from the velocity, the Mean last step, the noise draws
# --------------------------------------------------------------------------------------------

def sit_drift(v, x, t):
    score = (t * v - x) / ((1 - t) ** 2 + t * (1 - t))
    return v + (1 - t) * score


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_sde_two_steps_by_hand_with_the_mean_last_step(cfg_scale):
    """N = 2: one Euler-Maruyama step from t = 0 over dt = 0.96 with noise randn(state shape)
    (2B rows with CFG, first B used), then x += drift(x, 0.96) * 0.04 without noise."""
    model = Toy(label_const)
    out = run(model, "sde", 2, cfg_scale=cfg_scale, cfg_channels="all")
    z, (noise,) = official_noise(2 * B if cfg_scale > 1 else B, 1)
    y = torch.tensor([1, 3])

    def v(x, t):
        cond = label_const(x, t, y)
        if cfg_scale == 1.0:
            return cond
        uncond = label_const(x, t, torch.full_like(y, K))
        return uncond + cfg_scale * (cond - uncond)
    dt = torch.tensor(0.96)
    t0 = torch.tensor(0.0)
    x = z + sit_drift(v(z, t0), z, t0) * dt + torch.sqrt(2 * (1 - t0)) * noise * torch.sqrt(dt)
    t1 = torch.tensor(0.96)
    x = x + sit_drift(v(x, t1), x, t1) * 0.04
    assert torch.allclose(out, x, atol=1e-5)
    assert [round(float(t[0]), 6) for _, t, _ in model.calls] == [0.0, 0.96]


@pytest.mark.parametrize("sampler,cfg_scale", [("sde", 1.0), ("sde", 4.0), ("sde-heun", 4.0),
                                               ("repa-sde", 1.0), ("repa-sde", 4.0),
                                               ("euler", 4.0), ("heun", 4.0), ("repa-heun", 4.0)])
def test_official_seeding_draws_one_noise_per_step_and_none_for_the_last(sampler, cfg_scale):
    """After sampling, torch's stream is where z, then noise_draws(N) randn of the state's shape
    (SiT: 2B rows with CFG; REPA: B rows in float64) leave it."""
    n = 5
    run(Toy(nonlinear), sampler, n, cfg_scale=cfg_scale)
    after = torch.randn(8)
    fam = rf.family(sampler)
    rows = 2 * B if fam == "sit" and cfg_scale > 1 else B
    dtype = torch.float64 if fam == "repa" else torch.float32
    official_noise(rows, rf.noise_draws(sampler, n), dtype)
    assert torch.equal(torch.randn(8), after)
    # one more draw would not land there
    official_noise(rows, rf.noise_draws(sampler, n) + 1, dtype)
    assert not torch.equal(torch.randn(8), after)


def test_random_labels_follow_the_initial_noise():
    _, labels = rf.sample(Toy(nonlinear), "euler", 2, classes="random", num_samples=3, seed=SEED,
                          return_labels=True)
    torch.manual_seed(SEED)
    torch.randn(3, C, H, H)
    assert labels == torch.randint(0, K, (3,)).tolist()


def test_per_image_samples_do_not_depend_on_the_batch():
    a = rf.sample(Toy(nonlinear), "sde", 4, cfg_scale=2.0, classes="random", num_samples=3,
                  batch_size=3, seed=SEED, seed_mode="per-image")
    b = rf.sample(Toy(nonlinear), "sde", 4, cfg_scale=2.0, classes="random", num_samples=3,
                  batch_size=1, seed=SEED, seed_mode="per-image")
    assert torch.allclose(a, b, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Guidance
# --------------------------------------------------------------------------------------------

def test_guidance_on_the_first_three_channels_or_all():
    s = 4.0
    z, _ = official_noise(B, 0)
    y = torch.tensor([1, 3])
    cond, uncond = label_const(z, None, y), label_const(z, None, torch.full_like(y, K))
    guided = uncond + s * (cond - uncond)
    three = run(Toy(label_const), "euler", 2, cfg_scale=s)
    assert torch.allclose(three[:, :3], z[:, :3] + guided[:, :3])
    assert torch.allclose(three[:, 3:], z[:, 3:] + cond[:, 3:])  # channel 3: the conditional output
    every = run(Toy(label_const), "euler", 2, cfg_scale=s, cfg_channels="all")
    assert torch.allclose(every, z + guided)
    # REPA guides all channels by default
    repa = run(Toy(lambda x, t, y: -label_const(x, t, y)), "repa-euler", 1, cfg_scale=s,
               convention="repa")
    assert torch.allclose(repa, z + guided, atol=1e-6)


def test_scale_one_runs_no_cfg_batch():
    model = Toy(label_const)
    run(model, "heun", 3, cfg_scale=1.0)
    assert all(rows == B and K not in labels.tolist() for rows, _, labels in model.calls)


def test_the_guidance_interval_switches_guidance_off_outside_it():
    """REPA's rule: a step is guided iff low <= t_cur <= high in REPA's time (1 = noise), t_cur the
    step's start; a Heun step's second evaluation follows its step; an unguided step runs the B
    conditional rows only."""
    model = Toy(nonlinear)
    run(model, "repa-heun", 10, cfg_scale=4.0, cfg_interval=(0.0, 0.7), convention="repa")
    starts = [1.0, 0.9, 0.8]  # the unguided steps: t_cur > 0.7
    rows = [r for r, _, _ in model.calls]
    assert rows[:6] == [B] * 6  # 3 steps x 2 evaluations, the one at t_next = 0.7 included
    assert rows[6:] == [2 * B] * (len(rows) - 6)
    assert [round(float(t[0]), 6) for _, t, _ in model.calls[:6:2]] == starts
    # guidance off everywhere = no guidance at all; on everywhere = the plain guided result
    off = run(Toy(label_const), "euler", 5, cfg_scale=4.0, cfg_interval=(2.0, 3.0))
    plain = run(Toy(label_const), "euler", 5, cfg_scale=1.0)
    on = run(Toy(label_const), "euler", 5, cfg_scale=4.0, cfg_interval=(0.0, 1.0))
    guided = run(Toy(label_const), "euler", 5, cfg_scale=4.0)
    assert torch.equal(off, plain) and torch.equal(on, guided) and not torch.equal(on, off)


def test_sit_samplers_decide_the_interval_as_repa_does_on_the_same_steps():
    # 0.3 lies on REPA's float64 grid linspace(1, 0, 11) as 0.29999999999999993 (unguided) while
    # 1 - float32(0.7) is 0.30000001 (guided): the SiT samplers take REPA's value
    for low, high in ((0.3, 0.7), (0.0, 0.7), (0.25, 0.65)):
        sit = rf.guided_steps("euler", 11, 4.0, (low, high))
        assert sit == rf.guided_steps("repa-euler", 10, 4.0, (low, high))
        assert sit == rf.guided_steps("heun", 11, 4.0, (low, high))
        sde = rf.guided_steps("sde", 10, 4.0, (low, high))
        assert sde == rf.guided_steps("repa-sde", 10, 4.0, (low, high))
    assert rf.guided_steps("euler", 11, 4.0, (0.3, 0.7)) == [False] * 3 + [True] * 4 + [False] * 3
    assert rf.guided_steps("euler", 11, 1.0, None) == [False] * 10  # scale 1: never guided


# --------------------------------------------------------------------------------------------
# Conventions and the model's outputs
# --------------------------------------------------------------------------------------------

def test_a_learned_sigma_half_is_dropped_before_guidance():
    half = run(Toy(nonlinear), "sde", 4, cfg_scale=3.0)
    doubled = run(Toy(lambda x, t, y: torch.cat([nonlinear(x, t, y), 100 + x], dim=1)), "sde", 4,
                  cfg_scale=3.0)
    assert torch.equal(half, doubled)


def test_the_repa_convention_is_the_same_flow():
    def repa_field(x, t, y):
        return -nonlinear(x, 1 - t, y)
    for sampler in ("euler", "sde-heun"):
        a = run(Toy(nonlinear), sampler, 6, cfg_scale=2.0)
        b = run(Toy(repa_field), sampler, 6, cfg_scale=2.0, convention="repa")
        assert torch.allclose(a, b, atol=1e-5)
    # REPA's N-step Euler grid is SiT's N + 1 points
    a = run(Toy(nonlinear), "euler", 7, cfg_scale=2.0, cfg_channels="all")
    b = run(Toy(nonlinear), "repa-euler", 6, cfg_scale=2.0)  # a SiT model under REPA's sampler
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError):
        run(Toy(nonlinear), "euler", 3, convention="edm")


def test_cli_writes_samples_from_an_exported_dit(pixel_dit, tmp_path):
    out, labels = tmp_path / "x.npy", tmp_path / "y.npy"
    rc = rf.main(["--model", pixel_dit["ts"], "--sampler", "heun", "--steps", "3", "--cfg-scale", "2",
                  "--classes", "0,4", "--num-samples", "2", "--seed", "5", "--out-raw", str(out),
                  "--out-labels", str(labels)])
    assert rc == 0
    got = np.load(out)
    want = rf.sample(pixel_dit["ts"], "heun", 3, cfg_scale=2.0, classes=[0, 4], num_samples=2, seed=5)
    assert got.shape == (2, 1, 16, 16) and np.array_equal(got, want.numpy())
    assert np.load(labels).tolist() == [0, 4]
    assert rf.main(["--describe", "--sampler", "sde", "--steps", "4"]) == 0
    assert rf.main(["--model", pixel_dit["ts"], "--sampler", "euler", "--steps", "1",
                    "--out-raw", str(out)]) == 2

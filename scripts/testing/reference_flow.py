#!/usr/bin/env python3
"""Independent reference sampler for flow-matching (velocity) DiTs: SiT's and REPA's samplers.

    reference_flow.py --model M.ts --sampler euler|heun|sde|sde-heun|repa-euler|repa-heun|repa-sde
        --steps N [--convention sit|repa] --cfg-scale S [--cfg-channels 3|all]
        [--cfg-interval LOW,HIGH] [--classes 1,2,3|random] --num-samples N --batch-size B
        --seed S --seed-mode official|per-image --out-raw out.npy [--threads T]
    reference_flow.py --describe --sampler S --steps N [--cfg-scale S --cfg-interval LOW,HIGH]

Written from the math of the public SiT code (willisma/SiT: transport/path.py, transport.py,
integrators.py, train_utils.py, sample.py, sample_ddp.py, models.py; torchdiffeq's fixed-grid
solvers) and REPA's samplers.py (sihyun-yu/REPA); no code is taken from them. Checked against
them on the same weights, labels and seeds (max abs difference <= 1e-5 in float32).

Time conventions (the model is called with a float32 time in [0, 1], the same sinusoidal
embedding DiT applies to integer timesteps):
  sit   SiT's Linear path: x_t = t x1 + (1 - t) x0, x0 ~ N(0, I) the noise, x1 the data, so t = 0
        is noise and t = 1 is data; the model predicts the velocity v = x1 - x0 (training target
        d/dt x_t). A SiT checkpoint with learn_sigma has 2C output channels; SiT's forward drops
        the second half, and so does this module (before guidance).
  repa  REPA: x_t = (1 - t) x + t eps, t = 1 is noise, t = 0 is data; the model predicts
        eps - x. The same flow: v_repa(x, t) = -v_sit(x, 1 - t).
`convention` names the model's; each sampler integrates in its own family's time and converts
(t -> 1 - t, v -> -v) only when the two differ.

Samplers (N = steps; "evals" = model evaluations per sample, a CFG-batched call counted once):
  euler, heun   SiT's ODE (sample_ode with torchdiffeq's fixed-grid `euler` / `heun2`): grid
                t = linspace(0, 1, N) in float32 (check_interval keeps t0 = 0, t1 = 1 for a
                velocity model on the Linear path; create_transport sets train_eps = sample_eps
                = 0 for it), N - 1 steps, dt = t[i+1] - t[i]. euler: y += dt f(t_i, y) (N - 1
                evals). heun2 (tableau c2 = 1, a21 = 1, b = (1/2, 1/2)): k1 = f(t_i, y),
                k2 = f(t_i + dt, y + dt k1), y += dt (k1/2 + k2/2); 2 (N - 1) evals (k2 is not
                taken at the next step's point, so none is shared).
  sde, sde-heun SiT's SDE with parse_sde_args' defaults: diffusion form "sigma" (w(t) = norm (1 - t),
                norm 1.0), last step "Mean" of size 0.04. Grid linspace(0, 1 - 0.04, N) in
                float32 (check_interval: t0 = 0 as the form is not SBDM; t1 = 1 - last step size),
                one dt = t[1] - t[0] for every step; N - 1 steps at t[:-1], then the Mean step at
                t1: x += f(x, t1) * 0.04, no noise. Drift f = v + w(t) score with
                score = (t v - x) / ((1 - t)^2 + t (1 - t)) (path.py's velocity-to-score).
                Euler-Maruyama: z = randn(state shape); x = x + f(x, t) dt + sqrt(2 w(t)) z sqrt(dt)
                (N evals). Heun: xhat = x + sqrt(2 w(t)) z sqrt(dt); K1 = f(xhat, t);
                K2 = f(xhat + dt K1, t + dt); x = xhat + dt/2 (K1 + K2) (2 (N - 1) + 1 evals).
                The official code calls the network twice per drift (for the velocity and for
                the score; equal results); this module calls it once.
  repa-euler, repa-heun, repa-sde   REPA's samplers.py, state in float64, model called in float32:
                repa-euler/-heun: grid linspace(1, 0, N + 1) (float64), N steps
                x += (t_next - t_cur) d; -heun adds REPA's second evaluation at t_next on the
                Euler point except at the last step (2 N - 1 evals). repa-sde: grid
                linspace(1, 0.04, N) then 0; N - 1 Euler-Maruyama steps with diffusion 2 t:
                d = v - t score, x += d dt + sqrt(2 t) z sqrt(|dt|), z = randn(B rows, float64);
                then the mean step to 0 (N evals). The same SDE as SiT's `sde` (w = 1 - t_sit).

Classifier-free guidance (cfg_scale > 1, as sample_ddp.py and REPA: no CFG batch at scale 1):
the model sees [x; x] with labels [y; null] (null = num_classes) and the velocity is
uncond + s (cond - uncond) on the first 3 channels (SiT's forward_with_cfg, as DiT; "3") or on
all channels (REPA; "all"); the other channels are the conditional output. REPA guides its SDE
drift d rather than v (the same, d being affine in v); this module does as each family does.
Guidance interval `cfg_interval=(low, high)`, REPA's rule: a step is guided iff
low <= t_cur <= high (both inclusive) with t_cur the step's START time in REPA's time (1 = noise);
every evaluation of the step (a Heun step's second one too) follows that decision, and an
unguided step evaluates only the B conditional rows. For SiT samplers t_cur is the value REPA's
float64 grid has for the same step (linspace(1, 0, N) for the ODEs, linspace(1, 0.04, N) for the
SDEs, whose last value is the Mean step's), i.e. 1 - t_sit without float32's rounding: an interval
end on a grid point is decided as REPA decides it.

Seed modes:
  official   torch.manual_seed(seed) once; per batch (b rows): z = randn(b, C, H, W), then (labels
             "random") y = randint(0, K, (b,)) (sample_ddp.py's and REPA generate.py's order).
             SiT samplers: one randn of the state's shape per noise-drawing step, rows 2b with
             CFG (sample code concatenates [z, z]; the first b rows are used), none for the Mean
             step; ODE samplers draw none. REPA sde: one randn(b, C, H, W) in float64 per
             Euler-Maruyama step (randn_like of its float64 state), none for the last step.
  per-image  reference_sampler.py's: image i has its own generator seeded with
             image_seed(seed, i); z_i = randn(C, H, W), then one randn(C, H, W) (float32; float64
             for repa-sde) per noise-drawing step. Random label as reference_sampler.py.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# reference_sampler also turns TorchScript's optimizing graph executor off (eoc runs the plain one).
from reference_sampler import image_seed, per_image_label, resolve_labels, set_threads  # noqa: E402

SIT_SAMPLERS = ("euler", "heun", "sde", "sde-heun")
REPA_SAMPLERS = ("repa-euler", "repa-heun", "repa-sde")
SAMPLERS = SIT_SAMPLERS + REPA_SAMPLERS
CONVENTIONS = ("sit", "repa")
SDE_DIFFUSION_NORM = 1.0   # parse_sde_args --diffusion-norm
SDE_LAST_STEP_SIZE = 0.04  # parse_sde_args --last-step-size (last step "Mean")
REPA_SDE_LAST_T = 0.04     # REPA euler_maruyama_sampler: linspace(1, 0.04, N), then 0


def family(sampler):
    if sampler in SIT_SAMPLERS:
        return "sit"
    if sampler in REPA_SAMPLERS:
        return "repa"
    raise ValueError(f"unknown sampler '{sampler}' ({', '.join(SAMPLERS)})")


def _check_steps(sampler, num_steps):
    least = 2 if family(sampler) == "sit" else 1
    if int(num_steps) < least:
        raise ValueError(f"{sampler} needs steps >= {least}"
                         + (" (SiT's N counts grid points: N - 1 steps)" if least == 2 else ""))
    return int(num_steps)


# --------------------------------------------------------------------------------------------
# Time grids and descriptions
# --------------------------------------------------------------------------------------------

def time_grid(sampler, num_steps, last_step_size=SDE_LAST_STEP_SIZE):
    """The grid the sampler steps on, in its family's time and dtype (module doc):
    euler/heun float32 linspace(0, 1, N); sde/sde-heun float32 linspace(0, 1 - last_step_size, N)
    (the Mean step then goes on to 1); repa-euler/-heun float64 linspace(1, 0, N + 1);
    repa-sde float64 linspace(1, 0.04, N) followed by 0."""
    n = _check_steps(sampler, num_steps)
    if sampler in ("euler", "heun"):
        return torch.linspace(0.0, 1.0, n, dtype=torch.float32)
    if sampler in ("sde", "sde-heun"):
        if not 0.0 < last_step_size < 1.0:
            raise ValueError("last_step_size must be in (0, 1)")
        return torch.linspace(0.0, 1.0 - last_step_size, n, dtype=torch.float32)
    if sampler in ("repa-euler", "repa-heun"):
        return torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
    return torch.cat([torch.linspace(1.0, REPA_SDE_LAST_T, n, dtype=torch.float64),
                      torch.zeros(1, dtype=torch.float64)])


def step_times(sampler, num_steps, last_step_size=SDE_LAST_STEP_SIZE):
    """[(t_start, t_end)] per step as Python floats in the family's time (the SDE's Mean step
    included)."""
    g = [float(v) for v in time_grid(sampler, num_steps, last_step_size)]
    pairs = list(zip(g[:-1], g[1:]))
    if sampler in ("sde", "sde-heun"):
        pairs.append((g[-1], 1.0))
    return pairs


def interval_times(sampler, num_steps, last_step_size=SDE_LAST_STEP_SIZE):
    """Per step: its start time in REPA's time (1 = noise), where the guidance interval is
    tested. REPA samplers: their grid's values. SiT samplers: the float64 value REPA's grid has
    for the same step, linspace(1, 0, N) (ODEs) or linspace(1, last_step_size, N) (SDEs, the
    Mean step's being last_step_size), so that an interval end on a grid point is decided as
    REPA decides it (1 - t of SiT's float32 grid can fall on the other side)."""
    n = _check_steps(sampler, num_steps)
    if family(sampler) == "repa":
        return [float(v) for v in time_grid(sampler, n)[:-1]]
    if sampler in ("euler", "heun"):
        return [float(v) for v in torch.linspace(1.0, 0.0, n, dtype=torch.float64)[:-1]]
    return [float(v) for v in torch.linspace(1.0, last_step_size, n, dtype=torch.float64)]


def guided_steps(sampler, num_steps, cfg_scale=1.0, cfg_interval=None,
                 last_step_size=SDE_LAST_STEP_SIZE):
    """Per step: whether it is guided (cfg_scale > 1 and, with an interval, REPA's rule)."""
    return [cfg_scale > 1.0 and _in_interval(cfg_interval, r)
            for r in interval_times(sampler, num_steps, last_step_size)]


def _in_interval(cfg_interval, t_repa):
    if cfg_interval is None:
        return True
    low, high = cfg_interval
    return low <= t_repa <= high


def evals_per_sample(sampler, num_steps):
    """Model evaluations per sample (a CFG-batched call counts once)."""
    n = _check_steps(sampler, num_steps)
    return {"euler": n - 1, "heun": 2 * (n - 1), "sde": n, "sde-heun": 2 * (n - 1) + 1,
            "repa-euler": n, "repa-heun": 2 * n - 1, "repa-sde": n}[sampler]


def noise_draws(sampler, num_steps):
    """randn draws per batch after the initial noise (official mode)."""
    n = _check_steps(sampler, num_steps)
    return n - 1 if sampler in ("sde", "sde-heun", "repa-sde") else 0


_TEXT = {
    "euler": "SiT ODE, torchdiffeq fixed-grid euler on float32 linspace(0, 1, N): N - 1 steps "
             "y += dt v(t_i, y)",
    "heun": "SiT ODE, torchdiffeq heun2 on float32 linspace(0, 1, N): N - 1 steps, k1 = v(t_i, y), "
            "k2 = v(t_i + dt, y + dt k1), y += dt (k1 + k2) / 2",
    "sde": "SiT SDE, Euler-Maruyama with diffusion w = 1 - t (form sigma, norm 1) on float32 "
           "linspace(0, 1 - 0.04, N): N - 1 noisy steps, then the Mean step of 0.04 to t = 1",
    "sde-heun": "SiT SDE, stochastic Heun (noise first, then a Heun step of the drift) on "
                "float32 linspace(0, 1 - 0.04, N): N - 1 steps, then the Mean step of 0.04",
    "repa-euler": "REPA euler_sampler, float64 state on linspace(1, 0, N + 1): N Euler steps",
    "repa-heun": "REPA euler_sampler with heun: N steps on linspace(1, 0, N + 1), Heun except "
                 "the last step (Euler)",
    "repa-sde": "REPA euler_maruyama_sampler, float64 state on linspace(1, 0.04, N) then 0: "
                "N - 1 Euler-Maruyama steps with diffusion 2t, then the mean step to 0",
}


def describe(sampler, num_steps, cfg_scale=1.0, cfg_interval=None, cfg_channels=None,
             last_step_size=SDE_LAST_STEP_SIZE, diffusion_norm=SDE_DIFFUSION_NORM):
    """A JSON-able description for reports: the grid (the family's time and SiT's), steps,
    evaluations, noise draws, guidance per step."""
    fam = family(sampler)
    steps = step_times(sampler, num_steps, last_step_size)
    grid = [steps[0][0]] + [b for _, b in steps]
    text = _TEXT[sampler]
    if sampler in ("sde", "sde-heun") and (last_step_size != SDE_LAST_STEP_SIZE
                                           or diffusion_norm != SDE_DIFFUSION_NORM):
        text += f" (here last step {last_step_size}, diffusion norm {diffusion_norm})"
    guided = guided_steps(sampler, num_steps, cfg_scale, cfg_interval, last_step_size)
    return dict(
        sampler=sampler, family=fam, kind="sde" if "sde" in sampler else "ode",
        time=("SiT: t = 0 noise, t = 1 data" if fam == "sit" else "REPA: t = 1 noise, t = 0 data"),
        num_steps=int(num_steps), grid=grid,
        grid_sit_time=grid if fam == "sit" else [1.0 - v for v in grid],
        steps=len(steps), model_evals=evals_per_sample(sampler, num_steps),
        official_network_calls=(evals_per_sample(sampler, num_steps)
                                * (2 if sampler in ("sde", "sde-heun") else 1)),
        noise_draws=noise_draws(sampler, num_steps),
        cfg_scale=float(cfg_scale), cfg_channels=_cfg_channels(sampler, cfg_channels),
        cfg_interval=list(cfg_interval) if cfg_interval is not None else None,
        interval_times=interval_times(sampler, num_steps, last_step_size),
        guided_steps=guided, text=text)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

def _cfg_channels(sampler, cfg_channels):
    if cfg_channels is None:
        return "3" if family(sampler) == "sit" else "all"
    if cfg_channels not in ("3", "all"):
        raise ValueError(f"cfg_channels must be '3' or 'all', got '{cfg_channels}'")
    return cfg_channels


class Velocity:
    """The (guided) velocity of one model in a sampler family's time and sign.

    `model(x, t, y)`: x (rows, C, H, W) float32, t (rows,) float32 in the model's `convention`,
    y (rows,) int64; returns (rows, C or 2C, H, W) (or a tuple whose first item is that, as
    REPA's SiT returns). The sigma half of 2C outputs is dropped as SiT's forward does."""

    def __init__(self, model, fam, convention, cfg_scale, cfg_channels, in_channels, num_classes):
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown convention '{convention}' (sit or repa)")
        self.model, self.fam, self.flip = model, fam, convention != fam
        self.scale = float(cfg_scale)
        self.use_cfg = self.scale > 1.0
        self.C, self.null = int(in_channels), int(num_classes)
        self.nch = self.C if cfg_channels == "all" else min(3, self.C)

    def batch(self, x, y, guide):
        if self.use_cfg and guide:
            return torch.cat([x, x], dim=0), torch.cat([y, torch.full_like(y, self.null)], dim=0)
        return x, y

    def network(self, xin, tin, yin):
        """The model's velocity for rows xin at times tin (the family's time, float32)."""
        if self.flip:
            tin = 1 - tin
        out = self.model(xin, tin, yin)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.shape[1] == 2 * self.C:
            out = out[:, :self.C]
        return -out if self.flip else out

    def guide(self, out, b):
        """uncond + s (cond - uncond) on the guided channels of a [cond; uncond] output; the
        other channels are the conditional rows'."""
        g, rest = out[:, :self.nch], out[:, self.nch:]
        cond, uncond = g[:b], g[b:]
        return torch.cat([uncond + self.scale * (cond - uncond), rest[:b]], dim=1)

    def sit(self, x, t, y, guide):
        """SiT family: float32 x (b rows), t a 0-dim float32 tensor."""
        xin, yin = self.batch(x, y, guide)
        out = self.network(xin, torch.ones(xin.shape[0]) * t, yin)
        return self.guide(out, x.shape[0]) if self.use_cfg and guide else out

    def repa_raw(self, x64, t64, y, guide):
        """REPA family: the float64 model input rows, float64 times and float64 outputs."""
        xin, yin = self.batch(x64, y, guide)
        tin = torch.ones(xin.shape[0], dtype=torch.float64) * t64
        out = self.network(xin.to(torch.float32), tin.to(torch.float32), yin).to(torch.float64)
        return xin, tin, out


# --------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------

def _sit_ode(vel, x, y, grid, heun, guided, callback):
    for i in range(len(grid) - 1):
        t0 = grid[i]
        dt = grid[i + 1] - t0
        k1 = vel.sit(x, t0, y, guided[i])
        if heun:
            k2 = vel.sit(x + dt * k1, t0 + dt, y, guided[i])
            x = x + dt * (0.5 * k1 + 0.5 * k2)
        else:
            x = x + dt * k1
        callback(i, float(t0), x)
    return x


def _sit_drift(vel, x, t, y, guide, norm):
    """SDE drift v + w(t) score, w(t) = norm (1 - t), score = (t v - x) / ((1 - t)^2 + t (1 - t))."""
    v = vel.sit(x, t, y, guide)
    sigma = 1 - t
    score = (t * v - x) / (sigma ** 2 + t * sigma)
    return v + (norm * sigma) * score


def _sit_sde(vel, x, y, grid, heun, guided, draw, callback, norm, last_step_size):
    dt = grid[1] - grid[0]
    sqrt_dt = torch.sqrt(dt)
    for i in range(len(grid) - 1):
        t = grid[i]
        dw = draw() * sqrt_dt
        noise_scale = torch.sqrt(2 * (norm * (1 - t)))
        if heun:
            xhat = x + noise_scale * dw
            k1 = _sit_drift(vel, xhat, t, y, guided[i], norm)
            k2 = _sit_drift(vel, xhat + dt * k1, t + dt, y, guided[i], norm)
            x = xhat + 0.5 * dt * (k1 + k2)
        else:
            x = (x + _sit_drift(vel, x, t, y, guided[i], norm) * dt) + noise_scale * dw
        callback(i, float(t), x)
    t1 = torch.tensor(1.0 - last_step_size, dtype=torch.float32)
    x = x + _sit_drift(vel, x, t1, y, guided[-1], norm) * last_step_size
    callback(len(grid) - 1, float(t1), x)
    return x


def _repa_ode(vel, x, y, grid, heun, guided, callback):
    x = x.to(torch.float64)
    n = len(grid) - 1
    for i in range(n):
        t_cur, t_next = grid[i], grid[i + 1]
        d = _repa_velocity(vel, x, t_cur, y, guided[i])
        x_next = x + (t_next - t_cur) * d
        if heun and i < n - 1:
            d2 = _repa_velocity(vel, x_next, t_next, y, guided[i])
            x_next = x + (t_next - t_cur) * (0.5 * d + 0.5 * d2)
        x = x_next
        callback(i, float(t_cur), x)
    return x


def _repa_velocity(vel, x, t, y, guide):
    _, _, out = vel.repa_raw(x, t, y, guide)
    return vel.guide(out, x.shape[0]) if vel.use_cfg and guide else out


def _repa_drift(vel, x, t, y, guide):
    """REPA's SDE drift d = v - t score (diffusion 2t), guided after it is formed.
    score = ((t - 1) v - x) / (t^2 - (t - 1) t) for x_t = (1 - t) x + t eps."""
    xin, tin, v = vel.repa_raw(x, t, y, guide)
    te = tin.view(-1, 1, 1, 1)
    ratio = te - 1
    score = (ratio * v - xin) / (te ** 2 - ratio * te)
    d = v - (0.5 * (2 * t)) * score
    return vel.guide(d, x.shape[0]) if vel.use_cfg and guide else d


def _repa_sde(vel, x, y, grid, guided, draw, callback):
    x = x.to(torch.float64)
    n = len(grid) - 1
    for i in range(n - 1):
        t_cur, t_next = grid[i], grid[i + 1]
        dt = t_next - t_cur
        deps = draw() * torch.sqrt(torch.abs(dt))
        d = _repa_drift(vel, x, t_cur, y, guided[i])
        x = x + d * dt + torch.sqrt(2 * t_cur) * deps
        callback(i, float(t_cur), x)
    t_cur, t_next = grid[n - 1], grid[n]
    x = x + (t_next - t_cur) * _repa_drift(vel, x, t_cur, y, guided[n - 1])
    callback(n - 1, float(t_cur), x)
    return x


def _start_batch(start, b, shape, num_classes, labels, seed, seed_mode, noise_rows, noise_dtype):
    """x (b, *shape) float32, labels y (b,), draw() -> one step's noise (b, *shape)."""
    if seed_mode == "official":
        x = torch.randn(b, *shape)
        if labels == "random":
            y = torch.randint(0, num_classes, (b,))
        else:
            y = torch.tensor(labels[start:start + b], dtype=torch.int64)

        def draw():
            return torch.randn(noise_rows, *shape, dtype=noise_dtype)[:b]
        return x, y, draw
    gens = [torch.Generator().manual_seed(image_seed(seed, start + j)) for j in range(b)]
    x = torch.stack([torch.randn(*shape, generator=g) for g in gens])
    if labels == "random":
        y = torch.tensor([per_image_label(seed, start + j, num_classes) for j in range(b)],
                         dtype=torch.int64)
    else:
        y = torch.tensor(labels[start:start + b], dtype=torch.int64)

    def draw():
        return torch.stack([torch.randn(*shape, generator=g, dtype=noise_dtype) for g in gens])
    return x, y, draw


def sample(model, sampler="euler", steps=50, cfg_scale=1.0, cfg_channels=None, cfg_interval=None,
           convention="sit", classes=None, num_samples=1, batch_size=None, seed=0,
           seed_mode="official", last_step_size=SDE_LAST_STEP_SIZE,
           diffusion_norm=SDE_DIFFUSION_NORM, return_labels=False, callback=None):
    """Samples num_samples images; a float32 tensor (N, C, H, W) in index order (and the labels
    when return_labels). `model`: a TorchScript path or module, or any callable with the
    attributes in_channels, input_size, num_classes (module doc for its call convention).
    `cfg_interval`: None or (low, high) in REPA's time (1 = noise), REPA's inclusive rule.
    `callback(batch_start, k, t_start, x)` after every step (the family's time; REPA's x is
    float64). `last_step_size` and `diffusion_norm` apply to sde/sde-heun only."""
    if isinstance(model, str):
        model = torch.jit.load(model, map_location="cpu")
    if hasattr(model, "eval"):
        model.eval()
    fam = family(sampler)
    if seed_mode not in ("official", "per-image"):
        raise ValueError(f"unknown seed mode '{seed_mode}' (official or per-image)")
    if cfg_interval is not None:
        cfg_interval = (float(cfg_interval[0]), float(cfg_interval[1]))
    cfg_scale = float(cfg_scale)
    grid = time_grid(sampler, steps, last_step_size)
    guided = guided_steps(sampler, steps, cfg_scale, cfg_interval, last_step_size)
    C, H, K = int(model.in_channels), int(model.input_size), int(model.num_classes)
    vel = Velocity(model, fam, convention, cfg_scale, _cfg_channels(sampler, cfg_channels), C, K)
    labels = resolve_labels(classes, num_samples, K)
    batch_size = num_samples if not batch_size else int(batch_size)
    shape = (C, H, H)
    results, used_labels = [], []
    with torch.no_grad():
        if seed_mode == "official":
            torch.manual_seed(int(seed))
        for start in range(0, num_samples, batch_size):
            b = min(batch_size, num_samples - start)
            # SiT's sample code keeps the CFG-doubled state and draws noise of its shape; REPA
            # keeps the b conditional rows and draws float64 noise (randn_like of its state).
            rows = 2 * b if fam == "sit" and vel.use_cfg else b
            x, y, draw = _start_batch(start, b, shape, K, labels, seed, seed_mode, rows,
                                      torch.float32 if fam == "sit" else torch.float64)
            used_labels.extend(int(v) for v in y)

            def cb(k, t, state, _start=start):
                if callback is not None:
                    callback(_start, k, t, state)
            if sampler in ("euler", "heun"):
                x = _sit_ode(vel, x, y, grid, sampler == "heun", guided, cb)
            elif sampler in ("sde", "sde-heun"):
                x = _sit_sde(vel, x, y, grid, sampler == "sde-heun", guided, draw, cb,
                             float(diffusion_norm), float(last_step_size))
            elif sampler == "repa-sde":
                x = _repa_sde(vel, x, y, grid, guided, draw, cb)
            else:
                x = _repa_ode(vel, x, y, grid, sampler == "repa-heun", guided, cb)
            results.append(x.to(torch.float32))
    samples = torch.cat(results, dim=0)
    if return_labels:
        return samples, used_labels
    return samples


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def parse_interval(text):
    if text is None or text == "":
        return None
    parts = [float(p) for p in text.split(",")]
    if len(parts) != 2 or parts[0] > parts[1]:
        raise ValueError(f"cfg interval '{text}' is not LOW,HIGH with LOW <= HIGH")
    return tuple(parts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--sampler", choices=list(SAMPLERS), default="euler")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--convention", choices=list(CONVENTIONS), default="sit")
    ap.add_argument("--cfg-scale", type=float, default=1.0)
    ap.add_argument("--cfg-channels", choices=["3", "all"], default=None,
                    help="default: 3 for SiT samplers, all for REPA samplers")
    ap.add_argument("--cfg-interval", default=None, help="LOW,HIGH in REPA's time (1 = noise)")
    ap.add_argument("--classes", default=None, help="comma-separated labels (cycled) or 'random'")
    ap.add_argument("--num-samples", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seed-mode", choices=["official", "per-image"], default="official")
    ap.add_argument("--last-step-size", type=float, default=SDE_LAST_STEP_SIZE)
    ap.add_argument("--diffusion-norm", type=float, default=SDE_DIFFUSION_NORM)
    ap.add_argument("--describe", action="store_true", help="print the sampler's description (JSON)")
    ap.add_argument("--out-raw", help=".npy file for float32 (N, C, H, W) samples")
    ap.add_argument("--out-labels", default=None, help="optional .npy file for the int64 labels")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        interval = parse_interval(a.cfg_interval)
        if a.describe:
            print(json.dumps(describe(a.sampler, a.steps, a.cfg_scale, interval, a.cfg_channels,
                                      a.last_step_size, a.diffusion_norm), indent=1))
            return 0
        if not a.model or not a.out_raw:
            raise ValueError("--model and --out-raw are required (unless --describe)")
        if a.threads > 0:
            set_threads(a.threads)
        samples, labels = sample(a.model, a.sampler, a.steps, a.cfg_scale, a.cfg_channels, interval,
                                 a.convention, a.classes, a.num_samples, a.batch_size, a.seed,
                                 a.seed_mode, a.last_step_size, a.diffusion_norm, return_labels=True)
    except ValueError as exc:
        print(f"reference_flow.py: error: {exc}", file=sys.stderr)
        return 2
    np.save(a.out_raw, samples.numpy().astype(np.float32))
    if a.out_labels:
        np.save(a.out_labels, np.array(labels, dtype=np.int64))
    return 0


if __name__ == "__main__":
    sys.exit(main())

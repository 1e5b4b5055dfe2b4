#!/usr/bin/env python3
"""Independent reference sampler for exported DiT TorchScript models (parity oracle for `eoc`).

    reference_sampler.py --model M.ts --sampler ddpm|ddim --steps N [--respacing even|ddim]
        [--eta E] --cfg-scale S [--cfg-channels 3|all] [--classes 1,2,3|random]
        --num-samples N --batch-size B --seed S --seed-mode official|per-image
        [--cache none|fora:N|plan.npy] [--correct none|taylor|taylor:O|foca] --out-raw out.npy [--threads T]

Written from the facts in ../shared/reference (official DiT / IDDPM diffusion math): float64 numpy
schedule arrays, each coefficient extracted per step as float32 (`torch.from_numpy(a)[t].float()`),
float32 tensor arithmetic in the same operation order as the IDDPM formulas. The model is always
called with the ORIGINAL timestep (int64). The sampling state is the first (conditional) half
only; with CFG each model call sees [x; x] with labels [y; null].

Seed modes (the C++ sampler follows the same specification):
  official   torch.manual_seed(seed) once; per batch (b rows, index order): z = randn(b, C, H, W),
             then (labels "random") y = randint(0, K, (b,)); at every step that draws noise
             (every step, as IDDPM: DDIM with eta 0 ignores it) randn(rows, C, H, W), rows = 2b with CFG
             else b, of which the first b rows are used.
  per-image  image i: generator seeded with image_seed(seed, i) = splitmix64(splitmix64(seed) ^ i);
             z_i = randn(C, H, W), then one randn(C, H, W) per noise-drawing step. Random label:
             splitmix64(image_seed ^ 0x6C6162656C5F6964) % K.

Feature caching: a plan reuse[k][l][b] (k sampling step, 0 = noisiest; l block; b 0 = attn,
1 = mlp). A reused branch takes the cached UN-GATED output (optionally forecast, see `correct`)
and multiplies it by the CURRENT step's gate. The cache holds the whole (CFG-doubled) batch.
"""
import argparse
import math
import sys

import numpy as np
import torch

# The graph executor's optimizing passes may rewrite a TorchScript graph (e.g. decompose or fuse
# ops) and change rounding; eoc runs the plain interpreter, so the reference does too. The math
# stays this file's own; only TorchScript's execution mode is matched.
torch._C._set_graph_executor_optimize(False)

NUM_TRAIN_TIMESTEPS = 1000
DEFAULT_IMAGENET_LABELS = [207, 360, 387, 974, 88, 979, 417, 279]
MASK64 = (1 << 64) - 1
LABEL_SALT = 0x6C6162656C5F6964


# --------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------

def set_threads(n):
    """torch's intra-op threads and, like eoc, OpenBLAS's own pool (Debian's BLAS behind torch;
    a GEMM's rounding can depend on how OpenBLAS splits it)."""
    import ctypes
    torch.set_num_threads(n)
    for name in (None, "libblas.so.3", "libopenblas.so.0"):
        try:
            ctypes.CDLL(name).openblas_set_num_threads(ctypes.c_int(n))
            return
        except (AttributeError, OSError):
            continue


def splitmix64(x):
    """One splitmix64 output for state x (all arithmetic mod 2**64)."""
    x = (int(x) + 0x9E3779B97F4A7C15) & MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def image_seed(seed, index):
    return splitmix64(splitmix64(int(seed) & MASK64) ^ int(index))


def per_image_label(seed, index, num_classes):
    return splitmix64(image_seed(seed, index) ^ LABEL_SALT) % num_classes


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------

def linear_betas(num_timesteps=NUM_TRAIN_TIMESTEPS):
    scale = 1000.0 / num_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)


def space_timesteps(num_timesteps, steps, respacing="even"):
    """Sorted list of kept ORIGINAL timesteps.

    even: IDDPM space_timesteps(T, "N"): stride (T-1)/(N-1) accumulated by repeated +=, Python
          round (ties to even).
    ddim: IDDPM "ddimN": range(0, T, i) for the smallest stride i giving exactly N steps (equals
          range(0, T, T // N) whenever N divides T); no such stride is an error, as in IDDPM.
    """
    steps = int(steps)
    if steps < 1 or steps > num_timesteps:
        raise ValueError(f"steps must be in 1..{num_timesteps}, got {steps}")
    if respacing == "even":
        stride = 1 if steps <= 1 else (num_timesteps - 1) / (steps - 1)
        cur = 0.0
        kept = []
        for _ in range(steps):
            kept.append(round(cur))
            cur += stride
        return sorted(set(kept))
    if respacing == "ddim":
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == steps:
                return list(range(0, num_timesteps, stride))
        if steps == num_timesteps:
            return list(range(num_timesteps))
        raise ValueError(f"cannot create exactly {steps} steps with an integer stride")
    raise ValueError(f"unknown respacing '{respacing}' (even or ddim)")


class Schedule:
    """The respaced diffusion's float64 coefficient arrays, indexed by respaced step index."""

    def __init__(self, steps, respacing="even", num_timesteps=NUM_TRAIN_TIMESTEPS):
        base_betas = linear_betas(num_timesteps)
        base_abar = np.cumprod(1.0 - base_betas, axis=0)
        self.timesteps = space_timesteps(num_timesteps, steps, respacing)
        kept = set(self.timesteps)
        new_betas = []
        last = 1.0
        for i, abar in enumerate(base_abar):
            if i in kept:
                new_betas.append(1 - abar / last)
                last = abar
        betas = np.array(new_betas, dtype=np.float64)
        self.betas = betas
        self.num_steps = len(betas)
        alphas = 1.0 - betas
        self.alphas = alphas
        self.alphas_cumprod = np.cumprod(alphas, axis=0)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        if self.num_steps > 1:
            self.posterior_log_variance_clipped = np.log(
                np.append(self.posterior_variance[1], self.posterior_variance[1:]))
            fixed_large = np.append(self.posterior_variance[1], betas[1:])
        else:  # degenerate one-step process: posterior variance is 0
            self.posterior_log_variance_clipped = np.log(np.maximum(self.posterior_variance, 1e-20))
            fixed_large = betas.copy()
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = ((1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas)
                                     / (1.0 - self.alphas_cumprod))
        self.log_betas = np.log(betas)
        self.fixed_large_log_variance = np.log(fixed_large)

    @staticmethod
    def extract(arr, index):
        """float32 0-dim tensor, exactly as IDDPM's _extract_into_tensor converts."""
        return torch.from_numpy(arr)[index].float()


# --------------------------------------------------------------------------------------------
# Cache plans
# --------------------------------------------------------------------------------------------

def fora_plan(steps, depth, interval):
    """bool (steps, depth, 2): step k (i = steps-1-k) is computed when i == steps-1 or
    i % interval == 0, otherwise every branch is reused."""
    if interval < 1:
        raise ValueError("fora interval must be >= 1")
    plan = np.zeros((steps, depth, 2), dtype=bool)
    for k in range(steps):
        i = steps - 1 - k
        if not (i == steps - 1 or i % interval == 0):
            plan[k] = True
    return plan


def make_plan(cache, steps, depth):
    """None (no caching), or a bool array (steps, depth, 2). Accepts None/"none", "fora:N",
    a path to a .npy bool array, or an array-like."""
    if cache is None:
        return None
    if isinstance(cache, str):
        if cache == "none":
            return None
        if cache.startswith("fora:"):
            return fora_plan(steps, depth, int(cache[len("fora:"):]))
        if cache.endswith(".npy"):
            cache = np.load(cache)
        else:
            raise ValueError(f"unknown cache plan '{cache}' (none, fora:N or a .npy file)")
    plan = np.asarray(cache, dtype=bool)
    if plan.shape != (steps, depth, 2):
        raise ValueError(f"cache plan has shape {plan.shape}, expected {(steps, depth, 2)}")
    if not plan.any():
        return plan
    if plan[0].any():
        raise ValueError("cache plan reuses at step 0, before anything was computed")
    return plan


FOCA_ORDER = 5  # a taylor-form prior's step "order" that names FoCa's forecast (calibrate --foca)


def load_prior(path):
    """The parts of an eoc prior (docs/EOC.md) a corrector needs: form, per-step theta and
    forecast order (version 2 priors: order 1), halves, the per-(step, block, branch) vectors
    decoded from base64 float32 little-endian, and series_order: the highest order of a step
    with theta != 0 when it is at least 2 (the corrector then keeps derivative estimates up to
    it and forecasts with their series, also at order-1 steps), else 0 (F[p] and tau)."""
    import base64
    import json
    with open(path) as f:
        doc = json.load(f)
    d = int(doc["assumes"]["model"]["hidden_size"])
    vectors = {}
    for e in doc["vectors"]["entries"]:
        raw = np.frombuffer(base64.b64decode(e["data"]), dtype="<f4").reshape(2, d)
        vectors[(e["step"], e["block"], 0 if e["branch"] == "attn" else 1)] = torch.from_numpy(raw.copy())
    theta = list(doc["step_theta"])
    order = list(doc.get("step_order", [1] * len(theta)))
    highest = max([o for o, t in zip(order, theta) if t != 0.0 and o != FOCA_ORDER], default=0)
    foca = any(o == FOCA_ORDER for o, t in zip(order, theta) if t != 0.0)
    return dict(form=doc["form"], theta=theta, order=order, series_order=highest if highest > 1 else 0,
                foca=foca, vectors=vectors,
                halves=2 if float(doc["assumes"]["cfg_scale"]) > 1.0 else 1)


def taylor_order(correct):
    """The order O of "taylor:O" (2..4); 0 for every other corrector ("taylor" is order 1,
    kept as its own first-order formula)."""
    if not correct.startswith("taylor:"):
        return 0
    order = int(correct[len("taylor:"):])
    if not 1 <= order <= 4:
        raise ValueError(f"taylor order {order} is not 1..4")
    return order if order > 1 else 0


class FeatureCache:
    """Per (block, branch): the last two computed un-gated outputs and their step indices.
    correct: "none" (F[r]), "taylor" (F[r] + tau (F[r] - F[p])), "taylor:O" (TaylorSeer: at each
    computed step k, D0 = F and D(i+1) = (Di - Di_old) / (k - k_old) for as many orders as earlier
    computed steps allow, at most O; a reused step j gets sum_i Di (j - k)^i / i!) or "eoc" with
    `prior` from load_prior: theta_k times the form's correction (scale: F[r] (1 + theta E);
    extrapolate: F[r] + theta W (F[r] - F[p]); taylor: F[r] + theta tau (F[r] - F[p]), or with a
    prior's series_order, F[r] + theta sum_(i <= order_k) Di (j - k)^i / i!), the vectors per CFG
    half. "foca": FoCa's recursive forecast, written here in its closed form: n steps after
    the last computed step r (value F_r; G the entry's value, computed or forecast, at r - 1;
    D = (F_r - F_p) / (r - p), or F_r - G without p), F_r + n D + (1 - 2^-n) (F_r - G - D);
    plain F_r without G."""

    def __init__(self, correct="none", prior=None):
        self.order = taylor_order(correct)
        if correct == "taylor:1":
            correct = "taylor"
        if correct not in ("none", "taylor", "foca", "eoc") and not self.order:
            raise ValueError(f"unknown corrector '{correct}' (none, taylor, taylor:O, foca or eoc)")
        if (correct == "eoc") != (prior is not None):
            raise ValueError("correct='eoc' needs a prior (and only it)")
        self.correct = correct
        self.prior = prior
        if correct == "eoc":
            self.order = prior.get("series_order", 0)
        self.entries = {}  # (l, b) -> [(k_r, F_r), (k_p, F_p) or None]
        self.derivatives = {}  # taylor:O: (l, b) -> (k_r, [D0 = F_r, D1, ...])
        self.visited = {}  # foca: (l, b) -> (k, value at step k, computed or forecast)
        self.before_r = {}  # foca: (l, b) -> the value at r - 1 (G), or None
        # eoc with FoCa steps (prior["foca"]): (l, b) -> the last two visits, each (k, value
        # computed or forecast) or None; FoCa's recursion reads them step by step.
        self.trail = {}

    def visit(self, l, b, k, value):
        last = self.trail.get((l, b), (None, None))[1]
        self.trail[(l, b)] = (last if last is not None and last[0] == k - 1 else None, (k, value))

    def store(self, l, b, k, value):
        if self.correct == "eoc" and self.prior.get("foca"):
            self.visit(l, b, k, value)
        if self.correct == "foca":
            last = self.visited.get((l, b))
            self.before_r[(l, b)] = last[1] if last is not None and last[0] == k - 1 else None
            self.visited[(l, b)] = (k, value)
        prev = self.entries.get((l, b))
        self.entries[(l, b)] = [(k, value), prev[0] if prev is not None else None]
        if self.order:
            new = [value]
            if (l, b) in self.derivatives:
                k_old, old = self.derivatives[(l, b)]
                for i in range(min(self.order, len(old))):
                    new.append((new[i] - old[i]) / (k - k_old))
            self.derivatives[(l, b)] = (k, new)

    def fetch(self, l, b, k):
        entry = self.entries.get((l, b))
        if entry is None:
            raise ValueError(f"step {k} reuses block {l} branch {b} before it was computed")
        (r, f_r), older = entry
        if self.order and self.correct != "eoc":
            r, d = self.derivatives[(l, b)]
            out = d[0]
            for i in range(1, len(d)):
                out = out + ((k - r) ** i / math.factorial(i)) * d[i]
            return out
        if self.correct == "none":
            return f_r
        if self.correct == "foca":
            out = self._foca(l, b, k, f_r, r, older)
            self.visited[(l, b)] = (k, out)
            return out
        if self.correct == "taylor":
            if older is None:
                return f_r
            p, f_p = older
            return f_r + (k - r) / (r - p) * (f_r - f_p)
        out = self._eoc(l, b, k, f_r, r, older)
        if self.prior.get("foca"):
            self.visit(l, b, k, out)
        return out

    def _foca(self, l, b, k, f_r, r, older):
        g = self.before_r[(l, b)]
        if g is None:
            return f_r
        d = (f_r - older[1]) / (r - older[0]) if older is not None else f_r - g
        n = k - r
        return f_r + n * d + (1.0 - 0.5 ** n) * (f_r - g - d)

    def _eoc(self, l, b, k, f_r, r, older):
        pr = self.prior
        theta = pr["theta"][k]
        if theta == 0.0:
            return f_r
        if pr["form"] == "taylor" and pr["order"][k] == FOCA_ORDER:
            # FoCa's recursion from the values of the two steps before (computed or forecast),
            # D the slope between the last two computed steps (L1 - L2 without one); then the
            # line from F[r] (theta 0) to it.
            l2, l1 = self.trail[(l, b)]
            if l1[0] != k - 1:
                raise ValueError(f"FoCa at step {k} without the value of step {k - 1}")
            if l2 is None:
                forecast = l1[1]
            else:
                d = (f_r - older[1]) / (r - older[0]) if older is not None else l1[1] - l2[1]
                forecast = l1[1] + 0.5 * ((l1[1] - l2[1]) + d)
            return forecast if theta == 1.0 else torch.lerp(f_r, forecast, theta)
        if pr["form"] == "taylor" and pr.get("series_order"):
            r, d = self.derivatives[(l, b)]
            out = d[0]
            for i in range(1, min(pr["order"][k], len(d) - 1) + 1):
                out = out + (theta * ((k - r) ** i / math.factorial(i))) * d[i]
            return out
        if pr["form"] == "taylor":
            if older is None:
                return f_r
            p, f_p = older
            return f_r + theta * (k - r) / (r - p) * (f_r - f_p)
        v = pr["vectors"].get((k, l, b))
        if v is None:
            return f_r
        h = pr["halves"]
        shape = (h, f_r.shape[0] // h, f_r.shape[1], f_r.shape[2])
        v = v[:h].reshape(h, 1, 1, -1).to(f_r.dtype)
        if pr["form"] == "scale":
            return (f_r.reshape(shape) * (1 + theta * v)).reshape(f_r.shape)
        if older is None:
            return f_r
        f_p = older[1]
        return (f_r.reshape(shape) + theta * v * (f_r - f_p).reshape(shape)).reshape(f_r.shape)


def blockwise_forward(model, x, t, y, step=None, reuse=None, cache=None):
    """Model forward through embed / modulation / attn / mlp / final. `reuse` is the plan's
    (depth, 2) bool slice for sampling step `step`; computed branches are stored in `cache`."""
    tokens, c = model.embed(x, t, y)
    for l in range(int(model.depth)):
        block = getattr(model.blocks, str(l))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = block.modulation(c)
        if reuse is not None and reuse[l][0]:
            a = cache.fetch(l, 0, step)
        else:
            a = block.attn(tokens, shift_msa, scale_msa)
            if cache is not None:
                cache.store(l, 0, step, a)
        tokens = tokens + gate_msa.unsqueeze(1) * a
        if reuse is not None and reuse[l][1]:
            m = cache.fetch(l, 1, step)
        else:
            m = block.mlp(tokens, shift_mlp, scale_mlp)
            if cache is not None:
                cache.store(l, 1, step, m)
        tokens = tokens + gate_mlp.unsqueeze(1) * m
    return model.final(tokens, c)


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------

def resolve_labels(classes, num_samples, num_classes):
    """A list of num_samples labels, or the string "random"."""
    if isinstance(classes, str):
        if classes == "random":
            return "random"
        classes = [int(c) for c in classes.split(",") if c.strip() != ""]
    if classes is None:
        base = DEFAULT_IMAGENET_LABELS if num_classes == 1000 else list(range(num_classes))
    else:
        base = [int(c) for c in classes]
    if not base:
        raise ValueError("empty class list")
    for c in base:
        if c < 0 or c >= num_classes:
            raise ValueError(f"class {c} out of range 0..{num_classes - 1}")
    return [base[i % len(base)] for i in range(num_samples)]


def guided_output(model, x, t_orig, y, cfg_scale, cfg_channels, step=None, reuse=None, cache=None):
    """Model output for the B-row state x (first half only), as DiT forward_with_cfg gives it."""
    b = x.shape[0]
    use_cfg = cfg_scale > 1.0  # sample.py: using_cfg = cfg_scale > 1.0
    cached = cache is not None
    if use_cfg:
        xin = torch.cat([x, x], dim=0)
        yin = torch.cat([y, torch.full((b,), int(model.num_classes), dtype=torch.int64)], dim=0)
    else:
        xin, yin = x, y
    tin = torch.full((xin.shape[0],), int(t_orig), dtype=torch.int64)
    if cached:
        out = blockwise_forward(model, xin, tin, yin, step, reuse, cache)
    else:
        out = model(xin, tin, yin)
    if not use_cfg:
        return out
    nch = out.shape[1] if cfg_channels == "all" else min(3, out.shape[1])
    guide, rest = out[:, :nch], out[:, nch:]
    cond, uncond = torch.split(guide, b, dim=0)
    guided = uncond + cfg_scale * (cond - uncond)
    return torch.cat([guided, rest[:b]], dim=1)


def start_batch(start, b, shape, num_classes, labels, seed, seed_mode, use_cfg):
    """Images start..start+b-1: x_T (b, *shape), labels y (b,) int64, and `draw_noise(needed)`,
    the noise of one sampling step (b, *shape) or None, called once per step in step order.
    `labels` is a list over all images or "random". official: from torch's global stream, which
    the caller seeds once per run (torch.manual_seed(seed)) before the first batch; a step's
    noise is drawn whether or not it is needed (rows 2b with CFG, of which the first b are used).
    per-image: from each image's own generator; a step draws only when needed."""
    if seed_mode == "official":
        x = torch.randn(b, *shape)
        if labels == "random":
            y = torch.randint(0, num_classes, (b,))
        else:
            y = torch.tensor(labels[start:start + b], dtype=torch.int64)

        def draw_noise(needed):
            # IDDPM's p_sample and ddim_sample both call randn_like (DDIM with eta 0 ignores it).
            return torch.randn(2 * b if use_cfg else b, *shape)[:b]
        return x, y, draw_noise
    gens = [torch.Generator().manual_seed(image_seed(seed, start + j)) for j in range(b)]
    x = torch.stack([torch.randn(*shape, generator=g) for g in gens])
    if labels == "random":
        y = torch.tensor([per_image_label(seed, start + j, num_classes) for j in range(b)],
                         dtype=torch.int64)
    else:
        y = torch.tensor(labels[start:start + b], dtype=torch.int64)

    def draw_noise(needed):
        return torch.stack([torch.randn(*shape, generator=g) for g in gens]) if needed else None
    return x, y, draw_noise


def sampler_step(sched, sampler, eta, k, x, out, noise):
    """x at sampling step k (0 = noisiest) to step k + 1, from the guided model output `out`
    (eps, then the variance values when out has 2C channels) and the step's noise (None where
    none was drawn; DDPM always needs it)."""
    C = x.shape[1]
    learn_sigma = out.shape[1] == 2 * C
    i = sched.num_steps - 1 - k  # respaced index, counts down
    eps = out[:, :C]
    ex = Schedule.extract
    pred_x0 = (ex(sched.sqrt_recip_alphas_cumprod, i) * x
               - ex(sched.sqrt_recipm1_alphas_cumprod, i) * eps)
    mask = 1.0 if i != 0 else 0.0
    if sampler == "ddpm":
        if learn_sigma:
            v = out[:, C:]
            min_log = ex(sched.posterior_log_variance_clipped, i)
            max_log = ex(sched.log_betas, i)
            frac = (v + 1) / 2
            log_var = frac * max_log + (1 - frac) * min_log
        else:
            log_var = ex(sched.fixed_large_log_variance, i).expand(x.shape)
        mean = (ex(sched.posterior_mean_coef1, i) * pred_x0
                + ex(sched.posterior_mean_coef2, i) * x)
        return mean + mask * torch.exp(0.5 * log_var) * noise
    eps2 = ((ex(sched.sqrt_recip_alphas_cumprod, i) * x - pred_x0)
            / ex(sched.sqrt_recipm1_alphas_cumprod, i))
    abar = ex(sched.alphas_cumprod, i)
    abar_prev = ex(sched.alphas_cumprod_prev, i)
    sigma = (eta * torch.sqrt((1 - abar_prev) / (1 - abar))
             * torch.sqrt(1 - abar / abar_prev))
    mean_pred = pred_x0 * torch.sqrt(abar_prev) + torch.sqrt(1 - abar_prev - sigma ** 2) * eps2
    if noise is not None:
        return mean_pred + mask * sigma * noise
    return mean_pred


def sample(model, sampler="ddpm", steps=250, respacing="even", eta=0.0, cfg_scale=1.0,
           cfg_channels="3", classes=None, num_samples=1, batch_size=None, seed=0,
           seed_mode="official", cache=None, correct="none", return_labels=False, callback=None,
           prior=None):
    """Samples num_samples images; returns a float32 tensor (N, C, H, W) in index order
    (and the labels used when return_labels). `model` is a loaded TorchScript module or a path.
    `cache`: None/"none", "fora:N", a .npy path or a bool array (steps, depth, 2).
    `callback(batch_start, k, t_orig, x)` is called after every step with the B-row state."""
    if isinstance(model, str):
        model = torch.jit.load(model, map_location="cpu")
    model.eval()
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"unknown sampler '{sampler}' (ddpm or ddim)")
    if seed_mode not in ("official", "per-image"):
        raise ValueError(f"unknown seed mode '{seed_mode}' (official or per-image)")
    if cfg_channels not in ("3", "all"):
        raise ValueError(f"cfg_channels must be '3' or 'all', got '{cfg_channels}'")
    if sampler == "ddpm" and eta != 0.0:
        raise ValueError("eta applies to ddim only")
    cfg_scale = float(cfg_scale)
    sched = Schedule(steps, respacing)
    S = sched.num_steps
    depth = int(model.depth)
    plan = make_plan(cache, S, depth)
    C, H = int(model.in_channels), int(model.input_size)
    K = int(model.num_classes)
    labels = resolve_labels(classes, num_samples, K)
    batch_size = num_samples if not batch_size else int(batch_size)
    draws_noise = sampler == "ddpm" or eta > 0
    use_cfg = cfg_scale > 1.0  # sample.py: using_cfg = cfg_scale > 1.0
    shape = (C, H, H)
    results, used_labels = [], []

    with torch.no_grad():
        if seed_mode == "official":
            torch.manual_seed(int(seed))
        for start in range(0, num_samples, batch_size):
            b = min(batch_size, num_samples - start)
            x, y, draw_noise = start_batch(start, b, shape, K, labels, seed, seed_mode, use_cfg)
            used_labels.extend(int(v) for v in y)
            fcache = FeatureCache(correct, load_prior(prior) if correct == "eoc" else None) \
                if plan is not None else None
            for k in range(S):
                t_orig = sched.timesteps[S - 1 - k]
                reuse = plan[k] if plan is not None else None
                out = guided_output(model, x, t_orig, y, cfg_scale, cfg_channels, k, reuse, fcache)
                x = sampler_step(sched, sampler, eta, k, x, out, draw_noise(draws_noise))
                if callback is not None:
                    callback(start, k, t_orig, x)
            results.append(x)
    samples = torch.cat(results, dim=0).float()
    if return_labels:
        return samples, used_labels
    return samples


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddpm")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--respacing", choices=["even", "ddim"], default="even")
    ap.add_argument("--eta", type=float, default=0.0)
    ap.add_argument("--cfg-scale", type=float, default=1.0)
    ap.add_argument("--cfg-channels", choices=["3", "all"], default="3")
    ap.add_argument("--classes", default=None, help="comma-separated labels (cycled) or 'random'")
    ap.add_argument("--num-samples", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seed-mode", choices=["official", "per-image"], default="official")
    ap.add_argument("--cache", default="none", help="none, fora:N, or a .npy bool (steps, depth, 2)")
    ap.add_argument("--correct", default="none",
                    choices=["none", "taylor", "eoc"] + [f"taylor:{o}" for o in range(1, 5)])
    ap.add_argument("--prior", help="eoc prior JSON (with --correct eoc)")
    ap.add_argument("--out-raw", required=True, help=".npy file for float32 (N, C, H, W) samples")
    ap.add_argument("--out-labels", default=None, help="optional .npy file for the int64 labels")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    if a.threads > 0:
        set_threads(a.threads)
    try:
        samples, labels = sample(a.model, a.sampler, a.steps, a.respacing, a.eta, a.cfg_scale,
                                 a.cfg_channels, a.classes, a.num_samples, a.batch_size, a.seed,
                                 a.seed_mode, a.cache, a.correct, return_labels=True,
                                 prior=a.prior)
    except ValueError as exc:
        print(f"reference_sampler.py: error: {exc}", file=sys.stderr)
        return 2
    np.save(a.out_raw, samples.numpy().astype(np.float32))
    if a.out_labels:
        np.save(a.out_labels, np.array(labels, dtype=np.int64))
    return 0


if __name__ == "__main__":
    sys.exit(main())

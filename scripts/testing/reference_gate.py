#!/usr/bin/env python3
"""Independent reference for eoc's run-time cache gates (parity oracle for `eoc sample --cache
fbcache:T|teacache:T|easycache:T`).

    reference_gate.py --model M.ts --cache GATE [--correct none|taylor|taylor:O|foca]
        [--sampler ddim|ddpm|euler] [--steps N] [--respacing even|ddim] [--eta E]
        [--cfg-scale S] [--cfg-channels 3|all] [--classes 1,2,3|random] --num-samples N
        --seed S [--seed-mode per-image] --out-raw out.npy [--out-decisions d.json] [--threads T]

GATE is RULE:THRESHOLD[,fn=F][,bn=B][,warmup=W][,max-run=M][,max-total=C][,poly=C4/C3/C2/C1/C0]
(fn and bn for fbcache only, poly for teacache only; defaults fn=1, bn=0, warmup=1, no max-run,
no max-total, no rescale).

Each image is sampled ALONE: a batch of one image (with CFG its two rows [x; x], labels
[y; null]) from its own per-image seed stream (reference_sampler.py's per-image mode), so its
gate, its feature cache and its decisions cannot depend on other images. The model runs through
its contract methods (embed, blocks.L.modulation / attn / mlp, final), as reference_sampler's
blockwise_forward does, with a decision at the rule's decision block:

  sampling step k of S (0 = noisiest) is COMPUTED when
    k < warmup, or k == S - 1, or the image reused its last M steps in a row (max-run M), or it
    has reused C steps in all (max-total C), or the rule's signal is not known yet;
  otherwise the rule decides:
    fbcache   blocks [0, fn) and [depth - bn, depth) always run; R = tokens after block fn - 1
              minus the embedded tokens (both CFG rows); s = sum|R - R_c| / sum|R_c| with R_c
              the R of the image's last computed step; reuse iff s < T (no sum).
    teacache  m = LayerNorm(embedded tokens; eps 1e-6, no affine) * (1 + scale_msa_0)
              + shift_msa_0 (block 0's attention modulation); s = sum|m - m_prev| / sum|m_prev|
              against the previous step (whatever it decided); A += s; reuse iff A < T.
              With poly=C4/../C0 (TeaCache's rescale, highest degree first as numpy's poly1d):
              A += max(0, C4 s^4 + C3 s^3 + C2 s^2 + C1 s + C0) instead (a negative value of
              the polynomial adds nothing).
    easycache s = mean|x - x_prev| / mean|o_c| (x the image's model input state, x_prev the
              previous step's, o_c the guided output of its last computed step); needs the
              output-change ratio k = mean|o_c - o_c'| / mean|x_c - x_c'| measured at the last
              computed step c against the computed step c' before it (unknown -> compute);
              A += k * s; reuse iff A < T.
  A (teacache, easycache) starts at 0 and is reset to 0 at every computed step; a relative
  change against an all-zero base is 0.

A reused step takes the gated blocks' branches (fbcache: blocks fn .. depth - bn - 1; others:
every block) from the image's own FeatureCache (reference_sampler.py) through the corrector;
every other branch is computed. Samplers: ddim / ddpm (reference_sampler.py's schedules and
sampler_step) and euler (reference_flow.py's SiT ODE grid, a velocity model in SiT's time).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# reference_sampler also turns TorchScript's optimizing graph executor off (eoc runs the plain one).
from reference_sampler import (FeatureCache, Schedule, resolve_labels, sampler_step,  # noqa: E402
                               set_threads, start_batch)
import reference_flow  # noqa: E402

RULES = ("fbcache", "teacache", "easycache")
SAMPLERS = ("ddim", "ddpm", "euler")


# --------------------------------------------------------------------------------------------
# The gate's specification
# --------------------------------------------------------------------------------------------

class Spec:
    """A parsed gate: rule, threshold, fn, bn, warmup, max_run, max_total (None: no bound)."""

    def __init__(self, rule, threshold, fn=1, bn=0, warmup=1, max_run=None, max_total=None,
                 poly=None):
        if rule not in RULES:
            raise ValueError(f"unknown gate rule '{rule}' ({', '.join(RULES)})")
        if not threshold >= 0 or threshold == float("inf"):
            raise ValueError(f"gate threshold {threshold} is not a number >= 0")
        if rule == "fbcache" and fn < 1:
            raise ValueError("fbcache needs fn >= 1")
        if bn < 0 or warmup < 1 or (max_run is not None and max_run < 0) or \
                (max_total is not None and max_total < 0):
            raise ValueError("bn >= 0, warmup >= 1, max-run >= 0 and max-total >= 0 expected")
        self.rule, self.threshold = rule, float(threshold)
        self.fn = fn if rule == "fbcache" else 0
        self.bn = bn if rule == "fbcache" else 0
        self.warmup, self.max_run, self.max_total = warmup, max_run, max_total
        if poly is not None and (rule != "teacache" or len(poly) != 5):
            raise ValueError("poly: 5 coefficients, for teacache only")
        self.poly = [float(c) for c in poly] if poly is not None else None

    def rescaled(self, s):
        """teacache's accumulated value for the measured change s."""
        if self.poly is None:
            return s
        v = 0.0
        for c in self.poly:  # Horner, highest degree first (np.poly1d's order)
            v = v * s + c
        return max(0.0, v)

    @classmethod
    def parse(cls, text):
        rule, sep, rest = text.partition(":")
        if rule not in RULES:
            raise ValueError(f"'{text}' names no gate rule ({', '.join(RULES)})")
        items = rest.split(",") if sep else []
        if not items or items[0] == "":
            raise ValueError(f"'{text}': expected {rule}:THRESHOLD[,key=N...]")
        try:
            threshold = float(items[0])
        except ValueError:
            raise ValueError(f"'{text}': threshold '{items[0]}' is not a number") from None
        keys = {"fn": "fn", "bn": "bn", "warmup": "warmup", "max-run": "max_run",
                "max-total": "max_total"}
        kw = {}
        for item in items[1:]:
            key, eq, value = item.partition("=")
            if key == "poly" and eq:
                try:
                    kw["poly"] = [float(c) for c in value.split("/")]
                except ValueError:
                    raise ValueError(f"'{text}': bad item '{item}'") from None
                continue
            if not eq or key not in keys or not value.isdigit() or \
                    (key in ("fn", "bn") and rule != "fbcache"):
                raise ValueError(f"'{text}': bad item '{item}'")
            kw[keys[key]] = int(value)
        return cls(rule, threshold, **kw)

    def gated(self, depth):
        """The blocks whose branches a reused step takes from the cache."""
        if self.fn + self.bn >= depth:
            raise ValueError(f"fn {self.fn} + bn {self.bn} leave no block of {depth} to gate")
        return range(self.fn, depth - self.bn)

    def decision_block(self):
        return self.fn  # fbcache: after its first fn blocks; teacache/easycache: before block 0


def rel_l1(now, base):
    """sum|now - base| / sum|base| (float32 sums, as python floats); 0 for an all-zero base."""
    den = base.abs().sum().item()
    return (now - base).abs().sum().item() / den if den > 0 else 0.0


# --------------------------------------------------------------------------------------------
# One image's gate
# --------------------------------------------------------------------------------------------

class ImageGate:
    """The decisions of one image. Its run lengths come from the decision string itself."""

    def __init__(self, spec, steps):
        self.spec, self.steps = spec, steps
        self.decisions = ""
        self.signals = []   # (step, value the rule compared: s for fbcache, the sum A otherwise)
        self.acc = 0.0
        self.k = None       # easycache's output-change ratio

    def _reused_in_a_row(self):
        return len(self.decisions) - len(self.decisions.rstrip("r"))

    def _must_compute(self, step):
        s = self.spec
        return (step < s.warmup or step == self.steps - 1
                or (s.max_run is not None and self._reused_in_a_row() >= s.max_run)
                or (s.max_total is not None and self.decisions.count("r") >= s.max_total))

    def decide(self, step, signal):
        """True when step `step` reuses; `signal` None when the rule cannot tell yet."""
        assert step == len(self.decisions)
        reuse = False
        if signal is not None and not self._must_compute(step):
            if self.spec.rule == "fbcache":
                value = signal
            elif self.spec.rule == "teacache":
                value = self.acc + self.spec.rescaled(signal)
            else:
                value = self.acc + self.k * signal if self.k is not None else None
            if value is not None:
                self.signals.append((step, value))
                self.acc = value
                reuse = value < self.spec.threshold
        if not reuse:
            self.acc = 0.0
        self.decisions += "r" if reuse else "c"
        return reuse


# --------------------------------------------------------------------------------------------
# Sampling one image
# --------------------------------------------------------------------------------------------

class _Timeline:
    """What a sampler needs per step: the model's time, the output's use, the state update."""

    def __init__(self, model, sampler, steps, respacing, eta, cfg_scale, cfg_channels):
        self.sampler, self.eta = sampler, float(eta)
        self.scale = float(cfg_scale)
        self.cfg = self.scale > 1.0
        self.C = int(model.in_channels)
        if sampler == "euler":
            if getattr(model, "prediction", "eps") != "velocity":
                raise ValueError("euler needs a velocity (flow) model")
            self.grid = reference_flow.time_grid("euler", steps)
            self.steps = len(self.grid) - 1
        elif sampler in ("ddim", "ddpm"):
            if sampler == "ddpm" and eta != 0.0:
                raise ValueError("eta applies to ddim only")
            self.sched = Schedule(steps, respacing)
            self.steps = self.sched.num_steps
        else:
            raise ValueError(f"unknown sampler '{sampler}' ({', '.join(SAMPLERS)})")
        self.cfg_channels = cfg_channels
        self.draws = sampler == "ddpm" or (sampler == "ddim" and self.eta > 0)

    def time(self, k, rows):
        if self.sampler == "euler":
            return torch.ones(rows) * self.grid[k]
        return torch.full((rows,), int(self.sched.timesteps[self.steps - 1 - k]), dtype=torch.int64)

    def guided(self, out):
        """The (1, ., H, W) guided output of the image's model rows, as the sampler uses it."""
        if self.sampler == "euler" and out.shape[1] == 2 * self.C:
            out = out[:, :self.C]
        if not self.cfg:
            return out
        n = out.shape[1] if self.cfg_channels == "all" else min(3, out.shape[1])
        cond, uncond = out[:1], out[1:]
        mixed = uncond[:, :n] + self.scale * (cond[:, :n] - uncond[:, :n])
        return torch.cat([mixed, cond[:, n:]], dim=1)

    def advance(self, k, x, out, noise):
        if self.sampler == "euler":
            return x + (self.grid[k + 1] - self.grid[k]) * out
        return sampler_step(self.sched, self.sampler, self.eta, k, x, out, noise)


def sample_image(model, index, spec, correct, line, labels, seed, trace=None):
    """Image `index` alone: (its final state (1, C, H, W), its ImageGate). With a list `trace`,
    appends per step k >= 1 (k, the rule's measured signal or None, d_out) with d_out =
    sum|o_k - o_(k-1)| / sum|o_(k-1)| of the guided output's first C channels (what TeaCache's
    rescale is fitted to)."""
    C, H, K = int(model.in_channels), int(model.input_size), int(model.num_classes)
    depth = int(model.depth)
    gated = spec.gated(depth)
    blocks = [getattr(model.blocks, str(l)) for l in range(depth)]
    x, y, draw_noise = start_batch(index, 1, (C, H, H), K, labels, seed, "per-image", line.cfg)
    if line.cfg:
        yin = torch.cat([y, torch.full_like(y, K)])
    else:
        yin = y
    rows = yin.shape[0]
    gate = ImageGate(spec, line.steps)
    cache = FeatureCache(correct)
    # What the rules compare with.
    r_computed = m_prev = x_prev = None
    computed_io = []  # easycache: (x, o) of the computed steps, the last two kept
    out_prev = None
    for k in range(line.steps):
        xin = torch.cat([x, x]) if line.cfg else x
        tokens, c = model.embed(xin, line.time(k, rows), yin)
        embedded = tokens
        reuse = False
        for l in range(depth):
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = blocks[l].modulation(c)
            if l == spec.decision_block():
                signal = None
                if spec.rule == "fbcache":
                    r = (tokens - embedded).float()
                    if r_computed is not None:
                        signal = rel_l1(r, r_computed)
                elif spec.rule == "teacache":
                    e = embedded.float()
                    normed = F.layer_norm(e, (e.shape[-1],), eps=1e-6)
                    m = normed * (1 + scale_msa.float()[:, None]) + shift_msa.float()[:, None]
                    if m_prev is not None:
                        signal = rel_l1(m, m_prev)
                    m_prev = m
                else:
                    xf = x.float()
                    if x_prev is not None and computed_io:
                        o_mean = computed_io[-1][1].abs().mean().item()
                        if o_mean > 0:
                            signal = (xf - x_prev).abs().mean().item() / o_mean
                    x_prev = xf
                reuse = gate.decide(k, signal)
                if spec.rule == "fbcache" and not reuse:
                    r_computed = r
            from_cache = reuse and l in gated
            if from_cache:
                a = cache.fetch(l, 0, k)
            else:
                a = blocks[l].attn(tokens, shift_msa, scale_msa)
                if l in gated:
                    cache.store(l, 0, k, a)
            tokens = tokens + gate_msa[:, None] * a
            if from_cache:
                f = cache.fetch(l, 1, k)
            else:
                f = blocks[l].mlp(tokens, shift_mlp, scale_mlp)
                if l in gated:
                    cache.store(l, 1, k, f)
            tokens = tokens + gate_mlp[:, None] * f
        out = line.guided(model.final(tokens, c).float())
        if trace is not None:
            if out_prev is not None:
                trace.append((k, signal, rel_l1(out[:, :C], out_prev[:, :C])))
            out_prev = out
        if spec.rule == "easycache" and not reuse:
            xf, of = x.float(), out
            if computed_io:
                x_c, o_c = computed_io[-1]
                dx = (xf - x_c).abs().mean().item()
                if dx > 0:
                    gate.k = (of - o_c).abs().mean().item() / dx
            computed_io = [computed_io[-1], (xf, of)] if computed_io else [(xf, of)]
        x = line.advance(k, x, out, draw_noise(line.draws))
    return x, gate


def sample(model, cache, correct="none", sampler="ddim", steps=50, respacing="even", eta=0.0,
           cfg_scale=1.0, cfg_channels="3", classes=None, num_samples=1, seed=0, traces=None):
    """(samples float32 (N, C, H, W), decisions [str per image], signals [[(step, value)]]).
    `model`: a TorchScript path or module; `cache`: the gate text or a Spec. With a list
    `traces`, appends per image sample_image's trace."""
    if isinstance(model, str):
        model = torch.jit.load(model, map_location="cpu")
    model.eval()
    spec = Spec.parse(cache) if isinstance(cache, str) else cache
    if correct == "eoc":
        raise ValueError("an eoc prior is fitted to a fixed schedule: no gate with --correct eoc")
    FeatureCache(correct)  # rejects an unknown corrector before any work
    line = _Timeline(model, sampler, steps, respacing, eta, cfg_scale, cfg_channels)
    labels = resolve_labels(classes, num_samples, int(model.num_classes))
    images, decisions, signals = [], [], []
    with torch.no_grad():
        for i in range(num_samples):
            trace = [] if traces is not None else None
            x, gate = sample_image(model, i, spec, correct, line, labels, seed, trace)
            if traces is not None:
                traces.append(trace)
            images.append(x.float())
            decisions.append(gate.decisions)
            signals.append(gate.signals)
    return torch.cat(images), decisions, signals


def branch_counts(decisions, depth, spec):
    """What the decisions imply, in image-branches: (computed per step, reused per step,
    per-image computed fraction)."""
    gated = len(spec.gated(depth))
    steps = len(decisions[0])
    computed, reused = [0] * steps, [0] * steps
    fractions = []
    for d in decisions:
        assert len(d) == steps
        for k, ch in enumerate(d):
            computed[k] += 2 * (depth - gated) + (2 * gated if ch == "c" else 0)
            reused[k] += 2 * gated if ch == "r" else 0
        fractions.append((2 * (depth - gated) * steps + 2 * gated * d.count("c"))
                         / (2 * depth * steps))
    return computed, reused, fractions


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--cache", required=True, help="RULE:THRESHOLD[,key=N...]")
    ap.add_argument("--correct", default="none",
                    choices=["none", "taylor", "foca"] + [f"taylor:{o}" for o in range(1, 5)])
    ap.add_argument("--sampler", choices=list(SAMPLERS), default="ddim")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--respacing", choices=["even", "ddim"], default="even")
    ap.add_argument("--eta", type=float, default=0.0)
    ap.add_argument("--cfg-scale", type=float, default=1.0)
    ap.add_argument("--cfg-channels", choices=["3", "all"], default="3")
    ap.add_argument("--classes", default=None, help="comma-separated labels (cycled) or 'random'")
    ap.add_argument("--num-samples", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seed-mode", choices=["per-image"], default="per-image",
                    help="each image has its own stream (the only mode: images are sampled alone)")
    ap.add_argument("--out-raw", required=True, help=".npy file for float32 (N, C, H, W) samples")
    ap.add_argument("--out-decisions", default=None,
                    help="JSON file: per image its decision string and the rule's values")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    if a.threads > 0:
        set_threads(a.threads)
    try:
        samples, decisions, signals = sample(a.model, a.cache, a.correct, a.sampler, a.steps,
                                             a.respacing, a.eta, a.cfg_scale, a.cfg_channels,
                                             a.classes, a.num_samples, a.seed)
    except ValueError as exc:
        print(f"reference_gate.py: error: {exc}", file=sys.stderr)
        return 2
    np.save(a.out_raw, samples.numpy().astype(np.float32))
    if a.out_decisions:
        with open(a.out_decisions, "w") as f:
            json.dump({"cache": a.cache, "correct": a.correct,
                       "images": [{"decisions": d, "signals": [[k, v] for k, v in s]}
                                  for d, s in zip(decisions, signals)]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Independent reference for `eoc calibrate` (docs/EOC.md, "The three parts", 1 and 2): the
prior extraction (the per-channel least-squares fit) and both judgments, written from the
specification in docs/EOC.md and the conventions stated in the C++ comments
(src/cache/eoc_calibration.cpp, src/runs/calibrate.cpp), on top of the reference sampler
(reference_sampler.py: seeds, schedule, blockwise forward, plans, the EOC corrector). It is the
oracle of tests/python/test_calibration_reference.py, which compares it with `eoc calibrate`.

Conventions (the run is the one `eoc calibrate` makes from the same flags):
  images     indices 0..N-1 with the run's seed mode and labels; the first N - J are fitted, in
             batches of batch_size (only for the forms with vectors: scale, extrapolate), the
             last J are judged in ONE batch. Batches start in that order (official mode: one
             stream seeded once, fit batches first, then the judge batch).
  noise      fit batches draw each step's noise as the sampler goes; the judge batch draws every
             step's noise up front, and every candidate trajectory uses that same noise.
  CFG        with cfg_scale > 1 the model batch is [x; x] with labels [y; null]: rows 0..B-1
             are the conditional half, rows B..2B-1 the unconditional half, and every fitted
             quantity is kept per half. Without guidance there is one half, stored in both rows.

1. Fit. The uncached sampler runs on the fit images; a shadow cache keeps what a cached run of
   the plan would keep (the true features of the computed entries: F[r], the last one, and F[p],
   the one before). At every (step k, block l, branch b) the plan reuses, the true feature
   F[k] is compared with the cached one: Delta = F[k] - F[r], basis F[r] (scale) or
   F[r] - F[p] (extrapolate; the entry is skipped while no F[p] exists yet). Per half and per
   channel d, over all fit images and tokens, in float64:
       num[d] = sum Delta[., ., d] * basis[., ., d],   den[d] = sum basis[., ., d]^2,
       coef[d] = num[d] / den[d] where den[d] > 1e-12, else 0;  clamped to [-10, 10].
   The basis of extrapolate is the float32 difference F[r] - F[p] (the one the corrector
   applies), then widened; Delta is formed in float64 from the float32 features.
2. Judgment, on the judge batch; steps that reuse nothing keep theta 0, reused steps start at 1.
   local:      step by step along the TRUE (uncached) trajectory; at a reused step k each theta
               of the grid is tried for step k alone, from the true state and the true cached
               features; the error is the mean squared difference of the first C channels of
               the guided model output (eps) against the uncached step's output. The first
               theta with the smallest error wins.
   trajectory: the reused steps in sampling order, on the CACHED trajectory (earlier steps at
               their chosen theta and order, later ones at theta 1 and the base order). For
               step k: final images at theta_k = 0, at theta_k = 1 with the base order (the
               previous choice's final images), and at theta_k = 1 with each other order
               1..max_order, ascending; f1 is the first of the theta-1 candidates with the
               smallest error; the least-squares theta on the line from f0 to f1,
               best = <ref - f0, f1 - f0> / |f1 - f0|^2 clamped to [min(thetas), max(thetas)]
               (1 when f1 == f0), with f1's order, is a last candidate unless it is within 1e-3
               of 0 or 1. Errors: mean squared difference of the final images against the
               uncached final images; the first smallest wins. A theta-0 candidate has order 0.
               Orders (taylor form only; max_order defaults to 4 for it, else 1): the base order
               is the first o in 1..max_order with the smallest final-image error when every
               reused step is at theta 1 and order o (fixed_order_errors). With max_order >= 2
               every choice among candidates (base, f1, the winner; the budget search's orders)
               compares error * (1 + 0.01 * max(0, order - 1)) instead of the error (theta 0
               counts as order 0); with max_order >= 2
               the corrector forecasts with derivative estimates up to max_order at every step
               (order 1 included), with max_order 1 with F[p] and tau.
"""
import numpy as np
import torch

import reference_sampler as rs

DEFAULT_THETAS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
MAX_COEFFICIENT = 10.0  # fitted coefficients are clamped to [-10, 10]
MIN_DENOMINATOR = 1e-12  # a channel whose basis energy is at most this gets coefficient 0
SAME_AS = 1e-3  # a least-squares theta this close to 0 or 1 is not tried again
ORDER_COST = 0.01  # a candidate of forecast order o competes by error * (1 + 0.01 max(0, o - 1))
FOCA = rs.FOCA_ORDER  # the step "order" of FoCa's forecast (calibrate --foca), costed as order 2


def weighted(error, order):
    """docs/EOC.md's order-cost rule: the error a candidate of this order competes with."""
    cost = 2 if order == FOCA else order
    return error * (1.0 + ORDER_COST * max(0, cost - 1))


def forecast_orders(max_order, foca):
    """The forecasts an order search tries, in order: 1..max_order, then FoCa's."""
    return list(range(1, max_order + 1)) + ([FOCA] if foca else [])


def first_best(errors, orders, search_orders=True):
    """Index of the first candidate with the smallest error, cost-weighted with an order
    search (max_order > 1)."""
    keys = [weighted(e, o) if search_orders else e for e, o in zip(errors, orders)]
    return int(np.argmin(keys))


def layout(plan):
    """The plan as eoc's prior writes it (assumes.cache.layout): per step, per block, attn then
    mlp, 'r' reused / 'c' computed; steps separated by '|'."""
    return "|".join("".join("r" if plan[k][l][b] else "c" for l in range(plan.shape[1])
                            for b in range(2)) for k in range(plan.shape[0]))


class ShadowCache(rs.FeatureCache):
    """The cache a cached run of `plan` would hold, kept beside an uncached run: computed entries
    are stored; at entries the plan reuses, the true feature is shown to `observe(k, l, b, F_k,
    ((r, F_r), (p, F_p) or None))` instead of being stored."""

    def __init__(self, plan, observe=None):
        super().__init__("none")
        self.plan = plan
        self.observe = observe

    def store(self, l, b, k, value):
        if self.plan[k][l][b]:
            if self.observe is not None:
                self.observe(k, l, b, value, self.entries[(l, b)])
            return
        super().store(l, b, k, value)


def fork(cache, prior):
    """A cached run under the EOC corrector `prior`, continuing from `cache`'s features (entries
    are replaced on store, never changed in place, so a shallow copy forks)."""
    out = rs.FeatureCache("eoc", prior)
    out.entries = dict(cache.entries)
    out.derivatives = dict(cache.derivatives)
    out.trail = dict(cache.trail)
    return out


def mse(a, b):
    return float(((a.double() - b.double()) ** 2).mean())


class Run:
    """One calibration run's fixed parts: model, schedule, plan, sampler, guidance, images."""

    def __init__(self, model, sampler, steps, respacing, eta, cfg_scale, cfg_channels, classes,
                 num_samples, judge_samples, batch_size, seed, seed_mode, cache):
        if isinstance(model, str):
            model = torch.jit.load(model, map_location="cpu")
        model.eval()
        self.model = model
        self.sampler, self.eta = sampler, float(eta)
        self.sched = rs.Schedule(steps, respacing)
        self.S = self.sched.num_steps
        self.plan = rs.make_plan(cache, self.S, int(model.depth))
        if self.plan is None or not self.plan.any():
            raise ValueError("the cache plan reuses nothing: there is nothing to calibrate")
        self.cfg_scale, self.cfg_channels = float(cfg_scale), cfg_channels
        self.halves = 2 if self.cfg_scale > 1.0 else 1
        self.C, H = int(model.in_channels), int(model.input_size)
        self.shape = (self.C, H, H)
        self.D = int(model.hidden_size)
        self.K = int(model.num_classes)
        self.labels = rs.resolve_labels(classes, num_samples, self.K)
        self.N, self.J = int(num_samples), int(judge_samples)
        self.batch_size = int(batch_size) if batch_size else self.N
        self.seed, self.seed_mode = int(seed), seed_mode
        self.draws_noise = sampler == "ddpm" or self.eta > 0

    def start(self, first, count):
        return rs.start_batch(first, count, self.shape, self.K, self.labels, self.seed,
                              self.seed_mode, self.halves == 2)

    def output(self, x, y, k, cache=None, reuse=None):
        """Guided model output at step k; blockwise through `cache` when given (reusing the
        entries `reuse` marks), else the module's own forward."""
        t = self.sched.timesteps[self.S - 1 - k]
        return rs.guided_output(self.model, x, t, y, self.cfg_scale, self.cfg_channels, k, reuse,
                                cache)

    def step(self, k, x, out, noise):
        return rs.sampler_step(self.sched, self.sampler, self.eta, k, x, out, noise)

    def reused_steps(self):
        return [k for k in range(self.S) if self.plan[k].any()]


def fit(run, form):
    """(step, block, branch) -> float32 (2, D) numpy coefficients, row 0 conditional."""
    if form not in ("scale", "extrapolate"):
        raise ValueError(f"form '{form}' has no vectors")
    h = run.halves
    sums = {}  # key -> [num (h, D), den (h, D)] float64

    def observe(k, l, b, f_k, entry):
        (_, f_r), older = entry
        if form == "extrapolate":
            if older is None:
                return  # no F[p] yet: nothing to extrapolate from
            basis = f_r - older[1]
        else:
            basis = f_r
        rows = f_k.shape[0] // h
        acc = sums.setdefault((k, l, b), [np.zeros((h, run.D)), np.zeros((h, run.D))])
        for half in range(h):
            part = slice(half * rows, (half + 1) * rows)
            delta = (f_k[part].double() - f_r[part].double()).reshape(-1, run.D).numpy()
            base = basis[part].double().reshape(-1, run.D).numpy()
            acc[0][half] += np.einsum("nd,nd->d", delta, base)
            acc[1][half] += np.einsum("nd,nd->d", base, base)

    fit_images = run.N - run.J
    with torch.no_grad():
        for first in range(0, fit_images, run.batch_size):
            x, y, draw = run.start(first, min(run.batch_size, fit_images - first))
            shadow = ShadowCache(run.plan, observe)
            for k in range(run.S):
                out = run.output(x, y, k, shadow)
                x = run.step(k, x, out, draw(run.draws_noise))
    vectors = {}
    for key, (num, den) in sums.items():
        ok = den > MIN_DENOMINATOR
        coef = np.zeros_like(num)
        coef[ok] = num[ok] / den[ok]
        coef = np.clip(coef, -MAX_COEFFICIENT, MAX_COEFFICIENT).astype(np.float32)
        vectors[key] = coef if h == 2 else np.concatenate([coef, coef])
    return vectors


def judge_local(run, prior, x, y, noise):
    judged = []
    truth = ShadowCache(run.plan)
    for k in range(run.S):
        trials = []
        if run.plan[k].any():
            for theta in prior["thetas"]:
                prior["theta"][k] = theta
                trials.append(run.output(x, y, k, fork(truth, prior), run.plan[k]))
        out = run.output(x, y, k, truth)
        if trials:
            errors = [mse(t[:, :run.C], out[:, :run.C]) for t in trials]
            theta = prior["thetas"][int(np.argmin(errors))]
            prior["theta"][k] = theta
            judged.append(dict(step=k, theta=theta, candidates=list(prior["thetas"]),
                               errors=errors))
        x = run.step(k, x, out, noise[k])
    return judged


def judge_trajectory(run, prior, x_T, y, noise, reference, all_orders):
    lo, hi = min(prior["thetas"]), max(prior["thetas"])
    reused = run.reused_steps()

    def advance(state, until):
        k, x, cache = state
        cache = fork(cache, prior)
        for k in range(k, until):
            x = run.step(k, x, run.output(x, y, k, cache, run.plan[k]), noise[k])
        return until, x, cache

    start = (0, x_T, rs.FeatureCache("eoc", prior))

    def all_at(order):
        for k in reused:
            prior["theta"][k], prior["order"][k] = 1.0, order
        return advance(start, run.S)[1]

    search = len(all_orders) > 1
    finals = [all_at(o) for o in all_orders]
    fixed_errors = [mse(f, reference) for f in finals]
    best = first_best(fixed_errors, all_orders)
    base, current = all_orders[best], finals[best]
    for k in reused:
        prior["order"][k] = base
    state = start
    judged = []
    for k in reused:
        state = advance(state, k)

        def final_with(theta, order):
            prior["theta"][k], prior["order"][k] = theta, order
            return advance(state, run.S)[1]

        candidates, orders, finals = [0.0, 1.0], [0, base], [final_with(0.0, base), current]
        for o in all_orders:
            if o != base:
                candidates.append(1.0)
                orders.append(o)
                finals.append(final_with(1.0, o))
        errors = [mse(f, reference) for f in finals]
        far = 1 + first_best(errors[1:], orders[1:], search)
        line = (finals[far] - finals[0]).double()
        miss = (reference - finals[0]).double()
        dd = float((line * line).sum())
        best = min(max(float((miss * line).sum()) / dd, lo), hi) if dd > 0 else 1.0
        if abs(best) > SAME_AS and abs(best - 1.0) > SAME_AS:
            candidates.append(best)
            orders.append(orders[far])
            finals.append(final_with(best, orders[far]))
            errors.append(mse(finals[-1], reference))
        pick = first_best(errors, orders, search)
        theta, order = candidates[pick], orders[pick]
        prior["theta"][k], prior["order"][k] = theta, order if theta != 0.0 else base
        current = finals[pick]
        entry = dict(step=k, theta=theta, candidates=candidates, errors=errors)
        if search:
            entry.update(order=order, orders=orders)
        judged.append((entry, order))
    return judged, (fixed_errors if search else [])


def calibrate(model, *, form="taylor", judgment="trajectory", thetas=None, sampler="ddim",
              steps=50, respacing="even", eta=0.0, cfg_scale=4.0, cfg_channels="3",
              classes=None, num_samples=48, judge_samples=16, batch_size=16, seed=1000,
              seed_mode="per-image", cache="fora:3", vectors=None, max_order=None, foca=False):
    """What `eoc calibrate` with these settings should write: dict(step_theta, step_order,
    judged, fixed_order_errors, vectors, layout). `vectors` (from `fit`) skips the fit when the
    same run was fitted already (the fit does not depend on the judgment); official-mode streams
    still draw the fit's noise. max_order None: eoc's default (4 for the taylor form's
    trajectory judgment, else 1). foca: FoCa's forecast is searched beside the orders."""
    thetas = list(DEFAULT_THETAS if thetas is None else thetas)
    if max_order is None:
        max_order = 4 if (form, judgment) == ("taylor", "trajectory") else 1
    run = Run(model, sampler, steps, respacing, eta, cfg_scale, cfg_channels, classes,
              num_samples, judge_samples, batch_size, seed, seed_mode, cache)
    has_vectors = form in ("scale", "extrapolate")
    if seed_mode == "official":
        torch.manual_seed(run.seed)
    if has_vectors and (vectors is None or seed_mode == "official"):
        vectors = fit(run, form)
    if not has_vectors:
        vectors = {}
    reused = [bool(run.plan[k].any()) for k in range(run.S)]
    prior = dict(form=form, thetas=thetas, halves=run.halves,
                 theta=[1.0 if r else 0.0 for r in reused],
                 order=[max_order if r else 0 for r in reused],
                 series_order=max_order if max_order > 1 else 0, foca=foca,
                 vectors={key: torch.from_numpy(v) for key, v in vectors.items()})
    with torch.no_grad():
        x_T, y, draw = run.start(run.N - run.J, run.J)
        noise = [draw(run.draws_noise) for _ in range(run.S)]
        fixed_order_errors = []
        if judgment == "local":
            judged = judge_local(run, prior, x_T, y, noise)
            orders = [1 if j["theta"] != 0.0 else 0 for j in judged]
        elif judgment == "trajectory":
            x = x_T
            for k in range(run.S):
                x = run.step(k, x, run.output(x, y, k), noise[k])
            pairs, fixed_order_errors = judge_trajectory(run, prior, x_T, y, noise, x,
                                                         forecast_orders(max_order, foca))
            judged, orders = [j for j, _ in pairs], [o for _, o in pairs]
        else:
            raise ValueError(f"unknown judgment '{judgment}' (trajectory or local)")
    step_order = [0] * run.S
    for j, o in zip(judged, orders):
        step_order[j["step"]] = o
    return dict(step_theta=list(prior["theta"]), step_order=step_order, judged=judged,
                fixed_order_errors=fixed_order_errors, vectors=vectors, layout=layout(run.plan))


# The budget search (docs/EOC.md, "Budget-searched schedules"; `eoc calibrate --budget F`),
# written from that description and the conventions of src/cache/schedule_search.cpp: every
# trajectory is run from x_T (no shared prefixes), with every reused step at theta 1 and one order.
#   computed   n = floor(F S + 1e-9) whole steps; the first max(warmup, 1) are always computed.
#   shapes     m = n - forced free steps over [forced, S-1] (range R = S - forced); warp(g):
#              p_i = forced + floor(R (i/m)^g), i = 0..m-1; warp-end(g): p_i = forced +
#              round_half_up((R-1) ((i+1)/m)^g); then made strictly increasing inside [forced,
#              S-1] (forward: p_i >= p_{i-1} + 1, backward: p_i <= p_{i+1} - 1); uniform(g): all n
#              steps, q_i = i for i < forced, else floor(S (i/n)^g), made strictly increasing
#              inside [0, S-1] the same way. Order: "even" (warp 1), warp:g, warp-end:g and
#              uniform:g for g in 0.5, 0.7, 1, 1.4, 2, then fora:N for
#              N = 2..S-1 where its computed count (with the forced steps) is n; a schedule equal
#              to an earlier one is dropped. "even" is scored at orders 1..O (the first smallest
#              wins), the others at that order (a later one wins only when strictly smaller),
#              and the winner, unless "even", at the other orders.
#   refinement d = max(1, (S - forced) // m // 2); a pass visits the computed steps in order
#              (forced ones skipped) and tries c - d, then c + d, each kept inside the gap to
#              its neighbours and at >= forced; a try that beats the best error so far becomes
#              the best; the step moves to the best try. After a pass without moves d halves
#              (ending when d was 1); at most 4 passes.
WARPS = [0.5, 0.7, 1.0, 1.4, 2.0]
MAX_PASSES = 4


def budget_search(model, *, budget, warmup=0, max_order=4, foca=False, sampler="ddim", steps=20,
                  respacing="even", eta=0.0, cfg_scale=1.5, cfg_channels="3", classes=None,
                  num_samples=16, judge_samples=16, batch_size=16, seed=1000,
                  seed_mode="per-image"):
    """What `eoc calibrate --budget` should record in calibration.search: dict(computed_steps,
    order, error, shapes=[dict(name, computed_steps, order, error)], passes, moves_taken)."""
    run = Run(model, sampler, steps, respacing, eta, cfg_scale, cfg_channels, classes,
              num_samples, judge_samples, batch_size, seed, seed_mode, "fora:2")
    S, depth = run.S, int(run.model.depth)
    forced = max(warmup, 1)
    total = int(np.floor(budget * S + 1e-9))
    prior = dict(form="taylor", thetas=list(DEFAULT_THETAS), halves=run.halves,
                 theta=[1.0] * S, order=[1] * S,
                 series_order=max_order if max_order > 1 else 0, foca=foca, vectors={})
    orders = forecast_orders(max_order, foca)
    with torch.no_grad():
        if seed_mode == "official":
            torch.manual_seed(run.seed)
        x_T, y, draw = run.start(run.N - run.J, run.J)
        noise = [draw(run.draws_noise) for _ in range(S)]
        reference = x_T
        for k in range(S):
            reference = run.step(k, reference, run.output(reference, y, k), noise[k])

        def score(computed, order):
            plan = np.ones((S, depth, 2), dtype=bool)
            plan[list(computed)] = False
            prior["order"] = [order] * S
            cache, x = rs.FeatureCache("eoc", prior), x_T
            for k in range(S):
                x = run.step(k, x, run.output(x, y, k, cache, plan[k]), noise[k])
            return mse(x, reference)

        def warp(g, end):
            m, r = total - forced, S - forced
            p = []
            for i in range(m):
                u = (i + 1) / m if end else i / m
                at = (r - 1 if end else r) * u ** g
                p.append(forced + (int(np.floor(at + 0.5)) if end else int(np.floor(at))))
            for i in range(m):
                p[i] = max(p[i], forced if i == 0 else p[i - 1] + 1)
            for i in reversed(range(m)):
                p[i] = min(p[i], S - 1 if i == m - 1 else p[i + 1] - 1)
            return list(range(forced)) + p

        def uniform(g):
            q = [i if i < forced else int(np.floor(S * (i / total) ** g)) for i in range(total)]
            for i in range(total):
                q[i] = max(q[i], 0 if i == 0 else q[i - 1] + 1)
            for i in reversed(range(total)):
                q[i] = min(q[i], S - 1 if i == total - 1 else q[i + 1] - 1)
            return q

        shapes = []

        def add(name, computed):
            if all(s["computed_steps"] != computed for s in shapes):
                shapes.append(dict(name=name, computed_steps=computed))

        add("even", warp(1.0, False))
        if total > forced:
            for end in (False, True):
                for g in WARPS:
                    add(f"warp{'-end' if end else ''}:{g:g}", warp(g, end))
            for g in WARPS:
                add(f"uniform:{g:g}", uniform(g))
        for n in range(2, S):
            c = [k for k in range(S) if k < forced or (S - 1 - k) % n == 0]
            if len(c) == total:
                add(f"fora:{n}", c)
        tried = []
        errors = [score(shapes[0]["computed_steps"], o) for o in orders]
        tried += [dict(shapes[0], order=o, error=e) for o, e in zip(orders, errors)]
        i = first_best(errors, orders)
        order, best, pick = orders[i], errors[i], 0
        for i, s in enumerate(shapes[1:], 1):
            e = score(s["computed_steps"], order)
            tried.append(dict(s, order=order, error=e))
            if e < best:
                best, pick = e, i
        computed, error, found_order = list(shapes[pick]["computed_steps"]), best, order
        if pick != 0:
            for o in orders:
                if o != order:
                    e = score(computed, o)
                    tried.append(dict(shapes[pick], order=o, error=e))
                    if weighted(e, o) < weighted(error, found_order):
                        error, found_order = e, o
        free = total - forced
        passes = taken_all = 0
        if free > 0:
            d = max(1, (S - forced) // free // 2)
            while passes < MAX_PASSES:
                passes += 1
                taken = 0
                for i in range(len(computed)):
                    c = computed[i]
                    if c < forced:
                        continue
                    lo = max(forced, computed[i - 1] + 1 if i > 0 else 0)
                    hi = computed[i + 1] - 1 if i + 1 < len(computed) else S - 1
                    best_at = c
                    for to in (c - d, c + d):
                        if lo <= to <= hi:
                            e = score(computed[:i] + [to] + computed[i + 1:], found_order)
                            if e < error:
                                error, best_at = e, to
                    if best_at != c:
                        computed[i] = best_at
                        taken += 1
                taken_all += taken
                if taken == 0 and d == 1:
                    break
                if taken == 0:
                    d = max(1, d // 2)
    return dict(computed_steps=computed, order=found_order, error=error, shapes=tried,
                passes=passes, moves_taken=taken_all)

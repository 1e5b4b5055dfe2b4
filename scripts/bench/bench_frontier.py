#!/usr/bin/env python3
"""Quality-per-compute frontier: at computed fractions from about 0.6 down to 0.2, how close each
caching method stays to the uncached images of the same held-out seeds, and what it costs.

Methods (one line each): plain FORA (`fora:N`, N = 2, 3, 4, 7: 55, 40, 30, 20% computed at 20
steps), TaylorSeer's forecast of order 1..4 and FoCa's (`--correct foca`) on the same schedules, EOC (`eoc calibrate --cache
fora:N`, defaults), the paper's masks with EOC, budget-searched EOC (`eoc calibrate --budget
F`), and the baseline a user tries first, `fewer steps`: no cache, the same seeds, with as many
model evaluations as each computed fraction the other methods reached (the distinct ones, to
3 decimals) asks for. Priors are calibrated on other seeds than the evaluated ones. The first
row is the uncached run itself (`uncached`, 100% computed, MSE 0: the reference).

Per point: the computed fraction of branch computations, the estimated FLOPs fraction (the run
report's `estimated_flops_saved`), MSE and PSNR against the uncached images on the [-1, 1]
scale (the mean over images, and the median of the images' own MSEs: on a model whose few
diverging images dominate the mean, the median shows the typical image), and the time ratio:
the sampling phase's CPU seconds (user + sys, `timings_s.sample_cpu`) over the uncached run's,
one run each (a rough figure; docs/BENCHMARKS.md's timing tables are the measured ones).

Fewer steps: for a computed fraction f, the step count whose model evaluations per image come
nearest to f times the full run's (at least 2 steps, fewer than --steps; a tie goes to the
cheaper). DDPM/DDIM evaluate once per step, so at 20 steps that is round(20 f) steps; eoc's flow
samplers count SiT's grid points (euler: steps - 1 evaluations, heun: 2 (steps - 1), sde: steps,
sde-heun: 2 steps - 1), so at euler-20 (19 evaluations) the cached schedules' fractions k/19
give k + 1 steps. Its computed and FLOPs fractions are its evaluations over the full run's (the
run reports' `cache_stats.steps`); its MSE is against the full-step uncached images. With the
default --seed-mode per-image the initial noise of image i depends only on (seed, i), not on the
step count (checked with a model whose output is zero: ddim, euler and heun return the same
x_T-determined image at 20, 11 and 4 steps), so only the discretisation differs. The SDE samplers
draw noise at every step, so their trajectories differ by more than the step count.

--fid-images N adds FID for every point (uncached, every method and schedule, fewer steps): N
more images of --fid-seed (default 5000; eoc's default labels, which cycle through the classes
0..9, so N a multiple of 10 is class-balanced like the test set), scored by
scripts/bench/fmnist_fid.py against the 10,000 Fashion-MNIST test images: the Fréchet distance
of the features of this project's small classifier (third_party/models/fmnist-classifier.pt),
not Inception's, so the numbers are comparable only within this project, and only between runs
of the same N (FID is biased upward at small N). It needs a 32x32 one-channel model (the
Fashion-MNIST DiTs). The uncached row's FID is the floor the others are read against. MSE stays
on the --images set.

    scripts/bench/bench_frontier.py --eoc build/eoc --name fmnist-dit-s4 \\
        --out docs/benchmarks/frontier_fmnist-dit-s4.json \\
        --markdown docs/benchmarks/frontier_fmnist-dit-s4.md
    scripts/bench/bench_frontier.py ... --checkpoint third_party/models/fmnist-dit-p2d16.pt --num-heads 4
    scripts/bench/bench_frontier.py ... --checkpoint SIT.pt --num-heads 4 --family sit \\
        --sampler euler --steps 20 --cfg-scale 1.5 --fid-images 1000
    scripts/bench/plot_frontier.py docs/benchmarks/frontier_fmnist-dit-s4.json \\
        docs/benchmarks/frontier_fmnist-dit-p2d16.json \\
        docs/benchmarks/frontier_fmnist-dit-p2d16_16_judge_images.json -o docs/benchmarks/frontier.png
"""
import argparse
import json
import math
import os
import platform
import sys

import numpy as np

from bench_common import REPO, recorded_command, recorded_path, run_checked, scratch_dir

FORA = [2, 3, 4, 7]
BUDGETS = [0.55, 0.5, 0.4, 0.3, 0.25, 0.2]
MASKS = {f"paper-{p}%": os.path.join(REPO, "configs", "cache", f"eoc-ddim20-{p}.json") for p in (50, 75)}
FEWER = "fewer steps"
UNCACHED = "uncached"


def run(cmd, log):
    return run_checked("bench_frontier", cmd, log=log)


def evaluations(sampler, steps):
    """Model evaluations per image of `eoc sample --sampler S --steps N` (a CFG-batched one counts
    once): DDPM/DDIM one per step; the flow samplers count SiT's grid points."""
    return {"euler": steps - 1, "heun": 2 * (steps - 1), "sde": steps,
            "sde-heun": 2 * steps - 1}.get(sampler, steps)


def fewer_steps(sampler, steps, fractions):
    """-> [step count] (distinct, most first) for the computed fractions: per fraction f, the
    count in [2, steps) whose evaluations come nearest to f * evaluations(steps), ties to the
    cheaper one."""
    full = evaluations(sampler, steps)
    out = []
    for f in fractions:
        if not 0 < f < 1 or steps <= 2:
            continue
        s = min(range(2, steps), key=lambda n: (abs(evaluations(sampler, n) - f * full), n))
        if s not in out:
            out.append(s)
    return sorted(out, reverse=True)


class Bench:
    def __init__(self, args, log):
        self.args, self.log, self.work = args, log, args.work
        self.model = ["--model", args.model] if args.model else []
        self.common = [*self.model, "--sampler", args.sampler, "--cfg-scale", str(args.cfg_scale),
                       "--threads", str(args.threads)]
        self.base = None
        self.classifier = None

    def sample(self, tag, extra, steps=None, count=None, seed=0):
        """(images float64, run report) of one eoc sample run, kept in --work by its tag."""
        raw, report = (os.path.join(self.work, f"{tag}.{e}") for e in ("npy", "json"))
        if not (os.path.exists(raw) and os.path.exists(report)):  # else kept from an earlier run in --work
            run([self.args.eoc, "-q", "sample", *self.common, "--steps", str(steps or self.args.steps),
                 "--num-samples", str(count or self.args.images),
                 "--batch-size", str(self.args.batch_size), "--seed", str(seed), *extra,
                 "--out-raw", raw, "--report", report], self.log)
        with open(report) as f:
            rep = json.load(f)
        return np.load(raw).astype(np.float64), rep

    def calibrate(self, tag, extra):
        prior = os.path.join(self.work, f"prior-{tag}.json")
        if not os.path.exists(prior):
            run([self.args.eoc, "-q", "calibrate", *self.common, "--steps", str(self.args.steps),
                 "--seed", str(self.args.calib_seed),
                 "--judge-samples", str(self.args.judge_samples), *extra, "--out", prior], self.log)
        with open(prior) as f:
            cal = json.load(f)["calibration"]
        return prior, cal

    def fid(self, tag, extra, steps=None):
        """FID of --fid-images images of --fid-seed sampled with these settings (fmnist_fid)."""
        a = self.args
        imgs, _ = self.sample(f"{tag}-fid{a.fid_images}-seed{a.fid_seed}", extra, steps,
                              a.fid_images, a.fid_seed)
        if imgs.shape[1:] != (1, 32, 32):
            sys.exit(f"bench_frontier: --fid-images needs a 32x32 one-channel Fashion-MNIST model "
                     f"(fmnist_fid's classifier); this model's samples are {imgs.shape[1:]}")
        if self.classifier is None:
            import fmnist_fid  # torch, only when FID is asked for
            self.fmnist_fid = fmnist_fid
            self.classifier = fmnist_fid.load_classifier(a.classifier)
        return self.fmnist_fid.fid(self.classifier, imgs, cache_dir=self.work)

    def gate_file(self, rule, correct, target):
        """The gate file of `eoc calibrate --gate RULE --target F --correct C` on the judge images,
        or None when no threshold of the gate reaches F (its always-computed blocks or guards keep
        more): that point is left out, and the log says why."""
        tag = f"gate-{rule}-{correct}-{target}".replace(":", "")
        path = os.path.join(self.work, f"{tag}.json")
        if not os.path.exists(path):
            try:
                run([self.args.eoc, "-q", "calibrate", *self.common, "--steps", str(self.args.steps),
                     "--seed", str(self.args.calib_seed), "--num-samples", str(self.args.judge_samples),
                     "--judge-samples", str(self.args.judge_samples), "--gate", rule,
                     "--target", str(target), "--correct", correct, "--out", path], self.log)
            except SystemExit as e:
                if "no threshold reaches" not in str(e.code):
                    raise
                print(f"bench_frontier: {rule} ({correct}) does not reach {target}: "
                      f"{str(e.code).strip().splitlines()[-1]}", file=sys.stderr)
                return None, None
        with open(path) as f:
            return path, json.load(f)["calibration"]

    def point(self, method, schedule, extra, calibration=None, steps=None, nominal=None):
        tag = (UNCACHED if method == UNCACHED else  # the run rows() made first: the reference
               f"{method}-{schedule}".replace(":", "").replace("%", "").replace(" ", "-"))
        imgs, rep = self.sample(tag, extra, steps)
        stats = rep["cache_stats"]
        if steps is None:
            computed, flops = 1.0 - stats["caching_level"], 1.0 - stats["estimated_flops_saved"]
        else:  # no cache: every evaluation computes everything; its share of the full run's
            computed = flops = stats["steps"] / self.base_evaluations
        per_image = np.mean((imgs - self.base) ** 2, axis=tuple(range(1, imgs.ndim)))
        mse = float(np.mean(per_image))
        row = dict(method=method, schedule=schedule, computed=computed, flops=flops, mse=mse,
                   mse_median=float(np.median(per_image)),
                   psnr=10 * math.log10(4.0 / mse) if mse > 0 else None,
                   time_ratio=rep["timings_s"]["sample_cpu"] / self.base_cpu)
        if steps is not None:
            row["steps"] = steps
        if nominal is not None:  # a gate calibrated to this fraction: its tables' row
            row["nominal"] = nominal
        if calibration is not None:
            row["calibration_s"] = calibration["seconds"]
            cost = calibration.get("cost")
            if cost:
                row["calibration_multiple"] = cost["multiple_of_uncached_judge_sampling"]
        if self.args.fid_images:
            row["fid"] = self.fid(tag, extra, steps)
        print(f"{method:14s} {schedule:12s} computed {row['computed']:.3f} mse {mse:.3e} "
              f"time {row['time_ratio']:.3f}" + (f" fid {row['fid']:.4g}" if "fid" in row else ""),
              file=sys.stderr)
        return row

    def rows(self, save):
        a = self.args
        self.base, rep = self.sample("uncached", ["--cache", "none"])
        self.base_cpu = rep["timings_s"]["sample_cpu"]
        self.base_evaluations = rep["cache_stats"]["steps"]
        rows = []

        def add(row):
            rows.append(row)
            save(rows)

        add(self.point(UNCACHED, "none", ["--cache", "none"]))
        fora = [n for n in a.fora if n < a.steps]
        for n in fora:
            s = f"fora:{n}"
            if "fora" in a.fixed:
                add(self.point("fora", s, ["--cache", s, "--correct", "none"]))
            for o in range(1, 5):
                if f"taylor:{o}" in a.fixed:
                    add(self.point(f"taylor:{o}", s, ["--cache", s, "--correct", f"taylor:{o}"]))
            if "foca" in a.fixed:
                add(self.point("foca", s, ["--cache", s, "--correct", "foca"]))
            if "eoc" in a.fixed:
                prior, cal = self.calibrate(f"fora{n}", ["--cache", s])
                add(self.point("eoc", s, ["--cache", s, "--prior", prior], cal))
        if a.masks and a.sampler == "ddim" and a.steps == 20:
            for name, path in MASKS.items():
                spec = f"mask:{path}"
                prior, cal = self.calibrate(name.replace("%", ""), ["--cache", spec])
                add(self.point("paper mask + eoc", name, ["--cache", spec, "--prior", prior], cal))
        for f in a.budgets:
            s = f"budget:{f}"
            prior, cal = self.calibrate(f"budget{f}", ["--budget", str(f)])
            add(self.point("budget eoc", s, ["--prior", prior], cal))
        for rule in a.gates:
            for correct in a.gate_correctors:
                method = rule if correct == "none" else f"{rule} + {correct}"
                for f in a.budgets:
                    path, cal = self.gate_file(rule, correct, f)
                    if path:
                        add(self.point(method, f"target:{f}", ["--prior", path], cal, nominal=f))
        if a.fewer_steps:
            fractions = sorted({round(r["computed"], 3) for r in rows
                                if r["method"] != UNCACHED and "nominal" not in r}, reverse=True)
            for n in fewer_steps(a.sampler, a.steps, fractions):
                add(self.point(FEWER, f"steps:{n}", ["--cache", "none"], steps=n))
        return rows


def methods_of(rows):
    """The methods in the order of the table columns: fewer steps first (the baseline), then
    the others as they come; the uncached reference is not a column."""
    methods = []
    for r in rows:
        if r["method"] not in methods and r["method"] != UNCACHED:
            methods.append(r["method"])
    return sorted(methods, key=lambda m: m != FEWER)


def fraction_of(row):
    """The fraction a row is tabled at: a gate's calibration target (its measured fraction on
    the evaluated images is in the "Every point" table), else its computed fraction, to 3
    decimals."""
    return round(row.get("nominal", row["computed"]), 3)


def fraction_table(rows, methods, key, fmt):
    """Lines of one table: a row per computed fraction (to 3 decimals, most first), a column
    per method, the lowest value of each fraction bold."""
    rows = [r for r in rows if r["method"] != UNCACHED and r.get(key) is not None]
    out = ["| computed | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for fr in sorted({fraction_of(r) for r in rows}, reverse=True):
        at = {r["method"]: r for r in rows if fraction_of(r) == fr}
        best = min(r[key] for r in at.values())
        cells = []
        for meth in methods:
            r = at.get(meth)
            if r is None:
                cells.append("")
            else:
                cell = fmt(r[key])
                cells.append(f"**{cell}**" if r[key] == best else cell)
        out.append(f"| {100 * fr:.0f}% | " + " | ".join(cells) + " |")
    return out


def markdown(doc):
    m = doc["meta"]
    rows = doc["rows"]
    methods = methods_of(rows)
    out = [f"Command: `{m['command']}`  ",
           f"Model: {m['model']}; {m['sampler']}-{m['steps']}, cfg {m['cfg_scale']}; {m['images']} images "
           f"(seed 0) against their uncached samples; priors from {m['judge_samples']} judge images "
           f"of seed {m['calib_seed']}. Machine: {m['machine']}.", ""]
    if FEWER in methods:
        out += ["`fewer steps`: no cache, the step count whose model evaluations come nearest to the "
                "computed fraction, compared with the full-step uncached images of the same seeds.", ""]
    if any("nominal" in r for r in rows):
        out += ["Gates (`fbcache`, `teacache`, `easycache`, `+ C`: reused branches through corrector "
                "C) decide per image at run time; each was calibrated with `eoc calibrate --gate RULE "
                "--target F` on the judge images and is tabled at F; the fraction it computed on the "
                "evaluated images is in the last table.", ""]
    sci = "{:.3e}".format
    for key, title in (("mse", "MSE vs uncached (mean over images)"),
                       ("mse_median", "Median over images of each image's MSE vs uncached")):
        out += [f"{title} at each computed fraction (lower is better; bold: the lowest at that fraction):", ""]
        out += fraction_table(rows, methods, key, sci) + [""]
    if any(r.get("fid") is not None for r in rows):
        floor = next((r["fid"] for r in rows if r["method"] == UNCACHED and r.get("fid") is not None), None)
        out += [f"FID at each computed fraction: {m.get('fid_images')} images of seed {m.get('fid_seed')} "
                f"against the 10,000 Fashion-MNIST test images, features of "
                f"`{m.get('classifier', 'the project classifier')}` (not Inception: comparable only "
                "within this project, at the same image count). Lower is better; bold: the lowest at "
                "that fraction."
                + (f" Uncached (100% computed): {floor:.4g}, the floor." if floor is not None else ""), ""]
        out += fraction_table(rows, methods, "fid", "{:.4g}".format) + [""]
    out += ["Every point:", "",
            "| method | schedule | computed | FLOPs fraction | MSE vs uncached | median image MSE | PSNR (dB) | FID | CPU time ratio | calibration |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cal = ""
        if "calibration_multiple" in r:
            cal = f"{r['calibration_multiple']:.0f}x uncached judge sampling"
        psnr = "" if r.get("psnr") is None else f"{r['psnr']:.2f}"
        fid = "" if r.get("fid") is None else f"{r['fid']:.4g}"
        out.append(f"| {r['method']} | {r['schedule']} | {100 * r['computed']:.1f}% | {r['flops']:.3f} | "
                   f"{r['mse']:.3e} | {r['mse_median']:.3e} | {psnr} | {fid} | {r['time_ratio']:.3f} | {cal} |")
    return "\n".join(out) + "\n"


def export(args):
    """The TorchScript of --checkpoint (of --family), exported into the work folder."""
    ts = os.path.join(args.work, os.path.splitext(os.path.basename(args.checkpoint))[0] + ".ts")
    run([sys.executable, os.path.join(REPO, "scripts", "tools", "export_dit.py"), args.checkpoint,
         "-o", ts, "--num-heads", str(args.num_heads), "--family", args.family], None)
    return ts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eoc", default=os.path.join(REPO, "build", "eoc"))
    ap.add_argument("--name", required=True, help="the model's name in the results")
    ap.add_argument("--model", default="", help="TorchScript model (default: the built-in one)")
    ap.add_argument("--checkpoint", default="", help="official-layout checkpoint, exported first")
    ap.add_argument("--num-heads", type=int, default=0, help="with --checkpoint")
    ap.add_argument("--family", choices=["dit", "sit", "repa"], default="dit",
                    help="with --checkpoint: its model family (export_dit.py --family); a flow "
                         "family needs a flow --sampler (euler, heun, sde, sde-heun)")
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg-scale", type=float, default=1.5)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--judge-samples", type=int, default=16)
    ap.add_argument("--calib-seed", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--fora", default=",".join(map(str, FORA)), help="FORA intervals")
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="budget-searched fractions")
    ap.add_argument("--fixed", default="fora,taylor:1,taylor:2,taylor:3,taylor:4,foca,eoc",
                    help="the methods run on every --fora schedule (a subset to save time)")
    ap.add_argument("--no-masks", dest="masks", action="store_false", help="leave out the paper's masks")
    ap.add_argument("--gates", default="",
                    help="run-time gates to calibrate at each --budgets fraction (comma list of "
                         "fbcache, teacache, easycache; each with its default guards)")
    ap.add_argument("--gate-correctors", default="none,taylor:2",
                    help="the correctors each gate runs with (comma list of --correct values)")
    ap.add_argument("--no-fewer-steps", dest="fewer_steps", action="store_false",
                    help="leave out the fewer-steps baseline")
    ap.add_argument("--fid-images", type=int, default=0,
                    help="also the FID of N images of --fid-seed per point (0: no FID)")
    ap.add_argument("--fid-seed", type=int, default=5000)
    ap.add_argument("--classifier", default=os.path.join(REPO, "third_party", "models", "fmnist-classifier.pt"),
                    help="fmnist_fid.py's classifier (with --fid-images)")
    ap.add_argument("--work", default="", help="keep samples and priors here (default: a temporary folder)")
    ap.add_argument("--out", required=True, help="JSON results")
    ap.add_argument("--markdown", help="also write the tables here")
    args = ap.parse_args()
    args.fora = [int(n) for n in args.fora.split(",") if n]
    args.budgets = [float(f) for f in args.budgets.split(",") if f]
    args.gates = [g for g in args.gates.split(",") if g]
    args.fixed = [m for m in args.fixed.split(",") if m]
    args.gate_correctors = [c for c in args.gate_correctors.split(",") if c]
    if args.fid_images == 1 or args.fid_images < 0:
        sys.exit("bench_frontier: --fid-images needs at least 2 images (0: no FID)")
    if args.fid_images and args.fid_images % 10:
        print(f"bench_frontier: --fid-images {args.fid_images} is not a multiple of 10: the FID set's "
              "classes are not balanced", file=sys.stderr)
    args.work = args.work or scratch_dir("bench_frontier_")
    os.makedirs(args.work, exist_ok=True)
    if args.checkpoint:
        if args.model or not args.num_heads:
            sys.exit("bench_frontier: --checkpoint needs --num-heads and no --model")
        args.model = export(args)
    if args.fid_images:
        import torch
        torch.set_num_threads(args.threads or os.cpu_count() or 1)
    log = open(os.path.join(args.work, "commands.log"), "a")
    meta = dict(command=recorded_command(sys.argv), model=args.name,
                model_file=recorded_path(args.checkpoint or args.model) or "built-in",
                sampler=args.sampler, steps=args.steps, cfg_scale=args.cfg_scale, images=args.images,
                judge_samples=args.judge_samples, calib_seed=args.calib_seed,
                machine=f"{platform.machine()}, {os.cpu_count()} cores")
    if args.checkpoint:
        meta["family"] = args.family
    if args.fid_images:
        meta.update(fid_images=args.fid_images, fid_seed=args.fid_seed,
                    classifier=recorded_path(os.path.abspath(args.classifier)))

    def save(rows):
        doc = dict(meta=meta, rows=rows)
        with open(args.out + ".tmp", "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(args.out + ".tmp", args.out)
        if args.markdown:
            with open(args.markdown + ".tmp", "w") as f:
                f.write(markdown(doc))
            os.replace(args.markdown + ".tmp", args.markdown)

    Bench(args, log).rows(save)


if __name__ == "__main__":
    main()

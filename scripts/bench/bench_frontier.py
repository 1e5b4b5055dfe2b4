#!/usr/bin/env python3
"""Quality-per-compute frontier: at computed fractions from about 0.6 down to 0.2, how close each
caching method stays to the uncached images of the same held-out seeds, and what it costs.

Methods (one line each): plain FORA (`fora:N`, N = 2, 3, 4, 7: 55, 40, 30, 20% computed at 20 steps), TaylorSeer's forecast of
order 1..4 on the same schedules, EOC (`eoc calibrate --cache fora:N`, defaults), the paper's
masks with EOC, and budget-searched EOC (`eoc calibrate --budget F`). Priors are calibrated on
other seeds than the evaluated ones. Per point: the computed fraction of branch computations,
the estimated FLOPs fraction (the run report's `estimated_flops_saved`), MSE and PSNR against
the uncached images on the [-1, 1] scale (the mean over images, and the median of the images'
own MSEs: on a model whose few diverging images dominate the mean, the median shows the typical
image), and the time ratio: the sampling phase's CPU seconds
(user + sys, `timings_s.sample_cpu`) over the uncached run's, one run each (a rough figure;
docs/BENCHMARKS.md's timing tables are the measured ones).

    scripts/bench/bench_frontier.py --eoc build/eoc --name fmnist-dit-s4 \\
        --out docs/benchmarks/frontier_fmnist-dit-s4.json \\
        --markdown docs/benchmarks/frontier_fmnist-dit-s4.md
    scripts/bench/bench_frontier.py ... --checkpoint third_party/models/fmnist-dit-p2d16.pt --num-heads 4
    scripts/bench/plot_frontier.py docs/benchmarks/frontier_*.json -o docs/benchmarks/frontier.png
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys

import numpy as np

from bench_common import REPO, recorded_command, recorded_path, run_checked, scratch_dir

FORA = [2, 3, 4, 7]
BUDGETS = [0.55, 0.5, 0.4, 0.3, 0.25, 0.2]
MASKS = {f"paper-{p}%": os.path.join(REPO, "configs", "cache", f"eoc-ddim20-{p}.json") for p in (50, 75)}


def run(cmd, log):
    return run_checked("bench_frontier", cmd, log=log)


class Bench:
    def __init__(self, args, log):
        self.args, self.log, self.work = args, log, args.work
        self.model = ["--model", args.model] if args.model else []
        self.common = [*self.model, "--sampler", args.sampler, "--steps", str(args.steps),
                       "--cfg-scale", str(args.cfg_scale), "--threads", str(args.threads)]
        self.base = None

    def sample(self, tag, extra):
        raw, report = (os.path.join(self.work, f"{tag}.{e}") for e in ("npy", "json"))
        if not (os.path.exists(raw) and os.path.exists(report)):  # else kept from an earlier run in --work
            run([self.args.eoc, "-q", "sample", *self.common, "--num-samples", str(self.args.images),
                 "--batch-size", str(self.args.batch_size), "--seed", "0", *extra,
                 "--out-raw", raw, "--report", report], self.log)
        with open(report) as f:
            rep = json.load(f)
        return np.load(raw).astype(np.float64), rep

    def calibrate(self, tag, extra):
        prior = os.path.join(self.work, f"prior-{tag}.json")
        if not os.path.exists(prior):
            run([self.args.eoc, "-q", "calibrate", *self.common, "--seed", str(self.args.calib_seed),
                 "--judge-samples", str(self.args.judge_samples), *extra, "--out", prior], self.log)
        with open(prior) as f:
            cal = json.load(f)["calibration"]
        return prior, cal

    def point(self, method, schedule, extra, calibration=None):
        imgs, rep = self.sample(f"{method}-{schedule}".replace(":", "").replace("%", ""), extra)
        stats = rep["cache_stats"]
        per_image = np.mean((imgs - self.base) ** 2, axis=tuple(range(1, imgs.ndim)))
        mse = float(np.mean(per_image))
        row = dict(method=method, schedule=schedule, computed=1.0 - stats["caching_level"],
                   flops=1.0 - stats["estimated_flops_saved"], mse=mse,
                   mse_median=float(np.median(per_image)),
                   psnr=10 * math.log10(4.0 / mse) if mse > 0 else math.inf,
                   time_ratio=rep["timings_s"]["sample_cpu"] / self.base_cpu)
        if calibration is not None:
            row["calibration_s"] = calibration["seconds"]
            cost = calibration.get("cost")
            if cost:
                row["calibration_multiple"] = cost["multiple_of_uncached_judge_sampling"]
        print(f"{method:14s} {schedule:12s} computed {row['computed']:.3f} mse {mse:.3e} "
              f"time {row['time_ratio']:.3f}", file=sys.stderr)
        return row

    def rows(self, save):
        a = self.args
        self.base, rep = self.sample("uncached", ["--cache", "none"])
        self.base_cpu = rep["timings_s"]["sample_cpu"]
        rows = []

        def add(row):
            rows.append(row)
            save(rows)

        fora = [n for n in a.fora if n < a.steps]
        for n in fora:
            s = f"fora:{n}"
            add(self.point("fora", s, ["--cache", s, "--correct", "none"]))
            for o in range(1, 5):
                add(self.point(f"taylor:{o}", s, ["--cache", s, "--correct", f"taylor:{o}"]))
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
        return rows


def markdown(doc):
    m = doc["meta"]
    rows = doc["rows"]
    methods = []
    for r in rows:
        if r["method"] not in methods:
            methods.append(r["method"])
    out = [f"Command: `{m['command']}`  ",
           f"Model: {m['model']}; {m['sampler']}-{m['steps']}, cfg {m['cfg_scale']}; {m['images']} images "
           f"(seed 0) against their uncached samples; priors from {m['judge_samples']} judge images "
           f"of seed {m['calib_seed']}. Machine: {m['machine']}.", ""]
    fractions = sorted({round(r["computed"], 3) for r in rows}, reverse=True)
    for key, title in (("mse", "MSE vs uncached (mean over images)"),
                       ("mse_median", "Median over images of each image's MSE vs uncached")):
        out += [f"{title} at each computed fraction (lower is better; bold: the lowest at that fraction):", "",
                "| computed | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for fr in fractions:
            at = {r["method"]: r for r in rows if round(r["computed"], 3) == fr}
            best = min(r[key] for r in at.values())
            cells = []
            for meth in methods:
                r = at.get(meth)
                if r is None:
                    cells.append("")
                else:
                    cell = f"{r[key]:.3e}"
                    cells.append(f"**{cell}**" if r[key] == best else cell)
            out.append(f"| {100 * fr:.0f}% | " + " | ".join(cells) + " |")
        out.append("")
    out += ["Every point:", "",
            "| method | schedule | computed | FLOPs fraction | MSE vs uncached | median image MSE | PSNR (dB) | CPU time ratio | calibration |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cal = ""
        if "calibration_multiple" in r:
            cal = f"{r['calibration_multiple']:.0f}x uncached judge sampling"
        out.append(f"| {r['method']} | {r['schedule']} | {100 * r['computed']:.1f}% | {r['flops']:.3f} | "
                   f"{r['mse']:.3e} | {r['mse_median']:.3e} | {r['psnr']:.2f} | {r['time_ratio']:.3f} | {cal} |")
    return "\n".join(out) + "\n"


def export(args):
    """The TorchScript of --checkpoint, exported into the work folder."""
    ts = os.path.join(args.work, os.path.splitext(os.path.basename(args.checkpoint))[0] + ".ts")
    run([sys.executable, os.path.join(REPO, "scripts", "tools", "export_dit.py"), args.checkpoint,
         "-o", ts, "--num-heads", str(args.num_heads)], None)
    return ts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eoc", default=os.path.join(REPO, "build", "eoc"))
    ap.add_argument("--name", required=True, help="the model's name in the results")
    ap.add_argument("--model", default="", help="TorchScript model (default: the built-in one)")
    ap.add_argument("--checkpoint", default="", help="official-layout checkpoint, exported first")
    ap.add_argument("--num-heads", type=int, default=0, help="with --checkpoint")
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
    ap.add_argument("--no-masks", dest="masks", action="store_false", help="leave out the paper's masks")
    ap.add_argument("--work", default="", help="keep samples and priors here (default: a temporary folder)")
    ap.add_argument("--out", required=True, help="JSON results")
    ap.add_argument("--markdown", help="also write the tables here")
    args = ap.parse_args()
    args.fora = [int(n) for n in args.fora.split(",") if n]
    args.budgets = [float(f) for f in args.budgets.split(",") if f]
    args.work = args.work or scratch_dir("bench_frontier_")
    os.makedirs(args.work, exist_ok=True)
    if args.checkpoint:
        if args.model or not args.num_heads:
            sys.exit("bench_frontier: --checkpoint needs --num-heads and no --model")
        args.model = export(args)
    log = open(os.path.join(args.work, "commands.log"), "a")
    meta = dict(command=recorded_command(sys.argv), model=args.name,
                model_file=recorded_path(args.checkpoint or args.model) or "built-in",
                sampler=args.sampler, steps=args.steps, cfg_scale=args.cfg_scale, images=args.images,
                judge_samples=args.judge_samples, calib_seed=args.calib_seed,
                machine=f"{platform.machine()}, {os.cpu_count()} cores")

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

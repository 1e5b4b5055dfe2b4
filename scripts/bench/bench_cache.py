#!/usr/bin/env python3
"""Cache benchmark: speed and paired quality of every cache schedule x corrector, on one machine.

For each sampler setting the uncached images are sampled once (timed `--repeats` times); every
cached variant samples the same seeds and is compared with them (MSE, PSNR on the [-1, 1] scale;
"gain" = how much lower its MSE is than plain caching with the same schedule). EOC priors are
calibrated on OTHER seeds (`--calib-seed`) than the evaluated ones. Wall times are the sampling
phase of `eoc sample --report` (model loading excluded), medians of the repeats, reported as
ratios to the uncached median measured in the same run.

    scripts/bench/bench_cache.py --samplers ddim20 \\
        --out docs/benchmarks/cache_quality_fmnist_ddim20.json [--markdown ....md]
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np

from bench_common import REPO, recorded_command, run_checked, scratch_dir

SAMPLERS = {
    "ddim20": ["--sampler", "ddim", "--steps", "20"],
    "ddpm50": ["--sampler", "ddpm", "--steps", "50"],
}
MASKS = {f"paper-{p}%": f"mask:{REPO}/configs/cache/eoc-ddim20-{p}.json" for p in (25, 50, 75)}
FORMS = ["scale", "extrapolate", "taylor"]


def run(cmd, log):
    return run_checked("bench_cache", cmd, log=log)


def sample(args, common, extra, work, tag, repeats, log):
    """Samples the evaluation images; returns (images, [sampling seconds per repeat], report)."""
    raw, report = os.path.join(work, f"{tag}.npy"), os.path.join(work, f"{tag}.json")
    seconds = []
    for _ in range(repeats):
        run([args.eoc, "-q", "sample", *common, *extra, "--out-raw", raw, "--report", report], log)
        with open(report) as f:
            rep = json.load(f)
        seconds.append(rep["timings_s"]["sample"])
    return np.load(raw), seconds, rep


def calibrate(args, common, cache, form, work, tag, log):
    prior = os.path.join(work, f"prior-{tag}-{form}.json")
    if not os.path.exists(prior):
        started = time.time()
        run([args.eoc, "-q", "calibrate", *common, "--cache", cache, "--eoc-form", form,
             "--num-samples", str(args.calib_samples), "--judge-samples", str(args.judge_samples),
             "--seed", str(args.calib_seed), "--out", prior], log)
        log.write(f"calibration {tag} {form}: {time.time() - started:.1f} s\n")
    return prior


def schedules_for(sampler):
    out = {f"fora:{n}": f"fora:{n}" for n in (2, 3, 4)}
    if sampler == "ddim20":
        out.update(MASKS)
    return out


def bench(args, save):
    """Runs the matrix; `save(rows)` after every row, so a run cut short keeps what it measured."""
    os.makedirs(args.work, exist_ok=True)
    log = open(os.path.join(args.work, "commands.log"), "a")
    rows = []
    for sname in args.samplers.split(","):
        calib_common = [*SAMPLERS[sname], "--cfg-scale", str(args.cfg_scale), "--device", args.device,
                        "--batch-size", str(args.batch_size)]
        if args.model:
            calib_common += ["--model", args.model]
        common = calib_common + ["--num-samples", str(args.images), "--seed", "0"]
        base, base_s, _ = sample(args, common, [], args.work, f"{sname}-uncached", args.repeats, log)
        base_t = statistics.median(base_s)
        rows.append(dict(sampler=sname, schedule="none", corrector="-", level=0.0, time_ratio=1.0,
                         seconds=base_t, mse=0.0, psnr=math.inf, gain=None))
        available = schedules_for(sname)
        chosen = [l for l in args.schedules.split(",") if l in available] if args.schedules else list(available)
        for label in chosen:  # in the order given
            cache = available[label]
            plain_mse = None
            variants = [("none", ["--correct", "none"]), ("taylor", ["--correct", "taylor"])]
            variants += [(f"taylor:{o}", ["--correct", f"taylor:{o}"])
                         for o in args.taylor_orders.split(",") if o]
            for form in [f for f in args.forms.split(",") if f]:
                prior = calibrate(args, calib_common, cache, form, args.work, f"{sname}-{label.replace(':', '')}", log)
                variants.append((f"eoc-{form}", ["--prior", prior]))
            for corr, extra in variants:
                reps = args.repeats if corr in args.timed.split(",") else 1
                imgs, secs, rep = sample(args, common, ["--cache", cache, *extra], args.work,
                                         f"{sname}-{label.replace(':', '')}-{corr}", reps, log)
                mse = float(np.mean((imgs.astype(np.float64) - base) ** 2))
                if corr == "none":
                    plain_mse = mse
                t = statistics.median(secs)
                rows.append(dict(sampler=sname, schedule=label, corrector=corr,
                                 level=rep["cache_stats"]["caching_level"], time_ratio=t / base_t,
                                 seconds=t, timed_runs=reps, mse=mse,
                                 psnr=10 * math.log10(4.0 / mse) if mse > 0 else math.inf,
                                 gain=(1 - mse / plain_mse) if plain_mse else None))
                if "--prior" in extra:  # the prior records how long its calibration took
                    with open(extra[extra.index("--prior") + 1]) as f:
                        rows[-1]["calibration_s"] = json.load(f)["calibration"]["seconds"]
                save(rows)
                print(f"{sname:7s} {label:12s} {corr:16s} time {t / base_t:5.3f}  mse {mse:.3e}  "
                      f"gain {rows[-1]['gain'] if rows[-1]['gain'] is not None else float('nan'):+.3f}",
                      file=sys.stderr)
    return rows


def markdown(rows, meta):
    out = [f"Command: `{meta['command']}`  ",
           f"Machine: {meta['machine']}; device {meta['device']}; {meta['images']} images "
           f"(seed 0), priors from {meta['calib_samples']} calibration samples (seed "
           f"{meta['calib_seed']}, {meta['judge_samples']} of them judged); cfg {meta['cfg_scale']}; "
           f"time = median of {meta['repeats']} runs for the correctors {meta['timed']}, one run "
           f"otherwise; ratio to the uncached median of the same run.", "",
           "| sampler | schedule | reused | corrector | time ratio | MSE vs uncached | PSNR (dB) | gain vs plain |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gain = "" if r["gain"] is None else f"{100 * r['gain']:+.1f}%"
        psnr = "inf" if math.isinf(r["psnr"]) else f"{r['psnr']:.2f}"
        out.append(f"| {r['sampler']} | {r['schedule']} | {100 * r['level']:.0f}% | {r['corrector']} | "
                   f"{r['time_ratio']:.3f} | {r['mse']:.3e} | {psnr} | {gain} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eoc", default=os.path.join(REPO, "build", "eoc"))
    ap.add_argument("--model", default="")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--samplers", default="ddim20,ddpm50")
    ap.add_argument("--schedules", default="",
                    help="only these schedule labels (e.g. fora:3,paper-50%%); default all")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--cfg-scale", type=float, default=1.5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timed", default="none,taylor,eoc-taylor",
                    help="correctors timed --repeats times (others once)")
    ap.add_argument("--forms", default=",".join(FORMS),
                    help="EOC forms to calibrate and evaluate ('' = none: plain and taylor only)")
    ap.add_argument("--taylor-orders", default="",
                    help="TaylorSeer orders to evaluate besides taylor (= taylor:1), e.g. 2,3,4")
    ap.add_argument("--calib-samples", type=int, default=48)
    ap.add_argument("--judge-samples", type=int, default=16)
    ap.add_argument("--calib-seed", type=int, default=1000)
    ap.add_argument("--work", default="",
                    help="keep samples, priors and commands.log here; priors already there are "
                         "reused (default: a scratch folder removed at exit)")
    ap.add_argument("--out", required=True, help="JSON results")
    ap.add_argument("--markdown", help="also write the table here")
    args = ap.parse_args()
    if not args.work:
        args.work = scratch_dir("eoc-bench-cache-")
    meta = dict(command=recorded_command(sys.argv),
                machine=f"{os.uname().nodename} ({os.cpu_count()} cpus)", device=args.device,
                images=args.images, calib_samples=args.calib_samples, calib_seed=args.calib_seed,
                judge_samples=args.judge_samples, cfg_scale=args.cfg_scale, repeats=args.repeats,
                timed=args.timed)

    def save(rows):
        with open(args.out + ".tmp", "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1, default=str)
        os.replace(args.out + ".tmp", args.out)
        if args.markdown:
            with open(args.markdown + ".tmp", "w") as f:
                f.write(markdown(rows, meta))
            os.replace(args.markdown + ".tmp", args.markdown)

    save(bench(args, save))


if __name__ == "__main__":
    main()

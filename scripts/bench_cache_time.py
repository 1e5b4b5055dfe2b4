#!/usr/bin/env python3
"""Cache timing benchmark, interleaved: wall-time ratios of cached sampling against uncached
and against plain caching, robust to a machine whose speed drifts while it runs.

Each round runs every variant once (uncached, plain FORA, taylor, and EOC with the prior), in
an order rotated from round to round. A variant's ratio is the median over rounds of its time
divided by the same round's uncached (or plain) time, so a slow spell hits numerator and
denominator alike. Times are the sampling phase of `eoc sample --report` (loading excluded).
Without --prior, one is calibrated first (eoc calibrate defaults: 48 samples of seed 1000).

    bench_cache_time.py --eoc build/eoc --cache fora:3 --images 32 --rounds 9 \\
        --out docs/bench_cache_time.json --markdown docs/bench_cache_time.md
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def run(cmd):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench_cache_time: command failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")


def sample_seconds(args, common, extra, work):
    report = os.path.join(work, "report.json")
    run([args.eoc, "-q", "sample", *common, *extra, "--out-raw", os.path.join(work, "x.npy"),
         "--report", report])
    with open(report) as f:
        return json.load(f)["timings_s"]["sample"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eoc", default=os.path.join(REPO, "build", "eoc"))
    ap.add_argument("--model", default="")
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg-scale", type=float, default=1.5)
    ap.add_argument("--cache", default="fora:3")
    ap.add_argument("--prior", default="", help="EOC prior for --cache (default: calibrate one)")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="eoc-bench-time-")
    common = ["--sampler", args.sampler, "--steps", str(args.steps), "--cfg-scale", str(args.cfg_scale),
              "--batch-size", str(args.batch_size)] + (["--model", args.model] if args.model else [])
    prior = args.prior
    if not prior:
        prior = os.path.join(work, "prior.json")
        run([args.eoc, "-q", "calibrate", *common, "--cache", args.cache, "--out", prior])
    sample = common + ["--num-samples", str(args.images), "--seed", "0"]
    variants = {"uncached": [], "plain": ["--cache", args.cache],
                "taylor": ["--cache", args.cache, "--correct", "taylor"],
                "eoc": ["--cache", args.cache, "--prior", prior]}
    names = list(variants)
    times = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            times[n].append(sample_seconds(args, sample, variants[n], work))
        print(f"round {r + 1}/{args.rounds}: " +
              ", ".join(f"{n} {times[n][-1]:.2f} s" for n in names), file=sys.stderr)

    def ratio(n, base):
        return statistics.median(a / b for a, b in zip(times[n], times[base]))

    rows = [dict(variant=n, median_s=statistics.median(times[n]), times_s=times[n],
                 vs_uncached=ratio(n, "uncached"), vs_plain=ratio(n, "plain")) for n in names]
    meta = dict(command=" ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
                machine=f"{os.uname().nodename} ({os.cpu_count()} cpus)", rounds=args.rounds,
                images=args.images, cache=args.cache, sampler=f"{args.sampler}-{args.steps}",
                cfg_scale=args.cfg_scale, prior=os.path.basename(prior))
    with open(args.out, "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)
    if args.markdown:
        lines = [f"Command: `{meta['command']}`  ",
                 f"Machine: {meta['machine']}; {meta['sampler']}, cfg {args.cfg_scale}, {args.images} "
                 f"images, cache {args.cache}; {args.rounds} interleaved rounds; ratios are medians "
                 "of per-round ratios.", "",
                 "| variant | median time (s) | vs uncached | vs plain FORA |", "|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['variant']} | {r['median_s']:.2f} | {r['vs_uncached']:.3f} | "
                         f"{100 * (r['vs_plain'] - 1):+.1f}% |")
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

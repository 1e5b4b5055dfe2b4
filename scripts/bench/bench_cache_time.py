#!/usr/bin/env python3
"""Cache timing benchmark, interleaved: time ratios of cached sampling against uncached and
against plain caching, robust to a machine whose speed drifts while it runs.

Each round runs every variant once (uncached, plain FORA, taylor, and EOC with the prior; or
the --variants named, which may include TaylorSeer's orders taylor:2 .. taylor:4), in an order
rotated from round to round. A variant's ratio is the median over rounds of its time divided by
the same round's uncached (or plain) time, so a slow spell hits numerator and denominator alike.
Times are the sampling phase of `eoc sample --report` (loading excluded), wall seconds and,
with --cpu, CPU seconds of all threads (timings_s.sample_cpu), the steadier measure here.
Without --prior, one is calibrated first (eoc calibrate defaults: 48 samples of seed 1000).

With --warm-up-batch every run samples one batch more, first, and two timings come from the
report's per-batch times: "first batch" (the batch a fresh process starts with, which pays
once for TorchScript's first runs and for first touching the run's memory) and "steady" (the
--images after it, as in a long run).

    scripts/bench/bench_cache_time.py --cache fora:3 --images 32 --batch-size 16 --rounds 20 \\
        --out docs/benchmarks/cache_time_fresh_32img_b16.json \\
        --markdown docs/benchmarks/cache_time_fresh_32img_b16.md
"""
import argparse
import json
import os
import statistics
import sys

from bench_common import (REPO, first_and_later_batches, read_timings, recorded_command,
                          run_checked, scratch_dir)


def run(cmd):
    run_checked("bench_cache_time", cmd)


def sample_seconds(args, common, extra, work):
    """-> ({phase: seconds}, computed fraction, {phase: the gate's own share}): phases "sample"
    (the whole sampling phase), or with --warm-up-batch "first batch" and "steady" (the batches
    after it), and with --cpu the same in CPU seconds. The gate's share is the CPU seconds a gated
    run's report says its gate took (cache_stats.gate.own_cpu_s) over the phase's CPU seconds;
    empty for an ungated run."""
    report = os.path.join(work, "report.json")
    run([args.eoc, "-q", "sample", *common, *extra, "--out-raw", os.path.join(work, "x.npy"),
         "--report", report])
    timings = read_timings(report)
    with open(report) as f:
        stats = json.load(f).get("cache_stats") or {}
    computed = 1.0 - stats.get("caching_level", 0.0)
    gate = (stats.get("gate") or {}).get("own_cpu_s")
    if not args.warm_up_batch:
        out = {"sample": timings["sample"]}
        if args.cpu:
            out["sample cpu"] = timings["sample_cpu"]
        share = gate["total"] / timings["sample_cpu"] if gate else None
        return out, computed, {p: share for p in out} if gate else {}
    first, later = first_and_later_batches(timings)
    out = {"first batch": first, "steady": later}
    first_cpu, later_cpu = first_and_later_batches(timings, "batches_cpu")
    if args.cpu:
        out.update({"first batch cpu": first_cpu, "steady cpu": later_cpu})
    if not gate:
        return out, computed, {}
    shares = {"first batch": gate["batches"][0] / first_cpu,
              "steady": sum(gate["batches"][1:]) / later_cpu}
    return out, computed, {p: shares[p.removesuffix(" cpu")] for p in out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eoc", default=os.path.join(REPO, "build", "eoc"))
    ap.add_argument("--model", default="")
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg-scale", type=float, default=1.5)
    ap.add_argument("--cache", default="fora:3")
    ap.add_argument("--prior", default="", help="EOC prior for --cache (default: calibrate one)")
    ap.add_argument("--threads", type=int, default=0, help="eoc --threads (0: its default)")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--variants", default="uncached,plain,taylor,eoc",
                    help="which of uncached, plain, taylor, taylor:2..taylor:4, eoc to run "
                         "(plain is needed)")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=FLAGS",
                    help="one more variant: NAME run with these sample flags (e.g. "
                         "'tea40=--prior gate.json', 'gate0=--cache teacache:0'); repeatable")
    ap.add_argument("--cpu", action="store_true",
                    help="also time CPU seconds (of the sampling phase, or of its batches)")
    ap.add_argument("--warm-up-batch", action="store_true",
                    help="sample one batch more first; time it and the rest apart")
    ap.add_argument("--gate-check", action="append", default=[], metavar="GATED[=ZERO]",
                    help="check a gated variant's time ratio against its computed fraction plus "
                         "the gate's own overhead, the CPU time its report says the gate took "
                         "(relative to the uncached run of the round); with =ZERO also show the "
                         "ratio - 1 of variant ZERO (the gate at threshold 0, which computes "
                         "everything): e.g. 'tea40=teacache:0'; repeatable")
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown")
    args = ap.parse_args()
    chosen = args.variants.split(",")
    orders = [f"taylor:{o}" for o in range(2, 5)]
    if "plain" not in chosen or not set(chosen) <= {"uncached", "plain", "taylor", "eoc", *orders}:
        sys.exit(f"bench_cache_time: --variants {args.variants}: expected plain and any of "
                 "uncached, taylor, taylor:2..taylor:4, eoc")
    work = scratch_dir("eoc-bench-time-")
    common = ["--sampler", args.sampler, "--steps", str(args.steps), "--cfg-scale", str(args.cfg_scale),
              "--batch-size", str(args.batch_size)] + (["--model", args.model] if args.model else []) \
        + (["--threads", str(args.threads)] if args.threads else [])
    prior = args.prior
    if not prior and "eoc" in chosen:
        prior = os.path.join(work, "prior.json")
        run([args.eoc, "-q", "calibrate", *common, "--cache", args.cache, "--out", prior])
    total = args.images + (args.batch_size if args.warm_up_batch else 0)
    sample = common + ["--num-samples", str(total), "--seed", "0"]
    variants = {"uncached": [], "plain": ["--cache", args.cache],
                "taylor": ["--cache", args.cache, "--correct", "taylor"],
                **{o: ["--cache", args.cache, "--correct", o] for o in orders},
                "eoc": ["--cache", args.cache, "--prior", prior]}
    for item in args.extra:
        name, sep, flags = item.partition("=")
        if not sep or not name or name in variants:
            sys.exit(f"bench_cache_time: --extra '{item}': expected a new NAME=FLAGS")
        variants[name] = flags.split()
        chosen.append(name)
    names = [n for n in variants if n in chosen]
    checks = []
    for item in args.gate_check:
        gated, sep, zero = item.partition("=")
        if gated not in names or (sep and zero not in names) or "uncached" not in names:
            sys.exit(f"bench_cache_time: --gate-check '{item}': expected GATED or GATED=ZERO, "
                     "variants run here, with uncached among the variants")
        checks.append((gated, zero or None))
    times = {n: [] for n in names}  # per round: {phase: seconds}
    shares = {n: [] for n in names}  # per round: {phase: the gate's own share of the time}
    computed = {}  # the fraction of branches computed (the same in every round)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            seconds, computed[n], share = sample_seconds(args, sample, variants[n], work)
            times[n].append(seconds)
            shares[n].append(share)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} " + "/".join(f"{s:.2f}" for s in times[n][-1].values()) + " s" for n in names),
            file=sys.stderr)

    def ratio(n, base, phase):
        return statistics.median(a[phase] / b[phase] for a, b in zip(times[n], times[base]))

    rows = [dict(variant=n, phase=phase, median_s=statistics.median(t[phase] for t in times[n]),
                 times_s=[t[phase] for t in times[n]],
                 vs_uncached=ratio(n, "uncached", phase) if "uncached" in names else None,
                 vs_plain=ratio(n, "plain", phase), computed=computed[n],
                 gate_share=[s[phase] for s in shares[n]] if shares[n][0] else None)
            for phase in times[names[0]][0] for n in names]
    # The bar of a gated run: its time ratio against uncached within 10% of what its computed
    # fraction and the gate's own cost predict. That cost is what the run's report says its gate
    # took (per round: its share of the gated run's time x the gated run's ratio, i.e. relative
    # to the uncached run), measured in the same process; the threshold-0 run's ratio - 1, the
    # other estimate, is shown beside it and is as noisy as two runs' ratio.
    gate_checks = []
    for gated, zero in checks:
        for phase in times[names[0]][0]:
            if not shares[gated][0]:
                sys.exit(f"bench_cache_time: --gate-check: {gated} ran without a gate")
            overhead = statistics.median(
                s[phase] * a[phase] / b[phase]
                for s, a, b in zip(shares[gated], times[gated], times["uncached"]))
            expected = computed[gated] + overhead
            measured = ratio(gated, "uncached", phase)
            gate_checks.append(dict(variant=gated, zero=zero, phase=phase,
                                    computed=computed[gated], overhead=overhead,
                                    overhead_zero=ratio(zero, "uncached", phase) - 1.0
                                    if zero else None,
                                    expected=expected, measured=measured,
                                    off=measured / expected - 1.0,
                                    within_10pct=abs(measured / expected - 1.0) <= 0.10))
    meta = dict(command=recorded_command(sys.argv),
                machine=f"{os.uname().nodename} ({os.cpu_count()} cpus)", rounds=args.rounds,
                images=args.images, batch_size=args.batch_size, warm_up_batch=args.warm_up_batch,
                cache=args.cache, sampler=f"{args.sampler}-{args.steps}",
                cfg_scale=args.cfg_scale, prior=os.path.basename(prior) if prior else None)
    with open(args.out, "w") as f:
        json.dump(dict(meta=meta, rows=rows, gate_checks=gate_checks), f, indent=1)
    if args.markdown:
        write_markdown(args.markdown, meta, rows, gate_checks)


def write_markdown(path, meta, rows, gate_checks=()):
    warm = (f"; every run samples one batch of {meta['batch_size']} first, timed apart"
            if meta["warm_up_batch"] else "")
    lines = [f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}; {meta['sampler']}, cfg {meta['cfg_scale']}, "
             f"{meta['images']} images, cache {meta['cache']}; {meta['rounds']} interleaved "
             f"rounds{warm}; ratios are medians of per-round ratios.", "",
             "| timed | variant | computed | median time (s) | vs uncached | vs plain FORA |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        vs_uncached = "" if r["vs_uncached"] is None else f"{r['vs_uncached']:.3f}"
        lines.append(f"| {r['phase']} | {r['variant']} | {r['computed']:.3f} | "
                     f"{r['median_s']:.2f} | {vs_uncached} | {100 * (r['vs_plain'] - 1):+.1f}% |")
    if gate_checks:
        lines += ["", "Gated runs: time ratio against uncached beside computed fraction + the "
                  "gate's own overhead (the CPU time its report says the gate took, relative to "
                  "the uncached run; beside it the threshold-0 run's ratio - 1 where one ran); "
                  "the bar is 10%.", "",
                  "| timed | gated | computed | gate's own | threshold-0 run | expected | measured "
                  "| off | within 10% |", "|---|---|---|---|---|---|---|---|---|"]
        for c in gate_checks:
            zero = (f"{100 * c['overhead_zero']:+.1f}% ({c['zero']})"
                    if c["zero"] else "")
            lines.append(f"| {c['phase']} | {c['variant']} | {c['computed']:.3f} | "
                         f"{100 * c['overhead']:+.1f}% | {zero} | {c['expected']:.3f} | "
                         f"{c['measured']:.3f} | {100 * c['off']:+.1f}% | "
                         f"{'yes' if c['within_10pct'] else 'no'} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Interleaved A/B of CPU runtime settings: `eoc sample` under environment variants (or
binaries: the pseudo-variable EOC=PATH runs that build instead of --eoc; or flags: ARGS=FLAGS
adds them to the command line).

Each round runs every (cache setting, environment variant) pair once, in an order rotated from
round to round, and records the sampling time from the run report and the minor page faults of
the process (getrusage of the children). Medians per pair; ratios are medians of per-round
ratios against the first variant, so a slow spell of the machine hits both sides.

  scripts/bench/bench_runtime.py --variant "4k pages=GLIBC_TUNABLES=glibc.malloc.hugetlb=0" \\
      --variant "huge pages=GLIBC_TUNABLES=glibc.malloc.hugetlb=1" --out hugepages.json
  scripts/bench/bench_runtime.py --variant "before=EOC=build-old/eoc" --variant "after=" --out ab.json
  scripts/bench/bench_runtime.py --variant "hook=" --variant "forward=ARGS=--whole-forward" --caches none \
      --out hook.json
"""
import argparse
import json
import os
import resource
import shlex
import statistics
import sys

from bench_common import (REPO, first_and_later_batches, read_timings, recorded_command,
                          recorded_path, run_checked, scratch_dir)


def parse_variant(text):
    """'name=VAR=value,VAR2=value2' -> (name, {VAR: value}); 'name=' means no change."""
    name, _, assignments = text.partition("=")
    env = {}
    for item in filter(None, assignments.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"bench_runtime: --variant '{text}': expected name=VAR=value[,VAR=value]")
        env[key] = value
    if "EOC" in env and not os.access(env["EOC"], os.X_OK):
        sys.exit(f"bench_runtime: --variant '{text}': EOC={env['EOC']} is not an executable file")
    return name, env


def timed_run(cmd, env, report, steady):
    env = dict(env)
    if "EOC" in env:
        cmd = [env.pop("EOC")] + cmd[1:]
    if "ARGS" in env:
        cmd = cmd + shlex.split(env.pop("ARGS"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    run_checked("bench_runtime", cmd, env={**os.environ, **env})
    faults = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before
    timings = read_timings(report)
    return (first_and_later_batches(timings)[1] if steady else timings["sample"]), faults


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eoc", default=os.path.join(REPO, "build", "eoc"))
    ap.add_argument("--variant", action="append", required=True,
                    help="name=VAR=value[,VAR=value] (repeat; the first is the baseline); "
                         "EOC=PATH runs that eoc binary, ARGS=FLAGS adds flags")
    ap.add_argument("--caches", default="none,fora:3,fora:3/taylor",
                    help="comma list of SPEC or SPEC/CORRECTOR")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--warm-up-batch", action="store_true",
                    help="sample one batch more, first, and time only the --images after it")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown")
    args = ap.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    caches = args.caches.split(",")
    work = scratch_dir("eoc-bench-runtime-")
    report = os.path.join(work, "report.json")
    base = [args.eoc, "-q", "sample", "--sampler", "ddim", "--steps", "20", "--cfg-scale", "1.5",
            "--num-samples", str(args.images + (args.batch_size if args.warm_up_batch else 0)),
            "--batch-size", str(args.batch_size), "--seed", "0",
            "--out-raw", os.path.join(work, "x.npy"), "--report", report]
    pairs = [(c, n) for c in caches for n, _ in variants]
    env_of = dict(variants)
    times = {p: [] for p in pairs}
    faults = {p: [] for p in pairs}
    for r in range(args.rounds):
        shift = r % len(pairs)
        for cache, name in pairs[shift:] + pairs[:shift]:
            spec, _, corrector = cache.partition("/")
            extra = [] if spec == "none" else ["--cache", spec]
            extra += ["--correct", corrector] if corrector else []
            t, f = timed_run(base + extra, env_of[name], report, args.warm_up_batch)
            times[(cache, name)].append(t)
            faults[(cache, name)].append(f)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{c} [{n}] {times[(c, n)][-1]:.2f} s" for c, n in pairs), file=sys.stderr)

    first = variants[0][0]
    rows = []
    for cache, name in pairs:
        ratios = [a / b for a, b in zip(times[(cache, name)], times[(cache, first)])]
        env = {k: recorded_path(v) if k == "EOC" else v for k, v in env_of[name].items()}
        rows.append(dict(cache=cache, variant=name, env=env,
                         median_s=statistics.median(times[(cache, name)]),
                         vs_first=statistics.median(ratios),
                         median_minor_faults=int(statistics.median(faults[(cache, name)])),
                         times_s=times[(cache, name)]))
    meta = dict(command=recorded_command(sys.argv),
                machine=f"{os.uname().nodename} ({os.cpu_count()} cpus)", rounds=args.rounds,
                images=args.images, batch_size=args.batch_size, warm_up_batch=args.warm_up_batch,
                sampler="ddim-20", cfg_scale=1.5)
    with open(args.out, "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)
    if args.markdown:
        lines = [f"Command: `{meta['command']}`  ",
                 f"Machine: {meta['machine']}; DDIM-20, cfg 1.5, {args.images} images in batches "
                 f"of {args.batch_size}"
                 + ("; timed after one warm-up batch per run" if args.warm_up_batch else "")
                 + f"; {args.rounds} interleaved rounds; medians.", "",
                 f"| cache | variant | median time (s) | vs {first} | minor page faults |",
                 "|---|---|---|---|---|"]
        lines += [f"| {r['cache']} | {r['variant']} | {r['median_s']:.2f} | {r['vs_first']:.3f} | "
                  f"{r['median_minor_faults']:,} |" for r in rows]
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

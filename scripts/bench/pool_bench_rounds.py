#!/usr/bin/env python3
"""Pools the per-round ratios of several bench_cache_time.py runs: for each (timed phase,
variant), the median over all rounds of the variant's time over the same round's plain time,
with a percentile bootstrap interval of that median (rounds resampled with replacement).

    scripts/bench/pool_bench_rounds.py docs/benchmarks/cache_time_fresh_32img_b16.json [MORE.json ...]
"""
import argparse
import json
import random
import statistics
import sys


def per_round_ratios(path):
    """-> {(phase, variant): [time / plain time, per round]} of one bench_cache_time.py JSON."""
    try:
        with open(path) as f:
            rows = json.load(f)["rows"]
        plain = {r["phase"]: r["times_s"] for r in rows if r["variant"] == "plain"}
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"pool_bench_rounds: cannot read {path}: {e}")
    if not plain:
        sys.exit(f"pool_bench_rounds: {path} has no plain rows (was it written by bench_cache_time.py?)")
    return {(r["phase"], r["variant"]): [a / b for a, b in zip(r["times_s"], plain[r["phase"]])]
            for r in rows if r["variant"] != "plain"}


def bootstrap_median(values, resamples, level, rng):
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    tail = (1 - level) / 2
    return medians[int(tail * resamples)], medians[min(resamples - 1, int((1 - tail) * resamples))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="JSON files written by bench_cache_time.py --out")
    ap.add_argument("--resamples", type=int, default=4000)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pooled = {}
    for path in args.runs:
        for key, ratios in per_round_ratios(path).items():
            pooled.setdefault(key, []).extend(ratios)
    rng = random.Random(args.seed)
    print(f"| timed | variant | rounds | median vs plain | {100 * args.level:.0f}% interval |")
    print("|---|---|---|---|---|")
    for (phase, variant), ratios in pooled.items():
        low, high = bootstrap_median(ratios, args.resamples, args.level, rng)
        print(f"| {phase} | {variant} | {len(ratios)} | {100 * (statistics.median(ratios) - 1):+.1f}% | "
              f"{100 * (low - 1):+.1f}% to {100 * (high - 1):+.1f}% |")


if __name__ == "__main__":
    main()

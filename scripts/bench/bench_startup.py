#!/usr/bin/env python3
"""Start-up benchmark: the wall time of whole `eoc` processes of two builds, interleaved pair by
pair (a slow spell of the machine hits both), for commands whose time is mostly start-up:
`eoc --version` and a 1-image, 2-step sample. Medians per build and command.

    scripts/bench/bench_startup.py --before build-old/eoc --after build/eoc --pairs 10 \\
        --out startup.json --markdown startup.md
"""
import argparse
import json
import os
import shlex
import statistics
import sys

from bench_common import REPO, recorded_command, recorded_path, run_checked, scratch_dir


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the eoc binary to compare against")
    ap.add_argument("--after", default=os.path.join(REPO, "build", "eoc"))
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown")
    args = ap.parse_args()
    work = scratch_dir("eoc-bench-startup-")
    commands = {"version": ["--version"],
                "sample": ["-q", "sample", "--num-samples", "1", "--steps", "2", "--out",
                           os.path.join(work, "x.png")]}
    builds = {"before": args.before, "after": args.after}
    ms = {(c, b): [] for c in commands for b in builds}
    for i in range(args.pairs):
        for c, flags in commands.items():
            for b, eoc in builds.items():
                ms[(c, b)].append(1000 * run_checked("bench_startup", [eoc, *flags]))
        print(f"pair {i + 1}/{args.pairs}", file=sys.stderr)

    def label(flags):
        return "eoc " + shlex.join(flags).replace(work + os.sep, "")

    rows = [dict(command=label(flags), build=b, median_ms=statistics.median(ms[(c, b)]),
                 ms=ms[(c, b)]) for c, flags in commands.items() for b in builds]
    meta = dict(command=recorded_command(sys.argv),
                machine=f"{os.uname().nodename} ({os.cpu_count()} cpus)", pairs=args.pairs,
                before=recorded_path(args.before), after=recorded_path(args.after))
    with open(args.out, "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)
    if args.markdown:
        lines = [f"Command: `{meta['command']}`  ",
                 f"Machine: {meta['machine']}; {args.pairs} interleaved pairs; wall time of the "
                 "whole process, medians.", "", "| command | build | median (ms) |", "|---|---|---|"]
        lines += [f"| `{r['command']}` | {r['build']} | {r['median_ms']:.0f} |" for r in rows]
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

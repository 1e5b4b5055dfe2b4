#!/usr/bin/env python3
"""Durability cost: `eoc sample --out-dir` writing one PNG per image with a build that fsyncs
every atomic write (each PNG before its rename; the folder once per batch, after the batch's
renames) against the same build with fsync turned into a no-op (an LD_PRELOAD shim compiled with
`cc` into the scratch folder), so that the difference is fsync alone; optionally also against an
earlier build (`--before`, e.g. one from before fsync was added).

Each round runs every variant once, in an order rotated from round to round (a slow spell of the
machine hits all). Each run gets a fresh output folder on the scratch file system (named in the
result: fsync costs depend on it) and records the process's wall time and CPU time (user +
system, getrusage of the children). Then `sync` writes back what the run left dirty, timed
separately: a build without fsync defers that work to the kernel rather than saving it.
Removing the folder and a `sync` before each run are not timed. Medians per variant; a per-image
cost is the median of the per-round differences divided by the image count, extrapolated
linearly to 50,000 images (FID-50K).

Sampling dominates those runs and the machine's speed drifts, so the script also replays the
write path alone: the PNGs of the last run written again into a fresh folder by Python, as eoc's
atomic writer does for --out-dir (temp name, write, rename), with and without its fsyncs (each
file before its rename; the folder once per --batch-size files), interleaved.

    scripts/bench/bench_fsync.py --after build/eoc --num-samples 50000 \\
        --rounds 3 --out durability_fsync.json --markdown durability_fsync.md
"""
import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench_common import REPO, recorded_command, recorded_path, run_checked, scratch_dir

FID_IMAGES = 50000
NO_FSYNC_SHIM = "int fsync(int fd) { (void)fd; return 0; }\nint fdatasync(int fd) { (void)fd; return 0; }\n"
AFTER_OFF = "after, fsync off"


def mount_of(path):
    """(file system type, device, mount point) of the mount holding path, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("?", "?", "/")
    with open("/proc/mounts") as f:
        for line in f:
            dev, point, fstype = line.split()[:3]
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best[2]):
                best = (fstype, dev, point)
    return best


def build_shim(work):
    """A shared library whose fsync and fdatasync do nothing, or None without a C compiler."""
    src, lib = os.path.join(work, "no_fsync.c"), os.path.join(work, "no_fsync.so")
    with open(src, "w") as f:
        f.write(NO_FSYNC_SHIM)
    try:
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", lib, src], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return lib


def timed_run(cmd, env):
    """-> (wall s, user s, system s) of one command, its children included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = run_checked("bench_fsync", cmd, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def sync_folder(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)
    os.close(fd)


def replay(blobs, dest, durable, batch):
    """Writes blobs [(name, bytes)] into the new folder dest as eoc's --out-dir does, with or
    without its fsyncs. -> (wall s, CPU s of this process, wall s of a `sync` after)."""
    os.makedirs(dest)
    os.sync()
    wall, cpu = time.time(), time.process_time()
    for i, (name, data) in enumerate(blobs):
        final = os.path.join(dest, name)
        tmp = f"{final}.tmp.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        os.write(fd, data)
        if durable:
            os.fsync(fd)
        os.close(fd)
        os.rename(tmp, final)
        if durable and ((i + 1) % batch == 0 or i + 1 == len(blobs)):
            sync_folder(dest)
    wall, cpu = time.time() - wall, time.process_time() - cpu
    started = time.time()
    os.sync()
    return wall, cpu, time.time() - started


def paired_per_image_ms(runs, a, b, keys, n):
    """Median over rounds of (a - b) / n, in ms, per key."""
    return {k: statistics.median(1000 * (x[k] - y[k]) / n for x, y in zip(runs[a], runs[b])) for k in keys}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", help="an earlier eoc to compare with (optional)")
    ap.add_argument("--after", default=os.path.join(REPO, "build", "eoc"), help="eoc with fsync")
    ap.add_argument("--num-samples", type=int, default=FID_IMAGES)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scratch", help="folder to write the images under (default: a temporary "
                    "folder; its file system is what is measured)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown")
    args = ap.parse_args()
    for name in ("before", "after") if args.before else ("after",):
        if not os.access(getattr(args, name), os.X_OK):
            sys.exit(f"bench_fsync: --{name} {getattr(args, name)} is not an executable file")
    if args.scratch:  # a folder of its own there, removed at exit like scratch_dir's
        os.makedirs(args.scratch, exist_ok=True)
        work = tempfile.mkdtemp(prefix="eoc-bench-fsync-", dir=args.scratch)
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    else:
        work = scratch_dir("eoc-bench-fsync-")
    flags = ["-q", "sample", "--steps", args.steps, "--num-samples", args.num_samples,
             "--batch-size", args.batch_size, "--threads", args.threads, "--cfg-scale", 1]
    shim = build_shim(work)
    if not shim:
        sys.exit("bench_fsync: needs a C compiler (cc) for the no-op fsync shim")
    variants = {"after": (args.after, {}), AFTER_OFF: (args.after, {"LD_PRELOAD": shim})}
    if args.before:
        variants["before"] = (args.before, {})
    images = os.path.join(work, "images")
    runs = {v: [] for v in variants}
    for r in range(args.rounds):
        names = list(variants)
        for v in names[r % len(names):] + names[:r % len(names)]:
            shutil.rmtree(images, ignore_errors=True)
            os.sync()
            eoc, extra = variants[v]
            wall, user, system = timed_run([eoc, *flags, "--out-dir", images], {**os.environ, **extra})
            started = time.time()
            os.sync()
            sync_s = time.time() - started
            pngs = sum(1 for n in os.listdir(images) if n.endswith(".png"))
            if pngs != args.num_samples:
                sys.exit(f"bench_fsync: {v} wrote {pngs} PNGs, expected {args.num_samples}")
            runs[v].append(dict(round=r + 1, wall_s=wall, user_s=user, sys_s=system, cpu_s=user + system,
                                sync_after_s=sync_s, wall_plus_sync_s=wall + sync_s))
            print(f"round {r + 1}/{args.rounds} {v}: wall {wall:.1f} s, cpu {user + system:.1f} s "
                  f"(sys {system:.1f}), sync after {sync_s:.2f} s", file=sys.stderr)

    blobs = [(name, open(os.path.join(images, name), "rb").read())
             for name in sorted(os.listdir(images)) if name.endswith(".png")]
    shutil.rmtree(images)
    writes = {"no fsync": [], "fsync": []}
    for r in range(args.rounds):
        for v in (list(writes) if r % 2 == 0 else list(reversed(writes))):
            dest = os.path.join(work, "replay")
            wall, cpu, sync_s = replay(blobs, dest, v == "fsync", args.batch_size)
            shutil.rmtree(dest)
            writes[v].append(dict(round=r + 1, wall_s=wall, cpu_s=cpu, sync_after_s=sync_s,
                                  wall_plus_sync_s=wall + sync_s))
            print(f"round {r + 1}/{args.rounds} replay, {v}: wall {wall:.2f} s, cpu {cpu:.2f} s, "
                  f"sync after {sync_s:.2f} s", file=sys.stderr)

    n = args.num_samples
    keys = ("wall_s", "cpu_s", "user_s", "sys_s", "sync_after_s", "wall_plus_sync_s")
    medians = {v: {k: statistics.median(x[k] for x in runs[v]) for k in keys} for v in variants}
    diff_keys = ("wall_s", "cpu_s", "sys_s", "wall_plus_sync_s")
    per_image = {"after - (after, fsync off)": paired_per_image_ms(runs, "after", AFTER_OFF, diff_keys, n)}
    if args.before:
        per_image["after - before"] = paired_per_image_ms(runs, "after", "before", diff_keys, n)
    replay_keys = ("wall_s", "cpu_s", "sync_after_s", "wall_plus_sync_s")
    replay_medians = {v: {k: statistics.median(x[k] for x in writes[v]) for k in replay_keys} for v in writes}
    replay_per_image = paired_per_image_ms(writes, "fsync", "no fsync", ("wall_s", "cpu_s", "wall_plus_sync_s"),
                                           len(blobs))
    fstype, device, point = mount_of(work)
    meta = dict(command=recorded_command(sys.argv), machine=f"{os.uname().nodename} ({os.cpu_count()} cpus)",
                file_system=f"{fstype} on {device} (mounted at {point})",
                eoc_flags=" ".join(map(str, flags)) + " --out-dir DIR", rounds=args.rounds, num_samples=n,
                before=recorded_path(args.before) if args.before else None, after=recorded_path(args.after), png_bytes_mean=sum(len(d) for _, d in blobs) / len(blobs))
    extrapolate = lambda d: {k: v * FID_IMAGES / 1000 for k, v in d.items()}  # noqa: E731
    result = dict(meta=meta, runs=runs, medians=medians, per_image_ms=per_image,
                  extrapolated_to_50000_images_s={k: extrapolate(d) for k, d in per_image.items()},
                  replay=dict(runs=writes, medians=replay_medians, fsync_minus_none_per_image_ms=replay_per_image,
                              extrapolated_to_50000_images_s=extrapolate(replay_per_image)))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    if not args.markdown:
        return
    m = medians
    lines = [f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}; images written to {meta['file_system']}; "
             f"`eoc {meta['eoc_flags']}`; {args.rounds} interleaved rounds, medians.", "",
             "| variant | binary | wall (s) | CPU (s) | of which system (s) | `sync` after (s) | wall + sync (s) |",
             "|---|---|---|---|---|---|---|"]
    for v, (eoc, extra) in variants.items():
        binary = f"`{recorded_path(eoc)}`" + (" with a no-op fsync (LD_PRELOAD)" if extra else "")
        lines.append(f"| {v} | {binary} | {m[v]['wall_s']:.1f} | {m[v]['cpu_s']:.1f} | {m[v]['sys_s']:.1f} | "
                     f"{m[v]['sync_after_s']:.2f} | {m[v]['wall_plus_sync_s']:.1f} |")
    lines += ["", f"Per image (median of the per-round differences, over {n} images), and times 50,000:", "",
              "| difference | wall (ms) | CPU (ms) | system (ms) | wall + sync (ms) | wall, 50,000 images (s) | "
              "CPU, 50,000 images (s) |", "|---|---|---|---|---|---|---|"]
    for name, x in per_image.items():
        lines.append(f"| {name} | {x['wall_s']:+.2f} | {x['cpu_s']:+.2f} | {x['sys_s']:+.2f} | "
                     f"{x['wall_plus_sync_s']:+.2f} | {x['wall_s'] * 50:+.0f} | {x['cpu_s'] * 50:+.0f} |")
    lines += ["", f"The write path alone: the {len(blobs)} PNGs of the last run (mean "
              f"{meta['png_bytes_mean']:.0f} bytes) written again by Python as eoc's atomic writer does "
              "(CPU: the writing process's):", "",
              "| writes | wall (s) | CPU (s) | `sync` after (s) | wall + sync (s) |", "|---|---|---|---|---|"]
    for v, x in replay_medians.items():
        lines.append(f"| {v} | {x['wall_s']:.2f} | {x['cpu_s']:.2f} | {x['sync_after_s']:.2f} | "
                     f"{x['wall_plus_sync_s']:.2f} |")
    y = replay_per_image
    lines += ["", f"fsync minus no fsync, per image: wall {y['wall_s']:+.2f} ms, CPU {y['cpu_s']:+.2f} ms, "
              f"wall + sync {y['wall_plus_sync_s']:+.2f} ms; times 50,000 images: wall {y['wall_s'] * 50:+.0f} s, "
              f"wall + sync {y['wall_plus_sync_s'] * 50:+.0f} s."]
    with open(args.markdown, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""What the benchmark scripts share: running a command that must succeed, reading the
timings of an `eoc sample --report` (phases in `timings_s`, one entry per batch in
`timings_s.batches`; see README, `--report`), a scratch folder removed at exit, and the
command line and paths as a result file records them."""
import atexit
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def recorded_path(path):
    """A path as a result file records it: relative to the repository when it lies inside it,
    so results committed under docs/benchmarks/ name no machine's folders; else as given."""
    if not os.path.isabs(path):
        return path
    rel = os.path.relpath(path, REPO)
    return path if rel == ".." or rel.startswith(".." + os.sep) else rel


def recorded_command(argv):
    """The command that produced a result, to rerun from the repository root: the script and
    every absolute argument inside the repository made relative to it, shell-quoted."""
    return shlex.join([os.path.relpath(os.path.abspath(argv[0]), REPO)]
                      + [recorded_path(a) for a in argv[1:]])


def scratch_dir(prefix):
    """A new temporary folder for a benchmark's outputs (reports, raw samples), removed when the
    script exits, also when a failed command stops it (fail_command exits through SystemExit)."""
    work = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work


def fail_command(tool, cmd, returncode, stderr):
    """Stops the benchmark with one message: the command, its exit status, the end of stderr."""
    sys.exit(f"{tool}: command failed ({returncode}): {' '.join(map(str, cmd))}\n{stderr[-2000:]}")


def run_checked(tool, cmd, env=None, log=None):
    """Runs cmd with its output captured (env: the whole environment, None = inherit); a
    non-zero exit stops the benchmark (fail_command). Writes the command line to log first,
    if given. Returns the wall seconds it took."""
    cmd = [str(c) for c in cmd]
    if log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
    started = time.time()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        fail_command(tool, cmd, proc.returncode, proc.stderr)
    return time.time() - started


def read_timings(report_path):
    """The `timings_s` object of a run report: load, sample, write, total, batches."""
    with open(report_path) as f:
        return json.load(f)["timings_s"]


def first_and_later_batches(timings, key="batches"):
    """-> (seconds of the first batch, seconds of all later ones) from a report's `timings_s`
    (key "batches": wall seconds, "batches_cpu": CPU seconds). The first batch of a process
    also pays for TorchScript's first runs and for first touching the run's memory; the later
    ones are what a long run settles at."""
    batches = timings[key]
    return batches[0], sum(batches[1:])

"""What the benchmark scripts share: running a command that must succeed, and reading the
timings of an `eoc sample --report` (phases in `timings_s`, one entry per batch in
`timings_s.batches`; see README, `--report`), and a scratch folder removed at exit."""
import atexit
import json
import shutil
import subprocess
import sys
import tempfile
import time


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


def first_and_later_batches(timings):
    """-> (seconds of the first batch, seconds of all later ones) from a report's `timings_s`.
    The first batch of a process also pays for TorchScript's first runs and for first
    touching the run's memory; the later ones are what a long run settles at."""
    batches = timings["batches"]
    return batches[0], sum(batches[1:])

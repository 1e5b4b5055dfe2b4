"""Shared fixtures: repository paths, the Python interpreter, small random DiT models exported
through the project's own scripts (once per test session), and the one way the tests run eoc
(`run_eoc`). The suite lives in folders by what it tests (cli/, tools/, reference/, bench/,
lint/); this is its only conftest, and no test module imports another: what several modules
share is here, as a fixture."""
import os
import subprocess
import sys

import pytest
import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# The Python scripts the tests import: user tools (export_dit, cache_mask, ...) and the test
# fixtures and reference (make_random_dit, reference_sampler, ...).
for _folder in ("tools", "testing"):
    _path = os.path.join(REPO, "scripts", _folder)
    if _path not in sys.path:
        sys.path.insert(0, _path)

import export_dit  # noqa: E402
import make_random_dit  # noqa: E402
import reference_sampler  # noqa: E402

# name -> (architecture for make_random_dit.random_state_dict, heads)
FIXTURES = {
    # latent-like: 4 channels, learn_sigma (8 output channels), patch 2, 64 tokens
    "latent": (dict(depth=3, hidden=64, patch=2, input_size=16, in_channels=4, num_classes=10,
                    learn_sigma=True, seed=0), 4),
    # pixel-like: 1 channel, no sigma channels (fixed-large variance), patch 4, 16 tokens
    "pixel": (dict(depth=2, hidden=32, patch=4, input_size=16, in_channels=1, num_classes=5,
                   learn_sigma=False, seed=1), 2),
}


@pytest.fixture(scope="module")
def one_torch_thread():
    """One thread for the reference sampler (torch and OpenBLAS) while a module compares it with
    eoc run with --threads 1: a GEMM's rounding can depend on how it is split, and the suite
    shares two cores. Modules opt in with pytestmark = pytest.mark.usefixtures(...)."""
    before = torch.get_num_threads()
    reference_sampler.set_threads(1)
    yield
    reference_sampler.set_threads(before)


@pytest.fixture(scope="session")
def repo_root():
    return REPO


@pytest.fixture(scope="session")
def python_exe():
    """The interpreter running the tests (it has torch); scripts run under it too."""
    return sys.executable


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("dit_fixtures")


@pytest.fixture(scope="session")
def random_dits(fixture_dir):
    """name -> dict(ckpt=path, ts=path, sd=state dict, heads=int, **architecture)."""
    out = {}
    for name, (arch, heads) in FIXTURES.items():
        sd = make_random_dit.random_state_dict(**arch)
        ckpt = str(fixture_dir / f"{name}.pt")
        ts = str(fixture_dir / f"{name}.ts")
        torch.save(sd, ckpt)
        export_dit.export(ckpt, ts, num_heads=heads)
        out[name] = dict(arch, ckpt=ckpt, ts=ts, sd=sd, heads=heads)
    return out


@pytest.fixture(scope="session")
def latent_dit(random_dits):
    return random_dits["latent"]


@pytest.fixture(scope="session")
def pixel_dit(random_dits):
    return random_dits["pixel"]


MODELS = os.path.join(REPO, "third_party", "models")


def _require_file(path, what):
    """`path` if it is a file; otherwise fails the requesting test (never skips it)."""
    if not os.path.isfile(path):
        pytest.fail(f"{what} {path} is missing (it is part of the repository; a broken "
                    "checkout?)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def fmnist_ckpt():
    """The built-in model's official-layout checkpoint, third_party/models/fmnist-dit-s4.pt."""
    return _require_file(os.path.join(MODELS, "fmnist-dit-s4.pt"), "checkpoint")


@pytest.fixture(scope="session")
def fmnist_sit_ckpt():
    """The trained flow model's official-layout SiT checkpoint,
    third_party/models/fmnist-sit-p4d6.pt (4 heads; see third_party/models/README.md)."""
    return _require_file(os.path.join(MODELS, "fmnist-sit-p4d6.pt"), "checkpoint")


@pytest.fixture(scope="session")
def fmnist_ts():
    return _require_file(os.path.join(MODELS, "fmnist-dit-s4.ts"), "built-in model")


def require_executable(path, what="eoc binary"):
    """`path` if it is an executable file; otherwise fails the requesting test. A missing binary
    is a broken build or a wrong $EOC_BINARY, never a reason to skip a test."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"{what} {path} is not built or not executable (build it with "
                    "scripts/dev/bootstrap.sh, or point $EOC_BINARY at a built eoc)",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def eoc_bin():
    """The eoc binary under test: $EOC_BINARY (made absolute: tests run it from their own
    folders), else build/eoc in the repository."""
    path = os.environ.get("EOC_BINARY") or os.path.join(REPO, "build", "eoc")
    return require_executable(os.path.abspath(path))


@pytest.fixture(scope="session")
def builtin_model(fmnist_ts):
    """The built-in Fashion-MNIST model, third_party/models/fmnist-dit-s4.ts."""
    return fmnist_ts


@pytest.fixture(scope="session")
def eoc_torch_bin(eoc_bin):
    """eoc-torch, the LibTorch program beside the eoc launcher; fails the requesting test when it
    is not built."""
    return require_executable(os.path.join(os.path.dirname(eoc_bin), "eoc-torch"),
                              "eoc-torch (the program the eoc launcher starts)")


@pytest.fixture(scope="session")
def random_dit_variant(fixture_dir):
    """-> make(base, name, edit=None): the `base` fixture's architecture ("latent" or "pixel",
    FIXTURES) with its weights passed through edit(state dict), saved and exported as
    fixture_dir/NAME.pt and NAME.ts; returns the .ts path."""
    def make(base, name, edit=None):
        arch, heads = FIXTURES[base]
        sd = make_random_dit.random_state_dict(**arch)
        if edit is not None:
            edit(sd)
        ckpt, ts = str(fixture_dir / f"{name}.pt"), str(fixture_dir / f"{name}.ts")
        torch.save(sd, ckpt)
        export_dit.export(ckpt, ts, num_heads=heads)
        return ts
    return make


# --------------------------------------------------------------------------------------------
# Running eoc: the one runner of every test that starts the binary
# --------------------------------------------------------------------------------------------

class EocRunner:
    """Runs the eoc binary under test (or `program`, e.g. eoc-torch or a copy of the launcher).

    run_eoc(args, cwd, check=True, timeout=300, env=None, program=None) runs `eoc ARGS...` in
    folder cwd (arguments made strings) and returns the CompletedProcess, text mode, stdout and
    stderr captured. check=True raises AssertionError naming the command and exit status, with
    its stdout and stderr, when it exits non-zero. env=None inherits the environment.

    run_eoc.start(args, cwd, env=None, stdout=PIPE, stderr=PIPE) starts it the same way without
    waiting and returns the Popen (text mode), for tests that signal or overlap runs."""

    def __init__(self, binary):
        self.binary = binary

    def _command(self, args, program):
        return [str(program or self.binary)] + [str(a) for a in args]

    def __call__(self, args, cwd, check=True, timeout=300, env=None, program=None):
        proc = subprocess.run(self._command(args, program), cwd=str(cwd), env=env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            name = os.path.basename(str(program)) if program else "eoc"
            raise AssertionError(f"{name} {' '.join(map(str, args))} exited {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def start(self, args, cwd, env=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
              program=None):
        return subprocess.Popen(self._command(args, program), cwd=str(cwd), env=env,
                                stdout=stdout, stderr=stderr, text=True)


@pytest.fixture(scope="session")
def run_eoc(eoc_bin):
    """The runner of the eoc binary under test (EocRunner)."""
    return EocRunner(eoc_bin)


def _files_under(root):
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


@pytest.fixture(scope="session")
def files_under():
    """-> files_under(root): the set of paths (folders too) below root, relative to it."""
    return _files_under


def _check_clean_failure(proc, eoc_error=True):
    err = proc.stderr
    assert proc.returncode != 0, f"exited 0\nstderr:\n{err}"
    assert 0 < proc.returncode < 128, f"killed / crashed: rc {proc.returncode}\n{err}"
    for bad in ("terminate called", "Traceback", "core dumped", "Segmentation fault",
                "Exception raised from", "Aborted"):
        assert bad not in err, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert 1 <= len(lines) <= 3, err
    if eoc_error:
        assert len(lines) == 1 and lines[0].startswith("eoc: error:"), err


@pytest.fixture(scope="session")
def check_clean_failure():
    """-> check(proc, eoc_error=True): eoc failed cleanly: a non-zero exit below 128 (no crash
    or signal), no traceback, terminate or abort on stderr, at most 3 stderr lines, and with
    eoc_error exactly one, `eoc: error: ...`."""
    return _check_clean_failure


# --------------------------------------------------------------------------------------------
# The session's counts, and skips: only the environment-dependent reasons below are allowed
# --------------------------------------------------------------------------------------------

# The start of a skip reason (the text given to pytest.skip) -> why that skip is legitimate: the
# test cannot mean anything in this environment, through no fault of eoc or of the checkout. A
# skip for any other reason fails the session. A missing binary, model or checkpoint is a
# failure (see the fixtures above); so is a build without libzip ("this eoc build has no libzip",
# cli/test_fid_runs.py), because then `eoc pack` goes untested.
ALLOWED_SKIPS = {
    "running as root: permissions are not enforced":
        "root writes into a read-only folder anyway, so the read-only case cannot be made "
        "(cli/test_cli_sampling.py::test_out_into_read_only_dir; CI runs as root)",
    "mounting a tmpfs needs root":
        "the full-file-system tests mount a 64 KiB tmpfs, which an unprivileged user cannot",
    "cannot mount a tmpfs here":
        "root without the mount privilege (a container without CAP_SYS_ADMIN) cannot mount "
        "the 64 KiB tmpfs either",
    "needs /proc to see when eoc's signal handlers are installed":
        "without procfs the signal tests cannot tell when eoc is ready for the signal",
    "the sampler finished before it could be killed":
        "a timing race: on a fast machine the run ended before the signal was sent, so there "
        "is nothing to interrupt (the test sends it only while the process runs)",
    "the sampler finished before SIGTERM":
        "the same timing race (cli/test_fid_runs.py::test_sigterm_exits_143_without_temp_files)",
    "eoc finished before the signal":
        "the same timing race (cli/test_reliability.py signal tests)",
}

_COUNTS = dict(passed=0, failed=0, errors=0, skipped=0, xfailed=0, xpassed=0)
_SKIPS = []  # (node id, reason, why it is allowed or None)


def _skip_reason(report):
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def _record_skip(report):
    reason = _skip_reason(report)
    # EOC_TEST_NO_SKIPS=1 allows none (scripts/dev/test_sanitized.sh: there a sanitizer abort
    # before a signal could be sent must not pass for a run that finished early).
    allowed = {} if os.environ.get("EOC_TEST_NO_SKIPS") == "1" else ALLOWED_SKIPS
    why = next((w for prefix, w in allowed.items() if reason.startswith(prefix)), None)
    _SKIPS.append((report.nodeid, reason, why))
    _COUNTS["skipped"] += 1


def pytest_runtest_logreport(report):
    if hasattr(report, "wasxfail"):
        if report.skipped:
            _COUNTS["xfailed"] += 1
        elif report.passed and report.when == "call":
            _COUNTS["xpassed"] += 1
    elif report.skipped:
        _record_skip(report)
    elif report.failed:
        _COUNTS["failed" if report.when == "call" else "errors"] += 1
    elif report.passed and report.when == "call":
        _COUNTS["passed"] += 1


def pytest_collectreport(report):
    if report.skipped:
        _record_skip(report)
    elif report.failed:
        _COUNTS["errors"] += 1


def _unexpected_skips():
    return [(node, reason) for node, reason, why in _SKIPS if why is None]


def pytest_sessionfinish(session, exitstatus):
    if _unexpected_skips() and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    unexpected = _unexpected_skips()
    c = _COUNTS
    tr.write_sep("=", "eoc test counts")
    tr.write_line(f"eoc-pytest-counts: {c['passed']} passed, {c['failed']} failed, "
                  f"{c['errors']} errors, {c['skipped']} skipped ({len(unexpected)} not allowed)"
                  + (f", {c['xfailed']} xfailed, {c['xpassed']} xpassed"
                     if c["xfailed"] or c["xpassed"] else ""))
    for node, reason, why in _SKIPS:
        if why is not None:
            tr.write_line(f"allowed skip: {node}: {reason} -- allowed because {why}")
    for node, reason in unexpected:
        tr.write_line(f"SKIP NOT ALLOWED: {node}: {reason}", red=True, bold=True)
    if unexpected and os.environ.get("EOC_TEST_NO_SKIPS") == "1":
        tr.write_line(f"eoc: {len(unexpected)} test(s) skipped with EOC_TEST_NO_SKIPS=1, which "
                      "allows no skip: the session fails.", red=True, bold=True)
    elif unexpected:
        tr.write_line(f"eoc: {len(unexpected)} test(s) skipped for a reason that is not in "
                      "ALLOWED_SKIPS (tests/python/conftest.py): the session fails. Fix what "
                      "the test needs, or, for a reason that depends only on the environment, "
                      "add it there with why.", red=True, bold=True)

"""The CPU runtime settings: the `eoc` launcher puts them into the environment of the LibTorch
program `eoc-torch` it starts (src/cli/launcher.cpp, runtime_env.cpp); `eoc info` shows them."""
import json
import os
import shutil

import pytest

DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "20",
            "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
ALL = list(DEFAULTS) + ["GOMP_SPINCOUNT", "EOC_NO_REEXEC"]


@pytest.fixture
def runtime_env(run_eoc, builtin_model, tmp_path):
    """-> runtime_env(program=None, **env): the runtime variables `program info` reports (eoc
    by default), run with only `env` of them set."""
    def run(program=None, **env):
        base = {k: v for k, v in os.environ.items() if k not in ALL}
        out = run_eoc(["info", "--json", "--model", builtin_model], tmp_path, timeout=120,
                      env={**base, **env}, program=program)
        return json.loads(out.stdout)["runtime_env"]
    return run


def test_launcher_sets_the_defaults(runtime_env):
    assert runtime_env() == DEFAULTS


def test_a_users_own_value_is_kept(runtime_env):
    got = runtime_env(OMP_WAIT_POLICY="ACTIVE", OPENBLAS_THREAD_TIMEOUT="4")
    assert got == {**DEFAULTS, "OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}


def test_gomp_spincount_counts_as_a_wait_policy(runtime_env):
    got = runtime_env(GOMP_SPINCOUNT="1000")
    assert got == {**DEFAULTS, "OMP_WAIT_POLICY": None}


def test_eoc_no_reexec_turns_the_settings_off(runtime_env):
    got = runtime_env(EOC_NO_REEXEC="1")
    assert got == {k: None for k in DEFAULTS}


def test_the_program_run_directly_sets_them_itself(runtime_env, eoc_torch_bin):
    assert runtime_env(eoc_torch_bin) == DEFAULTS


def test_launcher_without_its_program_fails_in_one_line(run_eoc, tmp_path):
    lonely = tmp_path / "eoc"
    shutil.copy(run_eoc.binary, lonely)
    out = run_eoc(["info"], tmp_path, check=False, timeout=60, program=lonely)
    assert out.returncode == 127
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "eoc: error: cannot start" in lines[0], out.stderr
    assert str(tmp_path / "eoc-torch") in lines[0]

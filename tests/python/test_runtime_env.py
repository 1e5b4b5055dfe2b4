"""The CPU runtime settings: the `eoc` launcher puts them into the environment of the LibTorch
program `eoc-torch` it starts (src/cli/launcher.cpp, runtime_env.cpp); `eoc info` shows them."""
import json
import os
import shutil
import subprocess

from conftest import require_executable

DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "20",
            "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
ALL = list(DEFAULTS) + ["GOMP_SPINCOUNT", "EOC_NO_REEXEC"]


def runtime_env(program, model, **env):
    """-> the runtime variables `program info` reports, run with only `env` of them set."""
    base = {k: v for k, v in os.environ.items() if k not in ALL}
    out = subprocess.run([program, "info", "--json", "--model", model], env={**base, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["runtime_env"]


def torch_program(eoc_bin):
    """eoc-torch beside the launcher; a test that needs it fails when it is not built."""
    return require_executable(os.path.join(os.path.dirname(eoc_bin), "eoc-torch"),
                              "eoc-torch (the program the eoc launcher starts)")


def test_launcher_sets_the_defaults(eoc_bin, builtin_model):
    assert runtime_env(eoc_bin, builtin_model) == DEFAULTS


def test_a_users_own_value_is_kept(eoc_bin, builtin_model):
    got = runtime_env(eoc_bin, builtin_model, OMP_WAIT_POLICY="ACTIVE",
                      OPENBLAS_THREAD_TIMEOUT="4")
    assert got == {**DEFAULTS, "OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}


def test_gomp_spincount_counts_as_a_wait_policy(eoc_bin, builtin_model):
    got = runtime_env(eoc_bin, builtin_model, GOMP_SPINCOUNT="1000")
    assert got == {**DEFAULTS, "OMP_WAIT_POLICY": None}


def test_eoc_no_reexec_turns_the_settings_off(eoc_bin, builtin_model):
    got = runtime_env(eoc_bin, builtin_model, EOC_NO_REEXEC="1")
    assert got == {k: None for k in DEFAULTS}


def test_the_program_run_directly_sets_them_itself(eoc_bin, builtin_model):
    assert runtime_env(torch_program(eoc_bin), builtin_model) == DEFAULTS


def test_launcher_without_its_program_fails_in_one_line(eoc_bin, tmp_path):
    lonely = tmp_path / "eoc"
    shutil.copy(eoc_bin, lonely)
    out = subprocess.run([str(lonely), "info"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 127
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "eoc: error: cannot start" in lines[0], out.stderr
    assert str(tmp_path / "eoc-torch") in lines[0]

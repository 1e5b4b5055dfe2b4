"""The benchmark scripts run end to end in tiny settings (a few images of a random DiT), write
the JSON and markdown they promise, and fail with one clear message on a bad command. They
measure nothing here: the numbers in docs/ come from full runs."""
import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SCRIPTS = os.path.join(REPO, "scripts", "bench")


def run_script(name, args, cwd, check=True, timeout=600):
    proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, name), *map(str, args)], cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def positive(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_bench_cache_time_warm_up_batch_times_two_phases(eoc_bin, pixel_dit, tmp_path):
    out, md = tmp_path / "t.json", tmp_path / "t.md"
    run_script("bench_cache_time.py", [
        "--eoc", eoc_bin, "--model", pixel_dit["ts"], "--steps", 6, "--images", 2, "--batch-size", 2,
        "--rounds", 2, "--warm-up-batch", "--out", out, "--markdown", md], tmp_path)
    doc = json.loads(out.read_text())
    rows = {(r["phase"], r["variant"]): r for r in doc["rows"]}
    assert set(rows) == {(p, v) for p in ("first batch", "steady")
                         for v in ("uncached", "plain", "taylor", "eoc")}
    for r in rows.values():
        assert len(r["times_s"]) == 2 and all(positive(t) for t in r["times_s"])
        assert positive(r["vs_uncached"]) and positive(r["vs_plain"])
    assert rows[("steady", "plain")]["vs_plain"] == 1.0
    assert doc["meta"]["warm_up_batch"] is True
    assert "| steady | taylor |" in md.read_text()


def test_bench_cache_time_variants_without_uncached(eoc_bin, pixel_dit, tmp_path):
    out = tmp_path / "t.json"
    run_script("bench_cache_time.py", [
        "--eoc", eoc_bin, "--model", pixel_dit["ts"], "--steps", 6, "--images", 2, "--batch-size", 2,
        "--rounds", 1, "--variants", "plain,taylor", "--out", out], tmp_path)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["phase"], r["variant"]) for r in rows] == [("sample", "plain"), ("sample", "taylor")]
    assert all(r["vs_uncached"] is None for r in rows)


@pytest.mark.parametrize("variants", ["taylor", "plain,fast"])
def test_bench_cache_time_refuses_unknown_variants(tmp_path, variants):
    proc = run_script("bench_cache_time.py", ["--variants", variants, "--out", tmp_path / "t.json"],
                      tmp_path, check=False)
    assert proc.returncode != 0
    assert "--variants" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_cache_time_names_a_failing_command(tmp_path):
    proc = run_script("bench_cache_time.py", [
        "--eoc", "/bin/false", "--variants", "plain", "--rounds", 1, "--out", tmp_path / "t.json"],
        tmp_path, check=False)
    assert proc.returncode != 0
    assert proc.stderr.startswith("bench_cache_time: command failed (1): /bin/false -q sample")
    assert not (tmp_path / "t.json").exists()


def test_bench_cache_quality_rows(eoc_bin, pixel_dit, tmp_path):
    out, md, work = tmp_path / "c.json", tmp_path / "c.md", tmp_path / "work"
    run_script("bench_cache.py", [
        "--eoc", eoc_bin, "--model", pixel_dit["ts"], "--samplers", "ddim20", "--schedules", "fora:3",
        "--forms", "taylor", "--images", 2, "--batch-size", 2, "--calib-samples", 4,
        "--judge-samples", 2, "--repeats", 1, "--timed", "", "--work", work, "--out", out,
        "--markdown", md], tmp_path)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["schedule"], r["corrector"]) for r in rows] == [
        ("none", "-"), ("fora:3", "none"), ("fora:3", "taylor"), ("fora:3", "eoc-taylor")]
    assert rows[0]["mse"] == 0.0
    assert all(r["mse"] > 0 for r in rows[1:])  # a random DiT's features move: reuse changes images
    assert positive(float(rows[-1]["calibration_s"])) and "calibration_s" not in rows[2]
    assert (work / "commands.log").read_text().count(" calibrate ") == 1


def test_bench_runtime_ab_of_two_binaries(eoc_bin, tmp_path):
    out = tmp_path / "r.json"
    run_script("bench_runtime.py", [
        "--eoc", eoc_bin, "--variant", "a=", "--variant", f"b=EOC={eoc_bin}", "--caches", "fora:3",
        "--images", 1, "--batch-size", 1, "--rounds", 1, "--out", out], tmp_path)
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["a", "b"]
    assert rows[0]["vs_first"] == 1.0 and positive(rows[1]["vs_first"])


def test_bench_speed_tiny(eoc_bin, pixel_dit, tmp_path):
    out, md = tmp_path / "s.json", tmp_path / "s.md"
    run_script("bench_speed.py", [
        "--eoc", eoc_bin, "--model", pixel_dit["ts"], "--checkpoint", pixel_dit["ckpt"],
        "--num-heads", pixel_dit["heads"], "--batches", 2, "--min-images", 2, "--steps", 3,
        "--repeats", 1, "--threads", 1, "--out", out, "--markdown", md], tmp_path)
    rows = json.loads(out.read_text())["rows"]
    assert [r["cache"] for r in rows] == ["none", "fora:3"]
    for r in rows:
        assert positive(r["cpp_images_per_s"]) and positive(r["py_images_per_s"])
        assert positive(r["cpp_first_batch_images_per_s"])
    assert "hook_overhead" in rows[0] and rows[1]["peak_cache_bytes"] > 0


def test_pool_bench_rounds_pools_per_round_ratios(tmp_path):
    def run_json(path, plain, taylor):
        rows = [dict(phase="steady", variant="plain", times_s=plain),
                dict(phase="steady", variant="taylor", times_s=taylor)]
        path.write_text(json.dumps(dict(meta={}, rows=rows)))
        return path
    a = run_json(tmp_path / "a.json", [2.0, 4.0], [2.2, 4.0])     # ratios 1.10, 1.00
    b = run_json(tmp_path / "b.json", [1.0, 5.0, 2.0], [0.9, 5.0, 2.0])  # 0.90, 1.00, 1.00
    out = run_script("pool_bench_rounds.py", [a, b, "--resamples", 200], tmp_path).stdout
    assert "| steady | taylor | 5 | +0.0% |" in out  # median of 1.1, 1.0, 0.9, 1.0, 1.0
    proc = run_script("pool_bench_rounds.py", [tmp_path / "missing.json"], tmp_path, check=False)
    assert proc.returncode != 0
    assert proc.stderr.startswith("pool_bench_rounds: cannot read") and "Traceback" not in proc.stderr


def test_bench_runtime_flag_variants_after_a_warm_up_batch(eoc_bin, tmp_path):
    out = tmp_path / "r.json"
    run_script("bench_runtime.py", [
        "--eoc", eoc_bin, "--variant", "forward=ARGS=--whole-forward --no-check-finite",
        "--variant", "hook=ARGS=--no-check-finite", "--caches", "none", "--images", 1,
        "--batch-size", 1, "--rounds", 1, "--warm-up-batch", "--out", out], tmp_path)
    doc = json.loads(out.read_text())
    assert doc["meta"]["warm_up_batch"] is True
    assert [r["variant"] for r in doc["rows"]] == ["forward", "hook"]
    assert all(positive(r["median_s"]) for r in doc["rows"])


def test_bench_runtime_args_reach_the_command_line(eoc_bin, tmp_path):
    proc = run_script("bench_runtime.py", [
        "--eoc", eoc_bin, "--variant", "a=ARGS=--no-such-flag", "--caches", "none", "--images", 1,
        "--batch-size", 1, "--rounds", 1, "--out", tmp_path / "r.json"], tmp_path, check=False)
    assert proc.returncode != 0
    assert proc.stderr.startswith("bench_runtime: command failed") and "--no-such-flag" in proc.stderr


def test_bench_startup_times_both_builds(eoc_bin, tmp_path):
    out, md = tmp_path / "s.json", tmp_path / "s.md"
    run_script("bench_startup.py", ["--before", eoc_bin, "--after", eoc_bin, "--pairs", 1,
                                    "--out", out, "--markdown", md], tmp_path)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["command"].split()[1], r["build"]) for r in rows] == [
        ("--version", "before"), ("--version", "after"), ("-q", "before"), ("-q", "after")]
    assert all(positive(r["median_ms"]) and len(r["ms"]) == 1 for r in rows)
    assert "| median (ms) |" in md.read_text()


def test_bench_frontier_rows_and_plot(eoc_bin, pixel_dit, tmp_path):
    """Every method at every schedule, budget-searched points within their budgets, the tables,
    and the plot of the result (one panel per results file)."""
    out, md, png = tmp_path / "f.json", tmp_path / "f.md", tmp_path / "f.png"
    run_script("bench_frontier.py", [
        "--eoc", eoc_bin, "--model", pixel_dit["ts"], "--name", "pixel", "--steps", 8,
        "--images", 2, "--batch-size", 2, "--judge-samples", 2, "--threads", 1,
        "--fora", "2,3", "--budgets", "0.5,0.25", "--out", out, "--markdown", md], tmp_path)
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    methods = [r["method"] for r in rows]
    for m in ["fora", "taylor:1", "taylor:2", "taylor:3", "taylor:4", "eoc"]:
        assert methods.count(m) == 2, m
    budget = [r for r in rows if r["method"] == "budget eoc"]
    assert [r["schedule"] for r in budget] == ["budget:0.5", "budget:0.25"]
    assert [r["computed"] for r in budget] == [0.5, 0.25]
    for r in rows:
        assert 0 < r["computed"] < 1 and 0 < r["flops"] < 1 and r["mse"] > 0
        assert math.isclose(r["mse_median"], r["mse"], rel_tol=1e-12)  # of 2 images: their mean
        assert positive(r["time_ratio"])
    assert all(r["calibration_multiple"] > 1 for r in rows if "eoc" in r["method"])
    text = md.read_text()
    assert text.count("| computed | fora | taylor:1") == 2 and "budget eoc" in text  # mean and median
    run_script("plot_frontier.py", [out, out, "-o", png], tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""The benchmark scripts run end to end in tiny settings (a few images of a random DiT), write
the JSON and markdown they promise, and fail with one clear message on a bad command. They
measure nothing here: the numbers in docs/ come from full runs."""
import json
import math
import os
import statistics
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


def test_bench_cache_time_gate_check(eoc_bin, pixel_dit, tmp_path):
    out, md = tmp_path / "t.json", tmp_path / "t.md"
    run_script("bench_cache_time.py", [
        "--eoc", eoc_bin, "--model", pixel_dit["ts"], "--steps", 6, "--images", 2, "--batch-size", 2,
        "--rounds", 2, "--cpu", "--variants", "uncached,plain",
        "--extra", "tea=--cache teacache:0.2", "--extra", "tea0=--cache teacache:0",
        "--gate-check", "tea=tea0", "--gate-check", "tea0", "--out", out, "--markdown", md],
        tmp_path)
    doc = json.loads(out.read_text())
    rows = {(r["phase"], r["variant"]): r for r in doc["rows"]}
    # The fraction each run computed, from its report: fora:3 computes some steps, not all.
    assert rows[("sample", "uncached")]["computed"] == 1.0
    assert 0 < rows[("sample", "plain")]["computed"] < 1
    assert rows[("sample", "tea0")]["computed"] == 1.0
    # Only gated runs have a gate's share of their time, one per round.
    assert rows[("sample", "plain")]["gate_share"] is None
    assert all(0 < s < 1 for s in rows[("sample cpu", "tea")]["gate_share"])
    checks = {(c["phase"], c["variant"]): c for c in doc["gate_checks"]}
    assert set(checks) == {(p, v) for p in ("sample", "sample cpu") for v in ("tea", "tea0")}
    c = checks[("sample cpu", "tea")]
    assert c["computed"] == rows[("sample cpu", "tea")]["computed"] < 1.0
    # The gate's own overhead: its share of the gated run x that run's ratio against uncached,
    # the median over rounds; the threshold-0 run's ratio - 1 beside it.
    tea, unc = rows[("sample cpu", "tea")], rows[("sample cpu", "uncached")]
    per_round = [s * t / u for s, t, u in zip(tea["gate_share"], tea["times_s"], unc["times_s"])]
    assert c["overhead"] == pytest.approx(statistics.median(per_round))
    assert c["overhead_zero"] == pytest.approx(rows[("sample cpu", "tea0")]["vs_uncached"] - 1)
    assert c["expected"] == pytest.approx(c["computed"] + c["overhead"])
    assert c["measured"] == rows[("sample cpu", "tea")]["vs_uncached"]
    assert c["within_10pct"] == (abs(c["measured"] / c["expected"] - 1) <= 0.10)
    assert checks[("sample cpu", "tea0")]["overhead_zero"] is None
    assert "| sample cpu | tea |" in md.read_text()
    for bad in ("tea=tea0", "plain"):  # an unknown variant; a variant without a gate
        proc = run_script("bench_cache_time.py", [
            "--eoc", eoc_bin, "--model", pixel_dit["ts"], "--steps", 6, "--images", 2,
            "--batch-size", 2, "--rounds", 1, "--variants", "uncached,plain", "--gate-check", bad,
            "--out", out], tmp_path, check=False)
        assert proc.returncode != 0 and "--gate-check" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_bench_cache_time_cpu_seconds_of_the_steady_batches(eoc_bin, pixel_dit, tmp_path):
    out = tmp_path / "t.json"
    run_script("bench_cache_time.py", [
        "--eoc", eoc_bin, "--model", pixel_dit["ts"], "--steps", 6, "--images", 2, "--batch-size", 1,
        "--rounds", 1, "--warm-up-batch", "--cpu", "--variants", "uncached,plain",
        "--extra", "tea=--cache teacache:0.2", "--gate-check", "tea", "--out", out], tmp_path)
    doc = json.loads(out.read_text())
    phases = {r["phase"] for r in doc["rows"]}
    assert phases == {"first batch", "steady", "first batch cpu", "steady cpu"}
    assert {c["phase"] for c in doc["gate_checks"]} == phases
    assert all(positive(c["overhead"]) for c in doc["gate_checks"])


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
    uncached, rows = doc["rows"][0], doc["rows"][1:]
    assert (uncached["method"], uncached["computed"], uncached["mse"], uncached["psnr"]) == ("uncached", 1.0, 0.0, None)
    methods = [r["method"] for r in rows]
    for m in ["fora", "taylor:1", "taylor:2", "taylor:3", "taylor:4", "eoc"]:
        assert methods.count(m) == 2, m
    budget = [r for r in rows if r["method"] == "budget eoc"]
    assert [r["schedule"] for r in budget] == ["budget:0.5", "budget:0.25"]
    assert [r["computed"] for r in budget] == [0.5, 0.25]
    # fewer steps at the distinct fractions of 8 steps: 0.625 (fora:2 computes steps 0, 1, 3, 5,
    # 7), 0.5 (fora:3: 0, 1, 4, 7; budget 0.5), 0.25 (budget 0.25)
    fewer = [r for r in rows if r["method"] == "fewer steps"]
    assert [(r["schedule"], r["steps"], r["computed"], r["flops"]) for r in fewer] == [
        ("steps:5", 5, 0.625, 0.625), ("steps:4", 4, 0.5, 0.5), ("steps:2", 2, 0.25, 0.25)]
    for r in rows:
        assert 0 < r["computed"] < 1 and 0 < r["flops"] < 1 and r["mse"] > 0
        assert math.isclose(r["mse_median"], r["mse"], rel_tol=1e-12)  # of 2 images: their mean
        assert positive(r["time_ratio"]) and "fid" not in r
    assert all(r["calibration_multiple"] > 1 for r in rows if "eoc" in r["method"])
    text = md.read_text()
    assert text.count("| computed | fewer steps | fora | taylor:1") == 2 and "budget eoc" in text  # mean and median
    assert "FID at each" not in text and "| fewer steps | steps:2 | 25.0% |" in text
    run_script("plot_frontier.py", [out, out, "-o", png], tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_frontier_gates(eoc_bin, pixel_dit, tmp_path):
    """Gates calibrated to each fraction are tabled at it (their measured fraction in the last
    table); a gate that cannot reach a fraction (fbcache on a 2-block model always computes its
    first block: at least 5/8 of 8 steps' branches) is left out and the log says so."""
    out, md = tmp_path / "f.json", tmp_path / "f.md"
    proc = run_script("bench_frontier.py", [
        "--eoc", eoc_bin, "--model", pixel_dit["ts"], "--name", "pixel", "--steps", 8,
        "--images", 2, "--batch-size", 2, "--judge-samples", 2, "--threads", 1, "--fora", "3",
        "--budgets", "0.5", "--no-masks", "--no-fewer-steps", "--gates", "teacache,fbcache",
        "--gate-correctors", "none,taylor:2", "--out", out, "--markdown", md], tmp_path)
    rows = json.loads(out.read_text())["rows"]
    gates = [r for r in rows if "nominal" in r]
    assert [(r["method"], r["schedule"]) for r in gates] == [
        ("teacache", "target:0.5"), ("teacache + taylor:2", "target:0.5")]
    for r in gates:
        assert r["nominal"] == 0.5 and 0 < r["computed"] < 1 and r["mse"] > 0
        assert r["calibration_multiple"] > 1
    assert "fbcache (none) does not reach 0.5" in proc.stderr
    text = md.read_text()
    assert "| computed | fora | taylor:1" in text and "teacache + taylor:2 |" in text
    assert "| 50% |" in text and "Gates (`fbcache`" in text


def test_bench_frontier_fewer_steps_per_sampler():
    """The step counts of the fewer-steps baseline: DDIM round(f * steps); euler-20 (19
    evaluations) k + 1 steps for the fractions k / 19; distinct, most first, at least 2."""
    sys.path.insert(0, SCRIPTS)
    import bench_frontier as bf
    assert bf.fewer_steps("ddim", 20, [0.55, 0.5, 0.4, 0.3, 0.25, 0.2]) == [11, 10, 8, 6, 5, 4]
    assert bf.fewer_steps("euler", 20, [round(k / 19, 3) for k in (10, 7, 5, 4)]) == [11, 8, 6, 5]
    assert bf.fewer_steps("heun", 20, [0.4]) == [9]  # 16 of 38 evaluations (14 is further)
    assert bf.fewer_steps("ddim", 20, [0.01, 0.52, 0.5]) == [10, 2]


def test_bench_frontier_markdown_has_fewer_steps_and_fid_columns(tmp_path):
    """The tables of a hand-made results file: fewer steps the first column of every fraction
    table, an FID table with the uncached floor, the lowest bold, FID in every point's row; and
    its plot (a third row of panels for FID)."""
    sys.path.insert(0, SCRIPTS)
    import bench_frontier as bf

    def row(method, schedule, computed, mse, fid, **kw):
        return dict(method=method, schedule=schedule, computed=computed, flops=computed, mse=mse,
                    mse_median=mse / 2, psnr=10 * math.log10(4 / mse) if mse else None,
                    time_ratio=computed, fid=fid, **kw)
    rows = [row("uncached", "none", 1.0, 0.0, 11.5),
            row("fora", "fora:2", 0.5, 2e-3, 30.0),
            row("eoc", "fora:2", 0.5, 1e-4, 14.0, calibration_multiple=40.0),
            row("budget eoc", "budget:0.25", 0.25, 3e-3, 25.0, calibration_multiple=60.0),
            row("fewer steps", "steps:10", 0.5, 5e-3, 12.25, steps=10),
            row("fewer steps", "steps:5", 0.25, 2e-2, 40.0, steps=5)]
    meta = dict(command="bench_frontier.py ...", model="m", sampler="ddim", steps=20, cfg_scale=1.5,
                images=8, judge_samples=4, calib_seed=1000, machine="x", fid_images=64, fid_seed=5000,
                classifier="third_party/models/fmnist-classifier.pt")
    text = bf.markdown(dict(meta=meta, rows=rows))
    assert text.count("| computed | fewer steps | fora | eoc | budget eoc |") == 3  # mean, median, FID
    assert "| 50% | 5.000e-03 | 2.000e-03 | **1.000e-04** |  |" in text
    assert "| 25% | 2.000e-02 |  |  | **3.000e-03** |" in text
    assert "| 50% | **12.25** | 30 | 14 |  |" in text and "| 25% | 40 |  |  | **25** |" in text
    assert "Uncached (100% computed): 11.5, the floor." in text and "64 images of seed 5000" in text
    assert "| 100% |" not in text  # the uncached run is no column of the fraction tables
    assert "| PSNR (dB) | FID | CPU time ratio |" in text
    assert "| uncached | none | 100.0% | 1.000 | 0.000e+00 | 0.000e+00 |  | 11.5 | 1.000 |  |" in text
    assert "| fewer steps | steps:5 | 25.0% | 0.250 | 2.000e-02 | 1.000e-02 | 23.01 | 40 | 0.250 |  |" in text
    without = bf.markdown(dict(meta=meta, rows=[{k: v for k, v in r.items() if k != "fid"} for r in rows]))
    assert "FID at each" not in without and without.count("| computed | fewer steps |") == 2
    (tmp_path / "f.json").write_text(json.dumps(dict(meta=meta, rows=rows)))
    run_script("plot_frontier.py", [tmp_path / "f.json", "-o", tmp_path / "f.png"], tmp_path)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

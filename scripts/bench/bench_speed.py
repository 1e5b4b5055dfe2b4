#!/usr/bin/env python3
"""Speed benchmark: `eoc sample` against a Python eager sampler on the same weights, same settings,
in one run on one machine. Reports images/s of each (median of --repeats), their ratio, the cache
hook's overhead (a fully computed step through the C++ block loop vs the module's own forward),
achieved TFLOP/s, and peak memory.

The Python side is plain eager PyTorch: scripts/tools/dit_module.py's DiT built from the
checkpoint, the official DDIM update, classifier-free guidance on a doubled batch, and (for fora:N) the same
FORA reuse through the block methods. Both sides sample DDIM-S at cfg 1.5.

    scripts/bench/bench_speed.py --model M.ts --checkpoint CKPT.pt --num-heads H --device cpu \\
        --batches 1,8,32 --dtypes fp32 --out speed.json --markdown speed.md
(scripts/bench/bench_speed.sh runs it on the built-in model into docs/benchmarks/speed_cpu*.)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# bench_common is beside this script, export_dit in scripts/tools/, reference_sampler in
# scripts/testing/: importable from any working directory.
sys.path[:0] = [HERE] + [os.path.join(REPO, "scripts", d) for d in ("tools", "testing")]
import export_dit  # noqa: E402
import reference_sampler as rs  # noqa: E402
from bench_common import (fail_command, first_and_later_batches, recorded_command,  # noqa: E402
                          scratch_dir)

# The CPU runtime settings eoc gives itself (src/model/runtime_env.cpp, and the mallopt calls in
# src/cli/main.cpp); set them in the environment to give the Python side the same
# (scripts/bench/bench_speed.sh does, for its second table).
RUNTIME_ENV = ["OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", "GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_",
               "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def eager_model(checkpoint, heads, device, dtype, fused):
    sd = export_dit.load_state_dict(checkpoint)
    cfg = export_dit.infer_config(sd)
    model = export_dit.build_module(sd, cfg, heads, "bench", fused)
    return model.to(device=device, dtype=DTYPES[dtype]).eval()


def eager_sample(model, n, batch, steps, cache_interval, device, cfg_scale=1.5):
    """DDIM with CFG (and FORA reuse when cache_interval > 1); returns seconds."""
    sched = rs.Schedule(steps, "even")
    dtype = next(model.parameters()).dtype
    c, side = model.in_channels, model.input_size
    sync(device)
    started = time.time()
    with torch.inference_mode():
        for start in range(0, n, batch):
            b = min(batch, n - start)
            x = torch.randn(b, c, side, side, device=device)
            y = torch.arange(b, device=device) % model.num_classes
            yin = torch.cat([y, torch.full_like(y, model.num_classes)])
            cache = {}
            for k in range(steps):
                i = steps - 1 - k
                reuse = cache_interval > 1 and not (i == steps - 1 or i % cache_interval == 0)
                xin = torch.cat([x, x]).to(dtype)
                t = torch.full((2 * b,), int(sched.timesteps[i]), device=device, dtype=torch.long)
                tokens, cond = model.embed(xin, t, yin)
                for l, block in enumerate(model.blocks):
                    s1, c1, g1, s2, c2, g2 = block.modulation(cond)
                    if not reuse:
                        cache[(l, 0)] = block.attn(tokens, s1, c1)
                    tokens = tokens + g1.unsqueeze(1) * cache[(l, 0)]
                    if not reuse:
                        cache[(l, 1)] = block.mlp(tokens, s2, c2)
                    tokens = tokens + g2.unsqueeze(1) * cache[(l, 1)]
                out = model.final(tokens, cond).float()
                g = min(3, out.shape[1])
                cond_o, unc_o = out[:b], out[b:]
                eps = torch.cat([unc_o[:, :g] + cfg_scale * (cond_o[:, :g] - unc_o[:, :g]),
                                 cond_o[:, g:]], 1)[:, :c]
                abp = float(sched.alphas_cumprod_prev[i])
                x0 = float(sched.sqrt_recip_alphas_cumprod[i]) * x - float(sched.sqrt_recipm1_alphas_cumprod[i]) * eps
                eps = (float(sched.sqrt_recip_alphas_cumprod[i]) * x - x0) / float(sched.sqrt_recipm1_alphas_cumprod[i])
                x = x0 * abp ** 0.5 + (1 - abp) ** 0.5 * eps
    sync(device)
    return time.time() - started


def eoc_sample(args, model_ts, n, batch, dtype, cache, extra, work):
    """Samples one warm-up batch, then n images, in one fresh process; -> (seconds of the n
    images, seconds of the warm-up batch, report, GPU peak MiB or None). The warm-up batch
    pays once for TorchScript's first runs and for first touching the run's memory, as the
    Python side's warm-up call does; it is timed apart (the report's per-batch times)."""
    report = os.path.join(work, "report.json")
    cmd = [args.eoc, "-q", "sample", "--model", model_ts, "--device", args.device, "--dtype", dtype,
           "--sampler", "ddim", "--steps", str(args.steps), "--cfg-scale", "1.5",
           "--num-samples", str(n + batch), "--batch-size", str(batch), "--cache", cache,
           "--out-raw", os.path.join(work, "raw.npy"), "--report", report, "--no-check-finite",
           "--batch-invariant", "off", "--threads", str(args.threads), *extra]
    if args.tf32:
        cmd.append("--tf32")
    peak = None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if args.device.startswith("cuda"):
        peak = 0
        while proc.poll() is None:
            q = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True)
            if q.returncode == 0 and q.stdout.strip():
                peak = max(peak, int(q.stdout.split()[0]))
            time.sleep(0.2)
    _, err = proc.communicate()
    if proc.returncode != 0:
        fail_command("bench_speed", cmd, proc.returncode, err)
    with open(report) as f:
        rep = json.load(f)
    first, later = first_and_later_batches(rep["timings_s"])
    return later, first, rep, peak


def bench(args, save):
    """Runs every setting; `save(rows)` after each, so a run cut short keeps what it measured."""
    work = scratch_dir("eoc-bench-speed-")
    rows = []
    model_ts = args.model
    fused = args.fused_attention
    for dtype in args.dtypes.split(","):
        eager = eager_model(args.checkpoint, args.num_heads, args.device, dtype, fused)
        gmacs = rs_gflops(eager)
        for batch in [int(b) for b in args.batches.split(",")]:
            n = max(batch, args.min_images)
            for cache in args.caches.split(","):
                interval = int(cache.split(":")[1]) if cache.startswith("fora:") else 1
                eager_sample(eager, batch, batch, 2, interval, args.device)  # warm-up
                # Interleaved repeats, so drifting machine load hits both sides alike.
                py_runs, cpp_runs, fwd_runs = [], [], []
                for _ in range(args.repeats):
                    py_runs.append(eager_sample(eager, n, batch, args.steps, interval, args.device))
                    cpp_runs.append(eoc_sample(args, model_ts, n, batch, dtype, cache, [], work))
                    if cache == "none":
                        fwd_runs.append(eoc_sample(args, model_ts, n, batch, dtype, cache,
                                                   ["--whole-forward"], work)[0])
                py_s = statistics.median(py_runs)
                cpp_s = statistics.median(r[0] for r in cpp_runs)
                rep = cpp_runs[0][2]
                row = dict(dtype=dtype, batch=batch, images=n, cache=cache,
                           cpp_images_per_s=n / cpp_s, py_images_per_s=n / py_s,
                           ratio=py_s / cpp_s,
                           cpp_first_batch_images_per_s=batch / statistics.median(
                               r[1] for r in cpp_runs),
                           peak_cache_bytes=rep["cache_stats"].get("peak_cache_bytes"),
                           peak_host_bytes=rep.get("memory", {}).get("peak_host_bytes"),
                           gpu_peak_mib=max((r[3] or 0) for r in cpp_runs) or None)
                if cache == "none":
                    # Paired per repeat (the two runs are adjacent), then the median: a slow
                    # spell of the machine hits both sides of a pair alike.
                    row["hook_overhead"] = statistics.median(
                        c[0] / f for c, f in zip(cpp_runs, fwd_runs)) - 1.0
                    # 2 * multiply-adds per image forward, doubled batch for CFG.
                    row["cpp_tflops"] = 2 * gmacs * 2 * n * args.steps / cpp_s / 1e3
                rows.append(row)
                save(rows)
                print(json.dumps(row), file=sys.stderr)
        del eager
    return rows


def rs_gflops(model):
    t = (model.input_size // model.patch_size) ** 2
    d, depth = model.hidden_size, model.depth
    block = t * d * 3 * d + 2 * t * t * d + t * d * d + 2 * t * d * 4 * d + 6 * d * d
    return depth * block / 1e9


def markdown(rows, meta):
    out = [f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; device {meta['device']}; "
           f"DDIM-{meta['steps']}, cfg 1.5; medians of {meta['repeats']} runs; Python runtime "
           f"settings: {meta.get('python_runtime', 'default')}.", "",
           "Both sides are timed after a warm-up: eoc's first batch in each process is timed apart "
           "(its images/s is the last column), Python's warm-up call is not timed.", "",
           "| dtype | batch | cache | eoc images/s | Python eager images/s | eoc / Python | hook overhead "
           "| TFLOP/s | eoc first batch images/s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        hook = f"{100 * r['hook_overhead']:+.1f}%" if "hook_overhead" in r else ""
        tf = f"{r['cpp_tflops']:.2f}" if "cpp_tflops" in r else ""
        out.append(f"| {r['dtype']} | {r['batch']} | {r['cache']} | {r['cpp_images_per_s']:.3f} | "
                   f"{r['py_images_per_s']:.3f} | {r['ratio']:.2f} | {hook} | {tf} | "
                   f"{r['cpp_first_batch_images_per_s']:.3f} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eoc", default=os.path.join(REPO, "build", "eoc"))
    ap.add_argument("--model", required=True, help="exported TorchScript of --checkpoint")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--num-heads", type=int, required=True)
    ap.add_argument("--fused-attention", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtypes", default="fp32")
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--caches", default="none,fora:3")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--min-images", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="CPU threads of both sides (LibTorch's and OpenBLAS's)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown")
    args = ap.parse_args()
    rs.set_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
    meta = dict(command=recorded_command(sys.argv), device=args.device,
                machine=(torch.cuda.get_device_name() if args.device.startswith("cuda")
                         else f"{os.cpu_count()} CPU cores") + f", torch {torch.__version__}",
                steps=args.steps, repeats=args.repeats,
                python_runtime={k: os.environ[k] for k in RUNTIME_ENV if k in os.environ} or "default")

    def save(rows):
        with open(args.out, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(markdown(rows, meta))

    save(bench(args, save))


if __name__ == "__main__":
    main()

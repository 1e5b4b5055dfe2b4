#!/usr/bin/env python3
"""Plots bench_frontier.py results: MSE against the uncached images (log scale) over the computed
fraction, one line per method (the fewer-steps baseline in black, dash-dotted), one panel per
results file (Debian's python3-matplotlib); a second row with the median of the images' own MSEs
when every file has it, and a third with FID (log scale; the uncached run's FID as a dashed
horizontal line, the floor) when any file has FID (bench_frontier.py --fid-images).

    scripts/bench/plot_frontier.py docs/benchmarks/frontier_fmnist-dit-s4.json \\
        docs/benchmarks/frontier_fmnist-dit-p2d16.json \\
        docs/benchmarks/frontier_fmnist-dit-p2d16_16_judge_images.json -o docs/benchmarks/frontier.png
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {  # method -> (colour, marker, line style)
    "fewer steps": ("black", "X", "-."),
    "fora": ("#888888", "o", ":"),
    "taylor:1": ("#9ecae1", "v", "--"),
    "taylor:2": ("#6baed6", "<", "--"),
    "taylor:3": ("#3182bd", ">", "--"),
    "taylor:4": ("#08519c", "^", "--"),
    "eoc": ("#e6550d", "s", "-"),
    "paper mask + eoc": ("#fdae6b", "D", "none"),
    "budget eoc": ("#31a354", "*", "-"),
    "foca": ("black", "x", "-"),
}
# Gates: one colour per rule; plain reuse solid, with a corrector dashed (taylor:2) or dotted.
GATE_COLOURS = {"fbcache": "#756bb1", "teacache": "#8c510a", "easycache": "#de2d26"}


def style(method):
    if method in STYLE:
        return STYLE[method]
    rule, _, corrector = method.partition(" + ")
    if rule in GATE_COLOURS:
        line = {"": "-", "taylor:2": "--"}.get(corrector, ":")
        return GATE_COLOURS[rule], {"": "P", "taylor:2": "p"}.get(corrector, "h"), line
    return "black", "x", "-"
UNCACHED = "uncached"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="bench_frontier.py JSON files")
    ap.add_argument("-o", "--out", required=True, help="PNG to write")
    ap.add_argument("--only", default="", help="plot only these methods (comma list)")
    a = ap.parse_args()
    only = [m for m in a.only.split(",") if m]
    docs = [json.load(open(p)) for p in a.results]
    metrics = [("mse", "MSE vs uncached images (held-out seeds)")]
    if all("mse_median" in r for d in docs for r in d["rows"]):
        metrics.append(("mse_median", "median image's MSE vs uncached"))
    if any(r.get("fid") is not None for d in docs for r in d["rows"]):
        metrics.append(("fid", "FID (Fashion-MNIST classifier features)"))
    fig, axes = plt.subplots(len(metrics), len(docs), figsize=(6.2 * len(docs), 4.8 * len(metrics)),
                             squeeze=False)
    for (key, label), row in zip(metrics, axes):
        for ax, doc in zip(row, docs):
            panel(ax, doc, key, label, only)
    fig.tight_layout()
    fig.savefig(a.out + ".tmp.png", dpi=110)
    os.replace(a.out + ".tmp.png", a.out)


def panel(ax, doc, key, label, only=()):
    m = doc["meta"]
    rows = [r for r in doc["rows"] if r.get(key) is not None
            and (not only or r["method"] in only or r["method"] == UNCACHED)]
    methods = []
    for r in rows:
        if r["method"] not in methods and r["method"] != UNCACHED:
            methods.append(r["method"])
    for meth in methods:
        pts = sorted((r["computed"], r[key]) for r in rows if r["method"] == meth)
        colour, marker, line = style(meth)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, marker=marker,
                linestyle=line, label=meth, markersize={"*": 9, "D": 9}.get(marker, 5))
    floor = [r[key] for r in rows if r["method"] == UNCACHED]
    if key == "fid" and floor:
        ax.axhline(floor[0], color="black", linestyle="--", linewidth=1,
                   label=f"uncached ({floor[0]:.3g})")
    title = (f"{m['model']}: {m['sampler']}-{m['steps']}, cfg {m['cfg_scale']}, {m['images']} images, "
             f"{m['judge_samples']} judge images")
    if key == "fid":
        title = f"{m['model']}: {m['sampler']}-{m['steps']}, FID of {m.get('fid_images')} images"
        if "fid_images" not in m:
            title = f"{m['model']}: {m['sampler']}-{m['steps']}"
    ax.set_title(title, fontsize=10)
    if not methods:
        ax.text(0.5, 0.5, f"no {key} in this file", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("fraction of branch computations computed")
    ax.set_ylabel(label)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


if __name__ == "__main__":
    main()

"""The DDPM samplers' time grids by FID: `zoo eval` of one trained run per (sampler, steps, grid), one at a time.

    python benchmarks/sampler_grid.py RUN_DIR --out benchmarks/results/sampler-grid-cpu            # every config
    python benchmarks/sampler_grid.py RUN_DIR --out DIR --only dpm++-10-zoo dpm++-20-logsnr          # some of them
    python benchmarks/sampler_grid.py --table DIR/results.jsonl                                      # the table

Each config is `zoo eval RUN -n 1000 --metrics fid --extractor mnist --reference holdout --seed S --option
sampler=... --option steps=... --option grid=... [--option eta=...]`, run under `nice -n 5` on one torch thread
(OMP_NUM_THREADS=1: on a loaded 2-core machine two threads sampled 7x slower than one), with the model's sampling
batch at 125. Needs ZOO_DATA (and ZOO_CONFIG) as the run was trained with, so the 1,000 held-out digits are the
same. Results: OUT/results.jsonl, one line per config (appended: a rerun skips done ones).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

GRIDS = ("zoo", "linspace", "trailing", "logsnr", "karras")


def configs() -> dict[str, tuple[int, dict]]:
    """label -> (seed, sampling options), in the order they are run."""
    out = {}
    for steps in (10, 20):
        for sampler in ("dpm++", "ddim"):
            for grid in GRIDS:
                out[f"{sampler}-{steps}-{grid}"] = (0, {"sampler": sampler, "steps": steps, "grid": grid})
    for grid in ("zoo", "karras"):  # the noise of one FID: the same config on another seed
        out[f"dpm++-10-{grid}-seed1"] = (1, {"sampler": "dpm++", "steps": 10, "grid": grid})
    for steps in (20, 50):  # a stochastic sampler on the best grid, against ancestral DDPM-100
        out[f"ddim-eta1-{steps}-karras"] = (0, {"sampler": "ddim", "steps": steps, "grid": "karras", "eta": 1.0})
    out["ddpm-100-karras"] = (0, {"sampler": "ddpm", "steps": 100, "grid": "karras"})
    return out


def run(run_dir: str, label: str, seed: int, options: dict, out: Path) -> dict:
    cmd = ["nice", "-n", "5", sys.executable, "-m", "zoo", "eval", run_dir, "-n", "1000", "--metrics", "fid",
           "--extractor", "mnist", "--reference", "holdout", "--seed", str(seed), "--batch-size", "500",
           "--option", "batch_size=125", "--json"]
    for k, v in options.items():
        cmd += ["--option", f"{k}={v}"]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    row = {"label": label, "seed": seed, "wall": round(time.time() - t0, 1), "load1": os.getloadavg()[0],
           "result": json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else None}
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def table(path: Path) -> str:
    rows = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["result"]:
            rows[r["label"]] = r
    lines = ["| sampler | NFE | grid | eta | seed | FID ↓ | sampling s | eval s (wall) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows.values():
        w = r["result"]["sampled_with"] if "sampled_with" in r["result"] else r["result"]["sample_options"]
        lines.append(f"| {w['sampler']} | {w['steps']} | {w['grid']} | {w.get('eta', 0.0):g} | {r['seed']} | "
                     f"{r['result']['fid']:.2f} | {r['result']['seconds_sampling']:.0f} | {r['wall']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/sampler-grid-cpu"))
    ap.add_argument("--only", nargs="*", help="labels to run (default: all); --list shows them")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--table", type=Path, help="print the markdown table of a results.jsonl")
    a = ap.parse_args()
    if a.list:
        print("\n".join(configs()))
        return
    if a.table:
        print(table(a.table), end="")
        return
    a.out.mkdir(parents=True, exist_ok=True)
    done = {json.loads(x)["label"] for x in (a.out / "results.jsonl").read_text().splitlines()} \
        if (a.out / "results.jsonl").is_file() else set()
    for label, (seed, options) in configs().items():
        if label in done or (a.only and label not in a.only):
            continue
        r = run(a.run_dir, label, seed, options, a.out)
        print(label, r["result"]["fid"] if r["result"] else "failed", f"{r['wall']:.0f} s", flush=True)


if __name__ == "__main__":
    main()

"""DDPM and flow-matching small-compute recipe studies: ablations at a fixed CPU budget, scored the same way.

Each variant is `zoo train` of a DDPM U-Net for a fixed wall-clock budget (trainer.max_minutes) followed by
`zoo eval` (n samples, `mnist` extractor, reference = the held-out digits). Variants run `--parallel` at a time,
each on `--threads` torch threads, so that 2 runs x 1 thread fill the 2 cores of the machine this was made on;
the ranking is what matters here, the decisive 2-thread runs are in the README's compare study.

    python benchmarks/ddpm_recipe.py --unet attention --grid size --minutes 6 --out benchmarks/results/ddpm-recipe-cpu
    python benchmarks/ddpm_recipe.py --list                      # the variants of each grid
    python benchmarks/ddpm_recipe.py --samplers RUN_DIR --n 500  # FID per network evaluation, by sampler
    python benchmarks/ddpm_recipe.py --family flow --grid flow --minutes 5 --out benchmarks/results/flow-recipe-cpu
    python benchmarks/ddpm_recipe.py --samplers RUN_DIR --settings heun:10,euler:20,dopri5:-  # flow: solver steps

`--family flow` trains `flow-<unet>` from FLOW_BASE (the flow `cpu` preset, written out) with FLOW_GRIDS.
Results: OUT/<unet>-<grid>.jsonl (one line per variant, appended as runs finish: a rerun skips done ones),
OUT/<unet>-<grid>.md (table with command, CPU, torch version and date).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name

DATA = ["data.split=test", "data.holdout=1000"]
METRICS = ("fid", "is_mean", "precision", "recall", "modes", "class_kl", "mean_confidence")

# The base recipe each ablation changes one thing of (keys as `zoo show-config ddpm --explain` lists them).
BASE = ["data.image_size=28", "model.dim=32", "model.dim_mults=[1,2,2]", "model.num_res_blocks=1",
        "model.attn_resolutions=[14]", "model.attn_heads=4", "model.groups=8", "model.dropout=0.0",
        "model.objective=eps", "model.schedule=cosine", "trainer.batch_size=64", "trainer.lr=1e-3",
        "trainer.warmup_steps=200", "trainer.lr_schedule=cosine", "ema.enabled=true", "ema.decay=0.995"]

GRIDS: dict[str, dict[str, list[str]]] = {
    # network size at a fixed budget: more steps of a smaller net against fewer of a larger one
    "size": {
        "dim8": ["model.dim=8"],
        "dim16": ["model.dim=16"],
        "dim24": ["model.dim=24"],
        "dim32": ["model.dim=32"],
        "dim48": ["model.dim=48"],
        "dim32-res2": ["model.dim=32", "model.num_res_blocks=2"],
    },
    # one change each to the base (run with --base model.dim=N set to the size grid's winner)
    "knobs": {
        "base": [],
        "v": ["model.objective=v"],
        "minsnr": ["model.loss_weighting=min_snr"],
        "lr2e-3": ["trainer.lr=2e-3"],
        "lr5e-4": ["trainer.lr=5e-4"],
        "bs16": ["trainer.batch_size=16"],
        "bs32": ["trainer.batch_size=32"],
        "bs128": ["trainer.batch_size=128"],
        "ema-power": ["ema.kind=power"],
        "ema0.999": ["ema.decay=0.999"],
        "low-disc-t": ["model.timestep_sampling=low_discrepancy"],
        "pad32": ["data.image_size=32", "model.attn_resolutions=[16]"],
        "constlr": ["trainer.lr_schedule=constant"],
        "warmup50": ["trainer.warmup_steps=50"],
        "linear": ["model.schedule=linear"],
        "res2": ["model.num_res_blocks=2"],
        "dropout0.1": ["model.dropout=0.1"],
    },
    # the knobs that won, together
    "combos": {
        "v-lr2e-3-warmup50": ["model.objective=v", "trainer.lr=2e-3", "trainer.warmup_steps=50"],
        "v-lr2e-3-warmup50-bs32": ["model.objective=v", "trainer.lr=2e-3", "trainer.warmup_steps=50",
                                   "trainer.batch_size=32"],
        "v-lr2e-3-warmup50-power": ["model.objective=v", "trainer.lr=2e-3", "trainer.warmup_steps=50",
                                    "ema.kind=power"],
        "v-minsnr-lr2e-3-warmup50": ["model.objective=v", "model.loss_weighting=min_snr", "trainer.lr=2e-3",
                                     "trainer.warmup_steps=50"],
    },
}

# Flow matching (plugins/flow.py): the base is its `cpu` preset as first shipped (DDPM's recipe, Heun at 10 steps =
# 20 NFE); one change each. Sampler and NFE are measured on a trained run with --samplers.
FLOW_BASE = ["data.image_size=28", "model.dim=32", "model.dim_mults=[1,2,2]", "model.num_res_blocks=1",
             "model.attn_resolutions=[14]", "model.attn_heads=4", "model.groups=8", "model.dropout=0.0",
             "trainer.batch_size=32", "trainer.lr=2e-3", "trainer.warmup_steps=50", "trainer.lr_schedule=cosine",
             "ema.enabled=true", "ema.decay=0.995", "model.time_sampling=uniform", "model.ot=false",
             "model.sampler=heun", "model.sample_steps=10"]
FLOW_GRIDS: dict[str, dict[str, list[str]]] = {
    "flow": {
        "base": [],
        "dim24": ["model.dim=24"],
        "dim48": ["model.dim=48"],
        "lr1e-3": ["trainer.lr=1e-3"],
        "lr4e-3": ["trainer.lr=4e-3"],
        "bs64": ["trainer.batch_size=64"],
        "logit-normal": ["model.time_sampling=logit_normal"],
        "ot": ["model.ot=true"],
    },
}


def family_grids(family: str) -> tuple[list[str], dict]:
    return (FLOW_BASE, FLOW_GRIDS) if family == "flow" else (BASE, GRIDS)


def run(cmd: list[str], env: dict, log: Path) -> int:
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        return subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode


def one(label: str, sets: list[str], args, out: Path) -> dict:
    run_dir = out / "runs" / f"{args.unet}-{args.grid}-{label}"
    log = out / "logs" / f"{args.unet}-{args.grid}-{label}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    zoo = [sys.executable, "-m", "zoo"]
    all_sets = DATA + family_grids(args.family)[0] + args.base + sets + [
        f"trainer.max_minutes={args.minutes}", "trainer.max_steps=null", "trainer.sample_every=0",
        "trainer.eval_every=null", "trainer.device=cpu"]
    t0 = time.time()
    code = run(zoo + ["train", f"{args.family}-{args.unet}", "--preset", "cpu", "--out", str(run_dir), "--force",
                      "--quiet", *[a for s in all_sets for a in ("--set", s)]], env, log)
    row = {"label": label, "sets": sets, "train_rc": code, "wall_train": round(time.time() - t0, 1)}
    if code == 0:
        t1 = time.time()
        res = subprocess.run(zoo + ["eval", str(run_dir), "-n", str(args.n), "--reference", "holdout", "--json",
                                    "--metrics", "fid,is,prc,modes",
                                    *[a for o in args.option for a in ("--option", o)]],
                             env=env, capture_output=True, text=True)
        with open(log, "a") as f:
            f.write(res.stderr)
        row["eval_rc"] = res.returncode
        row["wall_eval"] = round(time.time() - t1, 1)
        if res.returncode == 0:
            r = json.loads(res.stdout)
            row.update({k: r.get(k) for k in METRICS})
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        last = [m for m in metrics if "loss" in m]
        row["steps"] = last[-1]["step"] if last else None
        row["final_loss"] = last[-1]["loss"] if last else None
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="ddpm", choices=["ddpm", "flow"])
    ap.add_argument("--unet", default="attention", choices=["attention", "convnext"])
    ap.add_argument("--grid", default="size", choices=sorted(GRIDS) + sorted(FLOW_GRIDS))
    ap.add_argument("--base", action="append", default=[], metavar="KEY=VALUE",
                    help="change the base recipe for every variant (e.g. model.dim=16 for the knobs grid)")
    ap.add_argument("--only", default="", help="comma-separated variant labels")
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--option", action="append", default=[], help="sampling option for eval, e.g. steps=20")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ddpm-recipe-cpu"))
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--samplers", type=Path, metavar="RUN_DIR",
                    help="instead of training: score one trained run with each of --settings")
    ap.add_argument("--settings", default="ddim:10,ddim:20,ddim:50,dpm++:10,dpm++:20,ddpm:100",
                    help="with --samplers: SAMPLER:STEPS,... ")
    args = ap.parse_args()
    if args.samplers:
        return compare_samplers(args)
    base, grids = family_grids(args.family)
    if args.list:
        for g, variants in grids.items():
            print(g, "base:", " ".join(base))
            for label, sets in variants.items():
                print(f"  {label}: {' '.join(sets) or '(base)'}")
        return
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.grid not in grids:
        sys.exit(f"error: grid {args.grid!r} is not a {args.family} grid: {', '.join(grids)}")
    results = out / f"{args.unet}-{args.grid}.jsonl"
    wanted_labels = args.only.split(",") if args.only else list(grids[args.grid])
    unknown = [v for v in wanted_labels if v not in grids[args.grid]]
    if unknown:
        sys.exit(f"error: unknown variant(s) {', '.join(unknown)} of grid {args.grid}: {', '.join(grids[args.grid])}")
    done = {json.loads(line)["label"] for line in results.read_text().splitlines()} if results.is_file() else set()
    wanted = [v for v in wanted_labels if v not in done]
    print(f"{len(wanted)} variants to run ({len(done)} done) at {args.minutes} min each, {args.parallel} at a time",
          file=sys.stderr)

    def task(label):
        row = one(label, grids[args.grid][label], args, out)
        row["base"] = args.base
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[recipe] {label}: FID {row.get('fid')} steps {row.get('steps')}", file=sys.stderr)
        return row

    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(task, wanted))
    write_table(args, out, results)


def compare_samplers(args) -> None:
    """FID of one run's samples by sampler and step count (network evaluations), same n, seed and reference."""
    import torch
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    settings = [s.split(":") for s in args.settings.split(",")]

    def score(setting):
        sampler, steps = setting
        cmd = [sys.executable, "-m", "zoo", "eval", str(args.samplers), "-n", str(args.n), "--reference", "holdout",
               "--json", "--metrics", "fid,modes", "--option", f"sampler={sampler}",
               *(["--option", f"steps={steps}"] if steps != "-" else [])]  # "-": an adaptive solver (flow's dopri5)
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            return {"sampler": sampler, "steps": steps, "error": res.stderr.strip().splitlines()[-1:]}
        r = json.loads(res.stdout)
        # NFE: what the model counted (flow: Heun/midpoint cost 2 per step, dopri5 adapts), else steps (DDPM)
        nfe = r.get("sampling_nfe") or (int(steps) if steps != "-" else None)
        return {"sampler": sampler, "steps": steps, "nfe": nfe, "fid": r["fid"],
                "modes": r.get("modes"), "seconds": r.get("seconds_sampling")}

    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(score, settings))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    name = args.samplers.name
    (out / f"samplers-{name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [f"# Samplers on one trained run: `{args.samplers}`", "",
             f"- command: `python {' '.join(sys.argv)}`",
             f"- CPU: {cpu_name()}, {args.parallel} evaluations at a time x {args.threads} torch thread(s); "
             f"torch {torch.__version__}; date {time.strftime('%Y-%m-%d')}",
             f"- FID of {args.n} samples (mnist extractor, seed 0) against the 1,000 held-out MNIST test digits; "
             "NFE = network evaluations per image (as the model counted them, else = steps)", "",
             "| sampler | steps | NFE | FID ↓ | modes | sampling seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['sampler']} | {r['steps']} | | error: {' '.join(r['error'])} | | |")
        else:
            nfe = "—" if r["nfe"] is None else f"{r['nfe']:g}"
            lines.append(f"| {r['sampler']} | {r['steps']} | {nfe} | {r['fid']:.2f} | {r['modes'] or '—'} | "
                         f"{r['seconds'] or 0:.1f} |")
    (out / f"samplers-{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_table(args, out: Path, results: Path) -> None:
    import torch
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    for r in rows:  # metrics a row lacks (added to the driver later) from the run's eval.json
        ev = out / "runs" / f"{args.unet}-{args.grid}-{r['label']}" / "eval.json"
        if ev.is_file():
            r.update({k: v for k, v in json.loads(ev.read_text()).items() if k in METRICS and r.get(k) is None})
    rows.sort(key=lambda r: (r.get("fid") is None, r.get("fid") or 0))
    cpu = cpu_name()
    lines = [f"# {'Flow-matching' if args.family == 'flow' else 'DDPM'} recipe ablations: {args.unet} U-Net, "
             f"grid `{args.grid}`", "",
             f"- command: `python {' '.join(sys.argv)}`",
             f"- CPU: {cpu}, {args.parallel} runs at a time x {args.threads} torch thread(s); "
             f"torch {torch.__version__}; "
             f"date {time.strftime('%Y-%m-%d')}",
             f"- budget: {args.minutes} min of training per variant; FID of {args.n} samples (mnist extractor) against "
             f"the 1,000 held-out MNIST test digits; eval options: {' '.join(args.option) or 'model defaults'}",
             f"- base: `{' '.join(family_grids(args.family)[0] + args.base)}`", "",
             "| variant | change | FID ↓ | IS ↑ | precision | recall | modes | class KL | steps | final loss |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = lambda k, d=2, r=r: "—" if r.get(k) is None else f"{r[k]:.{d}f}"  # noqa: E731
        lines.append(f"| {r['label']} | `{' '.join(r['sets']) or 'base'}` | {f('fid')} | {f('is_mean')} | "
                     f"{f('precision', 3)} | {f('recall', 3)} | {r.get('modes') or '—'} | {f('class_kl', 3)} | "
                     f"{r.get('steps') or '—'} | {f('final_loss', 4)} |")
    (out / f"{args.unet}-{args.grid}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

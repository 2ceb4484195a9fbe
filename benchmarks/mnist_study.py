"""The MNIST study: every built-in family under one budget, scored the same way.

    python benchmarks/mnist_study.py --budget-minutes 10 --n 10000 --device cuda          # the GPU study
    python benchmarks/mnist_study.py --budget-minutes 2 --n 2000 --device cpu --label cpu  # scaled down, CPU

Where MNIST's 60k training images exist, models train on them; where only the 10k test split exists (as on
the machines this was written on) they train on a seeded 9k slice (data.split=test, data.holdout=1000) and are
scored against the 1k held-out images -- the results file says which. ``--dataset fashion-mnist`` runs the same
study on the full-size Fashion-MNIST. ``--ddpm-sweep 2,5,10,20`` adds DDPM's time-to-quality curve.
Results go to benchmarks/results/<dataset>-study[-label]/ (leaderboard.md/.csv/.json, samples.png,
curves.png, report.html).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAMILIES = ["ae", "vae", "gan", "lsgan", "dcgan", "ddpm-convnext", "ddpm-attention"]


def data_sets(dataset: str) -> tuple[list[str], str]:
    """Config overrides for the data, and a sentence saying what was used."""
    from zoo import ZooError
    from zoo.config import Config
    from zoo.data import load_images
    sets = [f"data.name={dataset}"]
    try:
        load_images(Config({"name": dataset, "split": "train"}), "all")
        return sets, f"{dataset} training split (full)"
    except ZooError:
        return sets + ["data.split=test", "data.holdout=1000"], (
            f"{dataset} training images are not available here: trained on a seeded 9,000-image slice of the "
            f"10,000-image test split, scored against the 1,000 held-out test images")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(FAMILIES))
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--budget-minutes", type=float, default=10.0)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--preset", default=None, help="e.g. tiny for a CPU smoke run")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--ddim-steps", default="50,100", help="extra DDIM evaluations of the DDPM runs")
    ap.add_argument("--ddpm-sweep", default="", help="minutes, e.g. 2,5,10,20")
    ap.add_argument("--label", default="", help="suffix of the results folder, e.g. cpu")
    args = ap.parse_args()

    from zoo.compare import compare
    sets, data_note = data_sets(args.dataset)
    sets += [f"trainer.device={args.device}"] + args.sets
    name = f"{args.dataset}-study" + (f"-{args.label}" if args.label else "")
    out = HERE / "results" / name
    command = " ".join(["python"] + sys.argv)
    models = [m for m in args.models.split(",") if m]
    t0 = time.time()
    files = compare(models, out, budget_minutes=args.budget_minutes, n=args.n, preset=args.preset, sets=sets,
                    device=args.device, title=f"{args.dataset} study ({args.label or 'default'})")
    extra = {}
    ddpms = [m for m in models if m.startswith("ddpm")]
    for steps in [int(s) for s in args.ddim_steps.split(",") if s]:
        if not ddpms:
            break
        f = compare([str(out / "runs" / m) for m in ddpms], out / f"ddim-{steps}", n=args.n, device=args.device,
                    sample_options={m: {"sampler": "ddim", "steps": steps} for m in ddpms},
                    title=f"DDPM with DDIM-{steps}")
        extra[f"ddim-{steps}"] = json.loads(Path(f["json"]).read_text())["rows"]
    sweep = []
    for minutes in [float(m) for m in args.ddpm_sweep.split(",") if m]:
        f = compare(["ddpm"], out / f"sweep-{minutes:g}min", budget_minutes=minutes, n=args.n, preset=args.preset,
                    sets=sets, device=args.device, title=f"DDPM after {minutes:g} min")
        row = json.loads(Path(f["json"]).read_text())["rows"][0]
        sweep.append({"minutes": minutes, **row})
    note = out / "STUDY.md"
    lines = [f"# {args.dataset} study", "", f"- command: `{command}`", f"- data: {data_note}",
             f"- total wall clock: {time.time() - t0:.0f} s", "", Path(files["md"]).read_text()]
    for k, rows in extra.items():
        lines += [f"## DDPM sampled with {k}", "", "| model | FID | IS | sample s/1k |", "|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['fid']} | {r['is_mean']} | {r['sample_seconds_per_1000']} |" for r in rows]
        lines.append("")
    if sweep:
        lines += ["## DDPM time-to-quality", "", "| minutes | FID | IS | steps |", "|---|---|---|---|"]
        lines += [f"| {s['minutes']:g} | {s['fid']} | {s['is_mean']} | {s['steps']} |" for s in sweep]
    note.write_text("\n".join(lines) + "\n")
    print(f"wrote {note}")


if __name__ == "__main__":
    main()

"""The MNIST study: every built-in family under one budget, scored the same way.

    python benchmarks/mnist_study.py --budget-minutes 10 --n 10000 --device cuda --ddpm-sweep 2,5,10,20  # GPU
    python benchmarks/mnist_study.py --budget-minutes 3 --n 1000 --device cpu --label cpu \
        --presets ddpm-convnext=tiny,ddpm-attention=tiny --samplers ddim-50,ddim-100,ddpm-1000 --sampler-n 200 \
        --ddpm-sweep 1,2,4                                                                   # scaled down, CPU

Where MNIST's 60k training images exist, models train on them; where only the 10k test split exists (as on
the machines this was written on) they train on a seeded 9k slice (data.split=test, data.holdout=1000) and are
scored against the 1k held-out images (and, in an extra column, the whole split) -- the results file says
which. ``--dataset fashion-mnist`` runs the same
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


def data_sets(dataset: str) -> tuple[list[str], str, list[str]]:
    """Config overrides for the data, a sentence saying what was used, and the references scored against."""
    from zoo import ZooError
    from zoo.config import Config
    from zoo.data import load_images
    sets = [f"data.name={dataset}"]
    try:
        load_images(Config({"name": dataset, "split": "train"}), "all")
        return sets, f"{dataset} training split (full); FID also against the test split", ["train", "test"]
    except ZooError:
        return sets + ["data.split=test", "data.holdout=1000"], (
            f"{dataset} training images are not available here: trained on a seeded 9,000-image slice of the "
            f"10,000-image test split, scored against the 1,000 held-out test images (FID also against the "
            f"whole test split, 9,000 of which the models trained on)"), ["holdout", "test"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(FAMILIES))
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--budget-minutes", type=float, default=10.0)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--preset", default=None, help="e.g. tiny for a CPU smoke run")
    ap.add_argument("--presets", default="", help="per-model presets, e.g. ddpm-convnext=tiny,ddpm-attention=tiny")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--samplers", default="ddim-50,ddim-100,ddpm-1000",
                    help="extra evaluations of the DDPM runs, SAMPLER-STEPS (the main table uses each model's default)")
    ap.add_argument("--main-sampler", default="", help="DDPM sampler of the main table, e.g. ddim-50 "
                    "[default: each model's own default]")
    ap.add_argument("--sample-batch", type=int, default=None, help="DDPM sampling batch size")
    ap.add_argument("--sampler-n", type=int, default=None, help="samples per extra evaluation [default: --n]")
    ap.add_argument("--ddpm-sweep", default="", help="minutes, e.g. 2,5,10,20")
    ap.add_argument("--label", default="", help="suffix of the results folder, e.g. cpu")
    ap.add_argument("--fid-points", type=int, default=8, help="periodic FIDs per training run (the curves; each "
                    "model is ranked at its best checkpoint by them); 0: off, the last checkpoint is ranked")
    args = ap.parse_args()

    from zoo.compare import compare
    import torch

    from zoo import __version__
    sets, data_note, references = data_sets(args.dataset)
    presets = dict(item.split("=", 1) for item in args.presets.split(",") if item)
    sets += [f"trainer.device={args.device}"] + args.sets
    name = f"{args.dataset}-study" + (f"-{args.label}" if args.label else "")
    out = HERE / "results" / name
    command = " ".join(["python"] + sys.argv)
    models = [m for m in args.models.split(",") if m]
    t0 = time.time()
    common = dict(device=args.device, reference=references[0], extra_references=references[1:],
                  fid_points=args.fid_points)
    def ddpm_options(spec: str) -> dict:
        sampler, _, steps = spec.partition("-")
        opts = {"sampler": sampler, "steps": int(steps)} if spec else {}
        return {**opts, "batch_size": args.sample_batch} if args.sample_batch else opts

    main_options = {m: ddpm_options(args.main_sampler) for m in models + ["ddpm"] if m.startswith("ddpm")}
    files = compare(models, out, budget_minutes=args.budget_minutes, n=args.n, preset=args.preset, sets=sets,
                    presets={k: v for k, v in presets.items() if k in models}, sample_options=main_options,
                    title=f"{args.dataset} study ({args.label or 'default'})", **common)
    extra = {}
    ddpms = [m for m in models if m.startswith("ddpm")]
    n_extra = args.sampler_n or args.n
    for spec in [s for s in args.samplers.split(",") if s] if ddpms else []:
        f = compare([str(out / "runs" / m) for m in ddpms], out / f"sampler-{spec}", n=n_extra,
                    sample_options={m: ddpm_options(spec) for m in ddpms},
                    title=f"DDPM sampled with {spec}", metrics=("fid", "is"), score_last=False, **common)
        extra[spec] = json.loads(Path(f["json"]).read_text())["rows"]
    sweep = []
    for minutes in [float(m) for m in args.ddpm_sweep.split(",") if m]:
        f = compare(["ddpm"], out / f"sweep-{minutes:g}min", budget_minutes=minutes, n=args.n,
                    preset=presets.get("ddpm-attention", args.preset), sets=sets,
                    title=f"DDPM after {minutes:g} min", metrics=("fid", "is"), sample_options=main_options,
                    **common)
        row = json.loads(Path(f["json"]).read_text())["rows"][0]
        sweep.append({"minutes": minutes, **row})
    device = torch.cuda.get_device_name(0) if args.device != "cpu" and torch.cuda.is_available() else "CPU"
    note = out / "STUDY.md"
    lines = [f"# {args.dataset} study ({args.label or 'default'})", "", f"- command: `{command}`",
             f"- device: {device}; torch {torch.__version__}; zoo {__version__}; date {time.strftime('%Y-%m-%d')}",
             f"- budget: {args.budget_minutes:g} min of training per model (wall clock); {args.n} samples per model",
             f"- data: {data_note}", f"- total wall clock: {time.time() - t0:.0f} s", "",
             Path(files["md"]).read_text().split("\n", 1)[1]]
    if extra:
        lines += [f"## DDPM runs, by sampler ({n_extra} samples each; FID against {references[0]})", "",
                  "| model | sampler | FID | IS | sample s/1k |", "|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {k} | {_f(r['fid'])} | {_f(r['is_mean'])} | {r['sample_seconds_per_1000']} |"
                  for k, rows in extra.items() for r in rows]
        lines.append("")
    if sweep:
        lines += [f"## DDPM (attention U-Net) time-to-quality ({args.n} samples, "
                  f"{args.main_sampler or 'default sampler'})", "",
                  "| training minutes | steps | FID | IS |", "|---|---|---|---|"]
        lines += [f"| {s['minutes']:g} | {s['steps']} | {_f(s['fid'])} | {_f(s['is_mean'])} |" for s in sweep]
        lines.append("")
    note.write_text("\n".join(lines) + "\n")
    print(f"wrote {note}")


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"


if __name__ == "__main__":
    main()

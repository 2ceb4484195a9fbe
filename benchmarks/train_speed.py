"""Training throughput of zoo's trainer, end to end (data, step, EMA, logging).

Runs `zoo.train` for a fixed number of steps per configuration and reports
the steady-state images/s (mean of the logged windows after the first), the
FLOPs per image (forward + backward, counted by torch's FlopCounterMode) and
the resulting TFLOP/s and MFU against ``--peak-tflops`` when given.

    python benchmarks/train_speed.py --model ddpm --set model.dim=64 --batch-size 128 \
        --device cuda --precision bf16 --compile both --steps 300 --peak-tflops 791

Writes a JSON file and appends markdown rows to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def flops_per_image(name: str, preset, sets: list[str], batch: int, device: str) -> float:
    """Forward+backward FLOPs of one training_loss call per image (all phases)."""
    from torch.utils.flop_counter import FlopCounterMode
    import zoo
    cfg = zoo.model_config(name, preset=preset, sets=sets)
    model = zoo.create_model(name, cfg).to(device)
    c, s = int(cfg.data.channels), int(cfg.data.image_size)
    lo, hi = model.data_range
    x = torch.rand(batch, c, s, s, device=device) * (hi - lo) + lo
    counter = FlopCounterMode(display=False)
    with counter:
        for phase, repeats in model.phases():
            for _ in range(repeats):
                model.training_loss(x, phase)["loss"].backward()
    return counter.get_total_flops() / batch


def run_one(name: str, preset, sets: list[str], steps: int, log_every: int) -> dict:
    import zoo
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = zoo.train(name, preset=preset, sets=sets + [f"trainer.max_steps={steps}",
                                                             f"trainer.log_every={log_every}",
                                                             "trainer.sample_every=0", "trainer.checkpoint_every=0"],
                           out=Path(tmp) / "run", quiet=True)
        wall = time.perf_counter() - t0
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    steady = [r["images_per_s"] for r in rows[1:] if "images_per_s" in r] or [rows[-1]["images_per_s"]]
    return {"images_per_s": sum(steady) / len(steady), "train_seconds": result.seconds, "wall_seconds": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="model name (repeatable) [ddpm]")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="config override, repeatable")
    ap.add_argument("--batch-size", type=int, action="append", help="repeatable [128]")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", help="auto|fp32|bf16|fp16")
    ap.add_argument("--compile", choices=["off", "on", "both"], default="off")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (H100 bf16 ~791 measured)")
    ap.add_argument("--out", default=str(HERE / "results"), help="results folder")
    ap.add_argument("--tag", default=None, help="file name stem [train-speed-<device>]")
    args = ap.parse_args()

    import zoo
    from zoo.device import resolve_device
    device = resolve_device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    rows = []
    for name in args.model or ["ddpm"]:
        for batch in args.batch_size or [128]:
            base = list(args.sets) + [f"trainer.batch_size={batch}", f"trainer.device={device}",
                                      f"trainer.precision={args.precision}"]
            flops = flops_per_image(name, args.preset, list(args.sets), min(batch, 16), str(device))
            for compiled in ([False, True] if args.compile == "both" else [args.compile == "on"]):
                sets = base + [f"trainer.compile={str(compiled).lower()}"]
                r = run_one(name, args.preset, sets, args.steps, args.log_every)
                tflops = r["images_per_s"] * flops / 1e12
                row = {"model": name, "preset": args.preset, "sets": args.sets, "batch_size": batch,
                       "device": device_name,
                       "precision": args.precision, "compile": compiled, "steps": args.steps,
                       "images_per_s": round(r["images_per_s"], 1), "gflop_per_image": round(flops / 1e9, 3),
                       "tflops": round(tflops, 3),
                       "mfu": round(tflops / args.peak_tflops, 4) if args.peak_tflops else None,
                       "wall_seconds": round(r["wall_seconds"], 1)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    meta = {"date": dt.date.today().isoformat(), "torch": torch.__version__, "zoo": zoo.__version__,
            "device": device_name, "python": platform.python_version(), "command": " ".join(["python"] + sys.argv)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.tag or f"train-speed-{device.type}"
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    md = out / f"{stem}.md"
    if not md.exists():
        md.write_text("| date | device | torch | model | overrides | batch | precision | compile | img/s | "
                      "GFLOP/img | TFLOP/s | MFU | command |\n|" + "---|" * 13 + "\n")
    with md.open("a") as f:
        for r in rows:
            f.write(f"| {meta['date']} | {r['device']} | {meta['torch']} | {r['model']} | {' '.join(r['sets']) or '-'} "
                    f"| {r['batch_size']} | {r['precision']} | {r['compile']} | {r['images_per_s']} | "
                    f"{r['gflop_per_image']} | {r['tflops']} | {r['mfu'] if r['mfu'] is not None else '-'} | "
                    f"`{meta['command']}` |\n")
    print(f"wrote {out / (stem + '.json')} and {md}")


if __name__ == "__main__":
    main()

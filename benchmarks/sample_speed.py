"""Sampling throughput of the DDPM plugin: images/s for DDIM-K and ancestral DDPM-T.

Builds the model from its config (random weights: speed does not depend on
them), warms up once per sampler (cuDNN autotuning, ``torch.compile``), then
times ``model.sample(n, generator, sampler=..., steps=..., batch_size=...)``
end to end -- initial noise, every network call, the update, the final [0, 1]
images -- with the device synchronised before and after.

    python benchmarks/sample_speed.py --device cuda --n 20000 --batch 2500 --steps 50 --compile
    python benchmarks/sample_speed.py --device cpu --n 8 --batch 8 --sampler ddim     # smoke run

Keep ``--n`` a multiple of ``--batch`` with ``--compile`` (a last, smaller batch
recompiles). Writes ``benchmarks/results/<tag>.json`` and appends a row per
sampler to ``benchmarks/results/<tag>.md`` (device name, torch version, date,
command).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gflop_per_call(model, device) -> float:
    """Forward FLOPs of one network call per image (torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(2, *model.image_shape, device=device)
    t = torch.full((2,), 10, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.net(x, t)
    return counter.get_total_flops() / 2 / 1e9


def time_sampler(model, device, n: int, batch: int, sampler: str, steps: int | None, eta: float | None,
                 seed: int) -> dict:
    options = {"sampler": sampler, "steps": steps, "batch_size": batch}
    if eta is not None and sampler == "ddim":
        options["eta"] = eta
    g = torch.Generator(device=device).manual_seed(seed)
    model.sample(min(batch, n), g, **{**options, "steps": 2})  # warm-up: autotune / compile for this batch
    sync(device)
    t0 = time.perf_counter()
    images = model.sample(n, g, **options)
    sync(device)
    seconds = time.perf_counter() - t0
    assert images.shape == (n, *model.image_shape) and bool(torch.isfinite(images).all())
    calls = steps if steps is not None else int(model.cfg.model.timesteps)
    return {"sampler": f"{sampler}-{calls}", "n": n, "batch": batch, "seconds": round(seconds, 3),
            "images_per_s": round(n / seconds, 2), "network_calls_per_image": calls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ddpm", help="ddpm, ddpm-attention or ddpm-convnext [ddpm]")
    ap.add_argument("--unet", choices=["attention", "convnext"], help="override model.unet")
    ap.add_argument("--preset", default=None, help="e.g. tiny")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="config override, repeatable")
    ap.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N")
    ap.add_argument("--n", type=int, default=10000, help="images per sampler [10000]")
    ap.add_argument("--batch", type=int, default=2500, help="images per sampling batch [2500]")
    ap.add_argument("--sampler", choices=["ddim", "ddpm", "both"], default="both")
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps [50]")
    ap.add_argument("--ddpm-steps", type=int, default=None, help="ancestral steps [all T]")
    ap.add_argument("--ddpm-n", type=int, default=None, help="images for the (slow) ancestral sampler [--n]")
    ap.add_argument("--eta", type=float, default=None, help="DDIM eta [model.eta]")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network (model.compile_sampler)")
    ap.add_argument("--precision", default="auto", help="autocast on CUDA: auto (bf16)|bf16|fp16|fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results"), help="results folder")
    ap.add_argument("--tag", default=None, help="file name stem [sample-speed-<cpu|cuda>]")
    args = ap.parse_args()

    import zoo
    from zoo.device import resolve_device
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    sets = list(args.sets) + [f"trainer.precision={args.precision}",
                              f"model.compile_sampler={str(args.compile).lower()}"]
    if args.unet:
        sets.append(f"model.unet={args.unet}")
    cfg = zoo.model_config(args.model, preset=args.preset, sets=sets)
    torch.manual_seed(args.seed)
    model = zoo.create_model(args.model, cfg).to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    gflop = gflop_per_call(model, device)

    rows = []
    if args.sampler in ("ddim", "both"):
        rows.append(time_sampler(model, device, args.n, args.batch, "ddim", args.steps, args.eta, args.seed))
    if args.sampler in ("ddpm", "both"):
        rows.append(time_sampler(model, device, args.ddpm_n or args.n, args.batch, "ddpm", args.ddpm_steps, None,
                                 args.seed))
    meta = {"date": dt.datetime.now().isoformat(timespec="seconds"), "device": device_name,
            "torch": torch.__version__, "zoo": zoo.__version__, "python": platform.python_version(),
            "model": args.model, "unet": cfg.model.unet, "preset": args.preset, "sets": args.sets,
            "image_shape": list(model.image_shape), "params": params, "gflop_per_call": round(gflop, 4),
            "precision": args.precision if device.type == "cuda" else "fp32", "compile": args.compile,
            "command": " ".join(["python"] + sys.argv)}
    for r in rows:
        r["tflops"] = round(r["images_per_s"] * r["network_calls_per_image"] * gflop / 1e3, 3)
        print(json.dumps({**r, "device": device_name}), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.tag or f"sample-speed-{device.type}"
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    md = out / f"{stem}.md"
    if not md.exists():
        md.write_text("| date | device | torch | model | unet | overrides | params | GFLOP/call | precision | compile "
                      "| sampler | n | batch | img/s | TFLOP/s | command |\n|" + "---|" * 16 + "\n")
    with md.open("a") as f:
        for r in rows:
            overrides = " ".join(([f"--preset {args.preset}"] if args.preset else []) + args.sets) or "-"
            f.write(f"| {meta['date']} | {device_name} | {meta['torch']} | {args.model} | {meta['unet']} | "
                    f"{overrides} | {params / 1e6:.2f}M | {meta['gflop_per_call']} | {meta['precision']} | "
                    f"{args.compile} | {r['sampler']} | {r['n']} | {r['batch']} | {r['images_per_s']} | "
                    f"{r['tflops']} | `{meta['command']}` |\n")
    print(f"wrote {out / (stem + '.json')} and {md}")


if __name__ == "__main__":
    main()

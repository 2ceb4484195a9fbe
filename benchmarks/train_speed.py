"""Training throughput of zoo's trainer, end to end (data, step, EMA, logging).

Runs `zoo.train` for a fixed number of steps per configuration and reports
the steady-state images/s (mean of the logged windows after the first), the
FLOPs per image (forward + backward, counted by torch's FlopCounterMode) and
the resulting TFLOP/s and MFU against ``--peak-tflops`` when given.

    python benchmarks/train_speed.py --model ddpm --set model.dim=64 --batch-size 128 \
        --device cuda --precision bf16 --compile both --steps 300 --peak-tflops 791

On a CPU, ``--measure-peak`` times fp32 and bf16 matmuls in the same run (the peak that MFU is taken against:
fp32 for fp32 rows, bf16 for bf16 rows), and ``--precision``, ``--channels-last`` and ``--threads`` take several
values to compare (bf16 autocast pays off only where the CPU has AVX512-BF16 or AMX: see ``cpu_flags``)::

    python benchmarks/train_speed.py --model ddpm --preset cpu --device cpu --measure-peak \
        --precision fp32 --precision bf16 --channels-last both --compile both --steps 60 --tag train-speed-cpu

Writes a JSON file and appends markdown rows to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
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


def cpu_flags() -> list[str]:
    """The CPU's bf16-relevant feature flags (Linux /proc/cpuinfo), e.g. ["avx512_bf16", "amx_bf16"]."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return sorted({f for f in text.split() if f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f")})


def matmul_peak(dtype: torch.dtype, device: str, n: int = 2048, seconds: float = 3.0) -> float:
    """Measured TFLOP/s of square matmuls of size ``n`` in ``dtype`` (best of 1-second windows)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0, k = time.perf_counter(), 0
        while time.perf_counter() - t0 < min(1.0, seconds):
            a @ b
            k += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, 2 * n ** 3 * k / (time.perf_counter() - t0) / 1e12)
    return best


def run_one(name: str, preset, sets: list[str], steps: int, log_every: int) -> dict:
    import zoo
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = zoo.train(name, preset=preset, sets=sets + [f"trainer.max_steps={steps}",
                                                             f"trainer.log_every={log_every}",
                                                             "trainer.sample_every=0", "trainer.checkpoint_every=0"],
                           out=Path(tmp) / "run", quiet=True)
        wall = time.perf_counter() - t0
        if result.status != "finished":  # a signal stopped it: its few steps are no measurement
            raise SystemExit(f"{name} {' '.join(sets)}: the run was {result.status}; no row written")
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
    ap.add_argument("--precision", action="append", help="auto|fp32|bf16|fp16, repeatable [auto]")
    ap.add_argument("--compile", choices=["off", "on", "both"], default="off")
    ap.add_argument("--channels-last", choices=["auto", "off", "on", "both"], default="auto")
    ap.add_argument("--threads", type=int, action="append", help="torch threads, repeatable [torch's default]")
    ap.add_argument("--measure-peak", action="store_true", help="time fp32 and bf16 matmuls for MFU")
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
    peaks = {}
    if args.measure_peak:
        peaks = {p: round(matmul_peak(dt_, str(device)), 3) for p, dt_ in (("fp32", torch.float32),
                                                                            ("bf16", torch.bfloat16))}
        print(json.dumps({"matmul_peak_tflops": peaks, "cpu_flags": cpu_flags()}), flush=True)
    rows = []
    both = {"both": [False, True], "on": [True], "off": [False]}
    for name in args.model or ["ddpm"]:
        for batch in args.batch_size or [128]:
            flops = flops_per_image(name, args.preset, list(args.sets), min(batch, 16), str(device))
            for precision, threads, compiled, cl in itertools.product(
                    args.precision or ["auto"], args.threads or [None], both[args.compile],
                    both.get(args.channels_last, ["auto"])):
                if threads:
                    torch.set_num_threads(threads)
                sets = list(args.sets) + [f"trainer.batch_size={batch}", f"trainer.device={device}",
                                          f"trainer.precision={precision}", f"trainer.compile={str(compiled).lower()}",
                                          f"trainer.channels_last={str(cl).lower()}"]
                r = run_one(name, args.preset, sets, args.steps, args.log_every)
                tflops = r["images_per_s"] * flops / 1e12
                peak = args.peak_tflops or peaks.get("bf16" if precision in ("bf16", "fp16") else "fp32")
                row = {"model": name, "preset": args.preset, "sets": args.sets, "batch_size": batch,
                       "device": device_name, "threads": torch.get_num_threads(), "channels_last": cl,
                       "precision": precision, "compile": compiled, "steps": args.steps,
                       "images_per_s": round(r["images_per_s"], 1), "gflop_per_image": round(flops / 1e9, 3),
                       "tflops": round(tflops, 3), "peak_tflops": peak,
                       "mfu": round(tflops / peak, 4) if peak else None,
                       "wall_seconds": round(r["wall_seconds"], 1)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    meta = {"date": dt.date.today().isoformat(), "torch": torch.__version__, "zoo": zoo.__version__,
            "device": device_name, "python": platform.python_version(), "command": " ".join(["python"] + sys.argv),
            "matmul_peak_tflops": peaks, "cpu_flags": cpu_flags() if device.type == "cpu" else []}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.tag or f"train-speed-{device.type}"
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    md = out / f"{stem}.md"
    if not md.exists():
        md.write_text("| date | device | torch | model | overrides | batch | threads | channels_last | precision | "
                      "compile | img/s | GFLOP/img | TFLOP/s | MFU | command |\n|" + "---|" * 15 + "\n")
    with md.open("a") as f:
        if peaks:
            f.write(f"| {meta['date']} | {device_name} | {meta['torch']} | matmul peak (TFLOP/s) | fp32 "
                    f"{peaks['fp32']}, bf16 {peaks['bf16']}; flags {' '.join(meta['cpu_flags']) or '-'} |"
                    + " |" * 9 + f" `{meta['command']}` |\n")
        for r in rows:
            f.write(f"| {meta['date']} | {r['device']} | {meta['torch']} | {r['model']} | {' '.join(r['sets']) or '-'} "
                    f"| {r['batch_size']} | {r['threads']} | {r['channels_last']} | {r['precision']} | {r['compile']} "
                    f"| {r['images_per_s']} | "
                    f"{r['gflop_per_image']} | {r['tflops']} | {r['mfu'] if r['mfu'] is not None else '-'} | "
                    f"`{meta['command']}` |\n")
    print(f"wrote {out / (stem + '.json')} and {md}")


if __name__ == "__main__":
    main()

"""Evaluation speed: feature-extraction throughput and the wall clock of a 10k-sample eval.

    python benchmarks/eval_speed.py                       # mnist extractor, CPU
    python benchmarks/eval_speed.py --device cuda --extractor inception --inception-weights PATH

Measures (1) images/s through the extractor at a few batch sizes, (2) `evaluate()` of N images (all four
metrics) against the reference with the reference statistics cold (computed and cached) and warm
(loaded from the cache), (3) the trainer's `quick_fid`-sized case (500 images, FID only, warm). The images
scored are real MNIST test images (repeated up to N), so the timing excludes any model's sampling cost.
Writes benchmarks/results/eval-speed-<device>[-label].md with the command, hardware, torch version and date.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--extractor", default="mnist")
    ap.add_argument("--inception-weights", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", default="64,256,1000")
    ap.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                    help="data settings of the reference [default: split=test, holdout=1000 when MNIST's "
                         "training split is absent]")
    ap.add_argument("--label", default="")
    args = ap.parse_args()

    import warnings
    warnings.simplefilter("ignore")  # the extractor-overlap note: the numbers here measure speed, not quality
    import torch
    from zoo.config import Config, parse_set
    from zoo.data import load_images
    from zoo.evaluate import evaluate
    from zoo.extractors import extract_features, load_extractor
    from zoo.references import reference_for_config
    from zoo import ZooError

    data = {"name": "mnist"}
    try:
        load_images(Config({"name": "mnist", "split": "train", "limit": 1}), "all")
    except ZooError:
        data.update(split="test", holdout=1000)
    data.update(parse_set(f"data.{d}" for d in args.data).get("data", {}))
    images = load_images(Config(data), "all")
    reps = -(-args.n // len(images))
    images = images.repeat(reps, 1, 1, 1)[: args.n]
    device = torch.device(args.device)
    ext = load_extractor(args.extractor, args.inception_weights, str(device))
    size = getattr(ext, "input_size", None) or images.shape[-1]

    rows = []
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        extract_features(ext, images[: 2 * bs], size, bs)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        extract_features(ext, images, size, bs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        rows.append(f"| feature extraction, batch {bs} | {args.n} | {dt:.2f} s | {args.n / dt:,.0f} img/s |")
        print(rows[-1], flush=True)

    with tempfile.TemporaryDirectory() as cache:
        ref = reference_for_config(Config({"data": data}))
        kw = dict(extractor=args.extractor, extractor_weights=args.inception_weights, device=device, cache_dir=cache)
        for label in ("reference statistics cold (computed, cached)", "reference statistics warm (from cache)"):
            t = time.perf_counter()
            r = evaluate(images, ref, **kw)
            dt = time.perf_counter() - t
            rows.append(f"| evaluate, fid+is+kid+prc, {label} | {args.n} | {dt:.2f} s | FID {r['fid']:.3f}, "
                        f"IS {r['is_mean']:.2f} (reference: {r['n_reference']} images) |")
            print(rows[-1], flush=True)
        t = time.perf_counter()
        r = evaluate(images[:500], ref, metrics=("fid",), **kw)
        dt = time.perf_counter() - t
        rows.append(f"| quick_fid size: 500 images, FID only, warm | 500 | {dt:.2f} s | FID {r['fid']:.3f} |")
        print(rows[-1], flush=True)

    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()}, {os.cpu_count()} cores"
    name = f"eval-speed-{device.type}" + (f"-{args.label}" if args.label else "")
    out = HERE / "results" / f"{name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# Evaluation speed ({device.type}, extractor `{args.extractor}`)", "",
             f"- command: `python {' '.join(sys.argv)}`",
             f"- device: {dev}; torch threads: {torch.get_num_threads()}",
             f"- torch {torch.__version__}, python {platform.python_version()}",
             f"- date: {time.strftime('%Y-%m-%d')}",
             f"- images: real MNIST ({data}) repeated to {args.n}; reference: {ref.description}",
             "- timings exclude sampling from a model; they include uint8 conversion, feature extraction and the "
             "metrics (torch-fidelity's FID, IS, KID with 100 subsets of 1000, precision/recall k=3 on equal-size "
             "sets); the scored images overlap the reference, so the FID values are not a quality measurement", "",
             "| what | images | wall clock | notes |", "|---|---|---|---|", *rows, ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

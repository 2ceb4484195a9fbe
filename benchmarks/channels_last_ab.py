"""channels_last against the default memory format for one model's training step, interleaved (A B, B A, ...)
so that a shared machine's load falls on both sides alike. train_speed.py runs whole `zoo.train` runs one after
another; on a loaded machine those disagreed (1.46x and 1.03x for the DDPM `cpu` preset), hence this.

    python benchmarks/channels_last_ab.py --model ddpm --preset cpu --batch-size 64 --threads 1 --rounds 8
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ddpm")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=8, help="ABBA rounds; the first is warm-up")
    ap.add_argument("--steps", type=int, default=3, help="training steps timed per side and round")
    args = ap.parse_args()
    from zoo.registry import create_model, model_config
    torch.set_num_threads(args.threads)
    cfg = model_config(args.model, preset=args.preset)
    sides = {}
    for cl in (False, True):
        torch.manual_seed(0)
        model = create_model(args.model, cfg)
        model = model.to(memory_format=torch.channels_last) if cl else model
        sides[cl] = (model, model.configure_optimizers())
    model = sides[False][0]
    lo, hi = model.data_range
    x = lo + (hi - lo) * torch.rand(args.batch_size, *model.image_shape)
    times = {False: [], True: []}
    for r in range(args.rounds):
        for cl in ((False, True) if r % 2 == 0 else (True, False)):
            model, optimizers = sides[cl]
            xx = x.contiguous(memory_format=torch.channels_last) if cl else x
            t = time.perf_counter()
            for _ in range(args.steps):
                for phase, _ in model.phases():
                    optimizers[phase].zero_grad(set_to_none=True)
                    model.training_loss(xx, phase)["loss"].backward()
                    optimizers[phase].step()
            if r:
                times[cl].append((time.perf_counter() - t) / args.steps)
    base = statistics.median(times[False])
    for cl, v in times.items():
        print(f"channels_last={str(cl).lower():5}  median {statistics.median(v):.3f} s/step  "
              f"(x{base / statistics.median(v):.2f})  {args.model} --preset {args.preset}, batch {args.batch_size}, "
              f"{args.threads} thread(s), {len(v)} rounds")


if __name__ == "__main__":
    main()

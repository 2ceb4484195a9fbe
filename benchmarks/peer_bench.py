"""zoo's DDPM against its peers on the CPU, side by side, every measurement in one command.

Installs the peers when missing (``diffusers``, ``denoising-diffusion-pytorch``, ``ema-pytorch``, with
this Python's pip), then measures on ``--threads`` CPU threads (2), fp32, batch ``--batch`` (32), networks
sized to the same FLOPs (``--gflop``: 0.7 GFLOP per 32x32 image, forward + backward, counted by
``torch.utils.flop_counter``), each measurement repeated in ``--rounds`` rounds whose order rotates, so
that drift of the machine spreads over every contestant:

1. **train step**: forward, MSE to the noise, backward, AdamW step -- the same plain loop for zoo's
   attention U-Net, zoo's ConvNeXt U-Net, diffusers' ``UNet2DModel`` of the attention U-Net's layout
   (levels 32/16/8, 2 residual blocks, attention at 16 and in the middle, 4 heads) and
   denoising-diffusion-pytorch's ``Unet`` (its own layout, dim_mults 1,2,2);
2. **sampling step**: each library's own DDIM loop (``--sample-steps`` steps, time per step):
   zoo's ``Diffusion.plan`` + ``denoise``, diffusers' ``DDIMScheduler``, lucidrains' ``GaussianDiffusion``;
3. **end to end**: ``zoo train ddpm`` (each U-Net; zoo's defaults for everything but the network,
   batch, steps, data and periodic FID, which is off as in the peer's run) against
   denoising-diffusion-pytorch's ``Trainer`` on the same images (written as PNGs, already padded to
   32x32), each run for ``--e2e-steps`` and twice that: the wall clock of the short run as a user
   sees it (start-up and zoo's final sample grid included), and the steady step time
   ``(wall(2N) - wall(N)) / N``.

Writes ``peer_bench.md`` (tables) and ``peer_bench.json`` (every timing) into ``--out`` with the
command, CPU model, torch and peer versions, and date. Never run it on a shared or busy machine.

    python benchmarks/peer_bench.py --out benchmarks/results/peer-bench-cpu
    python benchmarks/peer_bench.py --quick --out /tmp/peer-bench     # smoke run: tiny sizes, a minute
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name

PEERS = {"diffusers": "diffusers", "denoising_diffusion_pytorch": "denoising-diffusion-pytorch",
         "ema_pytorch": "ema-pytorch"}
IMAGE = 32  # MNIST padded to 32x32, one channel


# --- set-up -----------------------------------------------------------------------------------
def ensure_peers() -> None:
    """pip-install the peers that do not import (into this interpreter's environment)."""
    missing = [dist for module, dist in PEERS.items() if importlib.util.find_spec(module) is None]
    if missing:
        print(f"installing {' '.join(missing)} ...", flush=True)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *missing])
        importlib.invalidate_caches()


# --- the networks, each as net(x, t) -> prediction ----------------------------------------------
def zoo_attention(width: int, dropout: float):
    from zoo_plugins.unet import AttentionUNet
    return AttentionUNet(1, width, [1, 2, 2], 2, [16], 4, dropout, 8, IMAGE)


def zoo_convnext(width: int, dropout: float):
    from zoo_plugins.unet import ConvNeXtUNet
    return ConvNeXtUNet(1, width, [1, 2, 2], 2, IMAGE)


class DiffusersUNet(torch.nn.Module):
    """diffusers' UNet2DModel in the attention U-Net's layout, called as net(x, t)."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        from diffusers import UNet2DModel
        self.unet = UNet2DModel(
            sample_size=IMAGE, in_channels=1, out_channels=1, layers_per_block=2,
            block_out_channels=(width, 2 * width, 2 * width),
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=2 * width // 4, norm_num_groups=8, dropout=dropout)

    def forward(self, x, t):
        return self.unet(x, t).sample


def lucid_unet(width: int, dropout: float):
    from denoising_diffusion_pytorch import Unet
    return Unet(dim=width, dim_mults=(1, 2, 2), channels=1, dropout=dropout)


NETWORKS = {  # name -> (factory, width step)
    "zoo-attention": (zoo_attention, 8),
    "zoo-convnext": (zoo_convnext, 4),
    "diffusers-unet2d": (DiffusersUNet, 8),
    "lucidrains-unet": (lucid_unet, 4),
}


def train_gflop(net, batch: int = 2) -> float:
    """Forward + backward FLOPs per 32x32 image, in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode
    x, t = torch.randn(batch, 1, IMAGE, IMAGE), torch.randint(0, 1000, (batch,))
    counter = FlopCounterMode(display=False)
    with counter:
        net(x, t).square().mean().backward()
    return counter.get_total_flops() / batch / 1e9


def matched_width(name: str, target: float, dropout: float) -> tuple[int, float]:
    """The width (multiple of the network's step) whose FLOPs are closest to ``target`` (in log)."""
    import math
    factory, step = NETWORKS[name]
    best = None
    for width in range(step, 64 * step + 1, step):
        g = train_gflop(factory(width, dropout))
        if best is None or abs(math.log(g / target)) < abs(math.log(best[1] / target)):
            best = (width, g)
        if g > target:
            break
    return best


# --- 1. raw train step -------------------------------------------------------------------------
def train_steps(net, opt, batch: int, steps: int, seed: int = 0) -> float:
    """Seconds per training step (mean over ``steps``) of the plain loop."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(batch, 1, IMAGE, IMAGE, generator=g) * 2 - 1
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    t0 = time.perf_counter()
    for _ in range(steps):
        t = torch.randint(0, 1000, (batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        loss = (net(a.sqrt() * x0 + (1 - a).sqrt() * noise, t) - noise).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


# --- 2. sampling step --------------------------------------------------------------------------
def make_sampler(name: str, net, batch: int, steps: int):
    """A function running the library's own DDIM sampler on ``batch`` images; returns seconds/step."""
    if name.startswith("zoo"):
        from zoo_plugins.ddpm import Diffusion
        diffusion = Diffusion(1000, "linear")
        plan = diffusion.plan("ddim", steps)

        def run():
            g = torch.Generator().manual_seed(0)
            diffusion.denoise(net, torch.randn(batch, 1, IMAGE, IMAGE, generator=g), plan, g)
    elif name.startswith("diffusers"):
        from diffusers import DDIMScheduler
        scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)

        def run():
            scheduler.set_timesteps(steps)
            x = torch.randn(batch, 1, IMAGE, IMAGE, generator=torch.Generator().manual_seed(0))
            for t in scheduler.timesteps:
                x = scheduler.step(net(x, t.expand(batch)), t, x).prev_sample
    else:
        from denoising_diffusion_pytorch import GaussianDiffusion
        diffusion = GaussianDiffusion(net, image_size=IMAGE, timesteps=1000, sampling_timesteps=steps,
                                      objective="pred_noise", beta_schedule="linear")

        def run():
            diffusion.sample(batch_size=batch)

    def timed() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            run()
        return (time.perf_counter() - t0) / steps
    return timed


# --- 3. end to end -----------------------------------------------------------------------------
def export_pngs(images, folder: Path) -> None:
    """uint8 (N, 1, 28, 28) -> 32x32 PNGs (zero-padded as zoo pads), for lucidrains' folder Dataset."""
    import torch.nn.functional as F
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    padded = F.pad(images, (2, 2, 2, 2)) if images.shape[-1] == 28 else images
    for i, img in enumerate(padded):
        Image.fromarray(img[0].numpy()).save(folder / f"{i:06d}.png")  # uint8 (H, W): mode L


def zoo_train_cmd(unet: str, width: int, args, steps: int, out: Path) -> list[str]:
    sets = [f"model.unet={unet}", f"model.dim={width}", "model.dim_mults=[1,2,2]", "model.num_res_blocks=2",
            "model.attn_resolutions=[16]", "model.attn_heads=4", "model.groups=8", f"model.dropout={args.dropout}",
            "model.convnext_mult=2", "model.timesteps=1000", "model.schedule=linear", "model.objective=eps",
            f"data.image_size={IMAGE}", f"data.split={args.split}", f"data.limit={args.images}",
            f"trainer.batch_size={args.batch}", f"trainer.max_steps={steps}", "trainer.device=cpu",
            "trainer.precision=fp32", "trainer.eval_every=null"] + list(args.zoo_set)  # no FID: lucidrains' is off
    cmd = [sys.executable, "-m", "zoo", "train", "ddpm", "--quiet", "--force", "--out", str(out)]
    return cmd + [a for s in sets for a in ("--set", s)]


def lucid_train(spec: dict) -> None:
    """Run inside a subprocess: lucidrains' Trainer with its defaults, no sampling or FID."""
    from denoising_diffusion_pytorch import GaussianDiffusion, Trainer
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(lucid_unet(spec["width"], spec["dropout"]), image_size=IMAGE, timesteps=1000,
                                  objective="pred_noise", beta_schedule="linear")
    trainer = Trainer(diffusion, spec["folder"], train_batch_size=spec["batch"], train_num_steps=spec["steps"],
                      save_and_sample_every=10 ** 9, calculate_fid=False, amp=False, augment_horizontal_flip=False,
                      results_folder=spec["results"])
    trainer.train()


def timed_run(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}")
    return seconds


# --- the driver --------------------------------------------------------------------------------
def rotate(items: list, r: int) -> list:
    return items[r % len(items):] + items[:r % len(items)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "peer-bench-cpu"),
                    help="results folder [benchmarks/results/peer-bench-cpu]")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (and OMP_NUM_THREADS) [2]")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--gflop", type=float, default=0.7, help="target GFLOP per image, forward + backward [0.7]")
    ap.add_argument("--dropout", type=float, default=0.0, help="every network's dropout [0.0, the peers' default]")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per micro-benchmark [5]")
    ap.add_argument("--train-steps", type=int, default=10, help="train steps per network per round [10]")
    ap.add_argument("--sample-steps", type=int, default=20, help="DDIM steps per sampling run [20]")
    ap.add_argument("--e2e-steps", type=int, default=200, help="N of the end-to-end runs (N and 2N) [200]")
    ap.add_argument("--e2e-rounds", type=int, default=2, help="interleaved rounds of end-to-end runs [2]")
    ap.add_argument("--images", type=int, default=10000, help="training images for the end-to-end runs [10000]")
    ap.add_argument("--split", default="train", help="MNIST split for the end-to-end runs [train]")
    ap.add_argument("--zoo-set", action="append", default=[], help="extra --set for zoo train (repeatable)")
    ap.add_argument("--sections", default="train,sample,e2e", help="which measurements [train,sample,e2e]")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny networks, one round, a few steps")
    ap.add_argument("--lucid-train", help=argparse.SUPPRESS)  # internal: the lucidrains subprocess
    args = ap.parse_args()

    os.environ.setdefault("TQDM_DISABLE", "1")  # the peers' progress bars (tqdm >= 4.66 reads it)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(args.threads))
    if args.lucid_train:
        torch.set_num_threads(args.threads)
        lucid_train(json.loads(args.lucid_train))
        return
    if args.quick:
        args.gflop, args.batch, args.rounds, args.train_steps, args.sample_steps = 0.01, 16, 1, 1, 2
        args.e2e_steps, args.e2e_rounds, args.images = 2, 1, 160
        args.zoo_set = args.zoo_set + ["trainer.n_samples=4", "model.sample_steps=2", "trainer.log_every=1"]
    sections = set(args.sections.split(","))

    ensure_peers()
    torch.set_num_threads(args.threads)
    versions = {"torch": torch.__version__, "python": platform.python_version(),
                **{dist: md.version(dist) for dist in ["zoo", *PEERS.values()]}}
    meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "date": dt.datetime.now().isoformat(
        timespec="seconds"), "cpu": cpu_name(), "threads": args.threads, "batch": args.batch, "precision": "fp32",
            "target_gflop_per_image": args.gflop, "dropout": args.dropout, "versions": versions}
    print(json.dumps(meta), flush=True)

    # networks at matched FLOPs
    nets, rows = {}, {}
    for name in NETWORKS:
        width, g = matched_width(name, args.gflop, args.dropout)
        torch.manual_seed(0)
        net = NETWORKS[name][0](width, args.dropout)
        nets[name] = net
        rows[name] = {"network": name, "width": width, "params_M": round(sum(p.numel() for p in net.parameters())
                                                                         / 1e6, 3), "gflop_train": round(g, 3)}
        print(json.dumps(rows[name]), flush=True)

    results: dict = {"meta": meta, "networks": list(rows.values())}
    if "train" in sections:
        times = {name: [] for name in nets}
        opts = {name: torch.optim.AdamW(net.parameters(), lr=1e-4, foreach=True) for name, net in nets.items()}
        for name, net in nets.items():
            train_steps(net.train(), opts[name], args.batch, 2)  # warm-up
        for r in range(args.rounds):
            for name in rotate(list(nets), r):
                times[name].append(train_steps(nets[name], opts[name], args.batch, args.train_steps, seed=r))
        results["train_step"] = summarise(times, args.batch, ("diffusers-unet2d",))
        print(json.dumps(results["train_step"]), flush=True)
    if "sample" in sections:
        samplers = {name: make_sampler(name, nets[name].eval(), args.batch, args.sample_steps) for name in nets}
        for run in samplers.values():
            run()  # warm-up
        times = {name: [] for name in nets}
        for r in range(args.rounds):
            for name in rotate(list(nets), r):
                times[name].append(samplers[name]())
        results["sampling_step"] = summarise(times, args.batch, ("diffusers-unet2d", "lucidrains-unet"))
        print(json.dumps(results["sampling_step"]), flush=True)
    if "e2e" in sections:
        results["end_to_end"] = end_to_end(args, rows)
        print(json.dumps(results["end_to_end"]), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "peer_bench.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "peer_bench.md").write_text(markdown(results))
    print(f"wrote {out / 'peer_bench.md'} and {out / 'peer_bench.json'}")


def summarise(times: dict, batch: int, references: tuple[str, ...]) -> list[dict]:
    """Median seconds per step over rounds, images (times steps) per second, and speed relative to
    each of ``references`` (their median time over this one's: > 1 is faster)."""
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return [{"network": name, "s_per_step": round(med[name], 4), "min_s_per_step": round(min(ts), 4),
             "images_per_s": round(batch / med[name], 1), "rounds": len(ts),
             **{f"speed_vs_{ref}": round(med[ref] / med[name], 3) for ref in references}}
            for name, ts in times.items()]


def end_to_end(args, rows: dict) -> list[dict]:
    from zoo.config import Config
    from zoo.data import load_images
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = Config({"name": "mnist", "root": os.environ.get("ZOO_DATA"), "split": args.split, "holdout": 0,
                       "limit": args.images, "download": True})
        export_pngs(load_images(data, "train"), tmp / "pngs")
        systems = {
            "zoo train (attention)": lambda n: zoo_train_cmd("attention", rows["zoo-attention"]["width"], args, n,
                                                             tmp / "zoo-attention"),
            "zoo train (convnext)": lambda n: zoo_train_cmd("convnext", rows["zoo-convnext"]["width"], args, n,
                                                            tmp / "zoo-convnext"),
            "lucidrains Trainer": lambda n: [sys.executable, __file__, "--threads", str(args.threads), "--lucid-train",
                                             json.dumps({"width": rows["lucidrains-unet"]["width"], "steps": n,
                                                         "batch": args.batch, "dropout": args.dropout,
                                                         "folder": str(tmp / "pngs"),
                                                         "results": str(tmp / "lucid-results")})],
        }
        walls = {name: {"N": [], "2N": []} for name in systems}
        for r in range(args.e2e_rounds):
            for name in rotate(list(systems), r):
                for key, n in (("N", args.e2e_steps), ("2N", 2 * args.e2e_steps)):
                    walls[name][key].append(timed_run(systems[name](n), env))
    out = []
    lucid = walls["lucidrains Trainer"]
    lucid_wall = statistics.median(lucid["N"])
    lucid_step = (statistics.median(lucid["2N"]) - lucid_wall) / args.e2e_steps
    for name, w in walls.items():
        wall = statistics.median(w["N"])
        step = (statistics.median(w["2N"]) - wall) / args.e2e_steps
        out.append({"system": name, "steps": args.e2e_steps, "wall_s": round(wall, 1), "steady_s_per_step":
                    round(step, 4), "wall_speed_vs_lucidrains": round(lucid_wall / wall, 3),
                    "steady_speed_vs_lucidrains": round(lucid_step / step, 3) if min(step, lucid_step) > 0 else None,
                    "walls_N": [round(v, 2) for v in w["N"]], "walls_2N": [round(v, 2) for v in w["2N"]]})
    return out


def markdown(results: dict) -> str:
    m = results["meta"]
    lines = [f"# zoo vs peers on the CPU ({m['date']})", "",
             f"- command: `{m['command']}`", f"- CPU: {m['cpu']}, {m['threads']} threads; fp32; batch {m['batch']}",
             f"- versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
             f"- networks sized to {m['target_gflop_per_image']} GFLOP per 32x32 image (forward + backward); "
             f"dropout {m['dropout']}; medians over interleaved rounds", "",
             "| network | width | params (M) | GFLOP/img train |", "|---|---|---|---|"]
    lines += [f"| {r['network']} | {r['width']} | {r['params_M']} | {r['gflop_train']} |" for r in results["networks"]]
    for key, title, rate in (("train_step", "Raw train step (forward, backward, AdamW)", "img/s"),
                             ("sampling_step", "Sampling step (each library's own DDIM loop)", "img x steps/s")):
        if key in results:
            refs = [k for k in results[key][0] if k.startswith("speed_vs_")]
            lines += ["", f"## {title}", "", f"| network | s/step | {rate} | "
                      + " | ".join(k.replace("_", " ") for k in refs) + " |", "|---" * (3 + len(refs)) + "|"]
            lines += [f"| {r['network']} | {r['s_per_step']} | {r['images_per_s']} | "
                      + " | ".join(str(r[k]) for k in refs) + " |" for r in results[key]]
    if "end_to_end" in results:
        lines += ["", "## End to end (`zoo train` vs denoising-diffusion-pytorch `Trainer`)", "",
                  "| system | steps | wall clock (s) | steady s/step | wall speed vs lucidrains "
                  "| steady speed vs lucidrains |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['system']} | {r['steps']} | {r['wall_s']} | {r['steady_s_per_step']} | "
                  f"{r['wall_speed_vs_lucidrains']} | {r['steady_speed_vs_lucidrains'] or '-'} |"
                  for r in results["end_to_end"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

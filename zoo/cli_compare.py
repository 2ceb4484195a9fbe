"""`zoo sample` and `zoo compare`: images from trained runs, and several models side by side."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import ZooError


# --- sampling -------------------------------------------------------------------------------
@click.command("sample")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("-n", "n", type=click.IntRange(1), default=64, show_default=True, help="Number of images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same images.")
@click.option("--out", "-o", required=True, type=click.Path(),
              help="grid.png (one grid), images.npz (uint8 N,H,W,C array) or a folder (one PNG each).")
@click.option("--sampler", help="Diffusion sampler (ddpm, ddim).")
@click.option("--steps", type=click.IntRange(1), help="Diffusion sampling steps (e.g. 50 for DDIM).")
@click.option("--eta", type=float, help="DDIM eta (0 = deterministic).")
@click.option("--batch-size", type=click.IntRange(1), default=500, show_default=True)
@click.option("--checkpoint", "ckpt", default="last.pt", show_default=True, help="Which file in checkpoints/.")
@click.option("--no-ema", is_flag=True, help="Use the raw weights even when the run has an EMA.")
@click.option("--device", default="auto", show_default=True)
def sample_cmd(run_dir, n, seed, out, sampler, steps, eta, batch_size, ckpt, no_ema, device):
    """Draw N images from a trained run (EMA weights when it has them)."""
    from . import api
    model = api.load_run(run_dir, ema=not no_ema, checkpoint_name=ckpt, device=api.pick_device(device))
    options = {k: v for k, v in {"sampler": sampler, "steps": steps, "eta": eta}.items() if v is not None}
    images = api.sample_images(model, n, seed=seed, batch_size=batch_size, progress=sys.stderr.isatty(), **options)
    path = api.write_images(images, out)
    click.echo(f"wrote {n} images to {path}")


@click.command("compare")
@click.argument("items", nargs=-1, required=True, metavar="MODEL_OR_RUN...")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option("--budget-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Train each model for this many minutes (same wall-clock budget for all).")
@click.option("--steps", type=click.IntRange(1), help="Train each model for this many steps instead.")
@click.option("-n", "n", type=click.IntRange(2), default=10000, show_default=True, help="Samples per model.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--extractor", default="mnist", show_default=True, help="Feature extractor (zoo list shows them).")
@click.option("--metrics", default="fid,is,kid,prc", show_default=True)
@click.option("--preset", "-p", "preset_specs", multiple=True, metavar="[MODEL=]PRESET",
              help="Preset for every model (e.g. tiny), or for one model (e.g. ddpm=small); repeatable.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override applied to every model.")
@click.option("--reference", "references", multiple=True, metavar="SPLIT_OR_PATH",
              help="Real images to score against: holdout, a split name, or a folder/.npz "
                   "(default: each run's training images). Repeat it to add an FID column per extra reference.")
@click.option("--sampler", help="Diffusion sampler for diffusion models (ddpm, ddim).")
@click.option("--sample-steps", type=click.IntRange(1), help="Diffusion sampling steps.")
@click.option("--device", default="auto", show_default=True, help="Device for sampling and scoring.")
@click.option("--title", default="zoo comparison", show_default=True)
def compare_cmd(items, out, budget_minutes, steps, n, seed, extractor, metrics, preset_specs, sets, references,
                sampler, sample_steps, device, title):
    """Train (what is not trained yet), evaluate and rank models side by side.

    \b
    Items are model names (trained into OUT/runs/NAME with the same budget) or existing
    run directories. Writes leaderboard.md/.csv/.json, samples.png, curves.png and a
    self-contained report.html. A model that fails is listed with its error.
    """
    from .compare import compare
    from .registry import registry
    preset, presets = None, {}
    for spec in preset_specs:
        name, sep, value = spec.rpartition("=")
        if sep and not (name and value):
            raise ZooError(f"--preset {spec!r}: write PRESET or MODEL=PRESET (e.g. --preset tiny, --preset ddpm=small)")
        if sep:
            presets[name] = value
        else:
            preset = value
    opts = {k: v for k, v in {"sampler": sampler, "steps": sample_steps}.items() if v is not None}
    sample_options = {name: opts for name, e in registry().models.items() if e.family == "diffusion"} if opts else None
    files = compare(items, out, budget_minutes=budget_minutes, steps=steps, n=n, seed=seed, extractor=extractor,
                    metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()), preset=preset, sets=sets,
                    device=device, sample_options=sample_options, title=title, presets=presets,
                    reference=references[0] if references else None, extra_references=references[1:],
                    echo=lambda m: click.echo(m, err=True))
    click.echo((Path(files["md"])).read_text().split("![samples]")[0].rstrip())
    click.echo(f"\nwrote {', '.join(str(p) for p in files.values())}")

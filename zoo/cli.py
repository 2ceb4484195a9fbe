"""The `zoo` command line: a thin layer over zoo's Python API."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .errors import ZooError

SET_HELP = "Override one config key, e.g. --set trainer.lr=1e-3 (repeatable; wins over -c and --preset)."


class ZooGroup(click.Group):
    """Prints ZooError as one line (exit 2, or the error's own code), never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ZooError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="zoo", prog_name="zoo")
def main():
    """zoo: train, sample and compare generative models (AE, VAE, GANs, DDPM, plugins).

    \b
    Quick start (MNIST by default):
      zoo list                          models, datasets, extractors
      zoo train ddpm                    train into runs/ddpm-TIMESTAMP
      zoo train vae --preset tiny --set trainer.max_steps=500
      zoo train --resume --out runs/X   continue an interrupted run
      zoo sample runs/X -n 64 --out grid.png
      zoo eval runs/X                   FID / IS / KID / precision-recall

    Data is read from --set data.root=DIR, else $ZOO_DATA, else ~/.cache/zoo/data.
    """


# --- registry views -----------------------------------------------------------------------
def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _param_count(name: str) -> str:
    import torch
    from .registry import create_model, model_config
    try:
        cfg = model_config(name)
        with torch.device("meta"):
            model = create_model(name, cfg)
        n = sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - a listing never fails because one model cannot be built
        return "?"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _warn_failures(reg) -> None:
    for f in reg.failures:
        click.echo(f"warning: plugin '{f.plugin}': {f.error}", err=True)


@main.command("list")
def list_cmd():
    """List registered models, datasets and feature extractors."""
    from .registry import registry
    reg = registry()
    rows = [[e.name, e.family, e.plugin, _param_count(e.name), ",".join(e.presets) or "-", e.description]
            for e in sorted(reg.models.values(), key=lambda e: e.name)]
    click.echo(_table(rows, ["model", "family", "plugin", "params", "presets", "description"]))
    click.echo()
    rows = [[d.name, d.plugin, f"{d.channels}x{d.image_size}x{d.image_size}", ",".join(d.splits), d.description]
            for d in sorted(reg.datasets.values(), key=lambda d: d.name)]
    click.echo(_table(rows, ["dataset", "plugin", "shape", "splits", "description"]))
    if reg.extractors:
        click.echo()
        rows = [[x.name, x.plugin, x.description] for x in sorted(reg.extractors.values(), key=lambda x: x.name)]
        click.echo(_table(rows, ["extractor", "plugin", "description"]))
    _warn_failures(reg)


@main.group("plugins", invoke_without_command=True)
@click.pass_context
def plugins_cmd(ctx):
    """Show loaded plugins (version, what they add) and plugins that failed to load.

    ZOO_PLUGINS=a,b loads only those entry points; ZOO_DISABLE_PLUGINS=c skips some.
    `zoo plugins new NAME` writes a new plugin package; the guide is docs/plugins.md.
    """
    if ctx.invoked_subcommand is not None:
        return
    from .registry import registry
    reg = registry()
    rows = []
    for p in reg.plugins:
        adds = [m.name for m in reg.models.values() if m.plugin == p.name]
        adds += [f"dataset:{d.name}" for d in reg.datasets.values() if d.plugin == p.name]
        adds += [f"extractor:{x.name}" for x in reg.extractors.values() if x.plugin == p.name]
        rows.append([p.name, p.distribution, p.version, p.module, ", ".join(adds) or "-"])
    click.echo(_table(rows, ["plugin", "package", "version", "module", "adds"]))
    if reg.failures:
        click.echo("\nfailed:")
        for f in reg.failures:
            click.echo(f"  {f.plugin}: {f.error}")


@plugins_cmd.command("new")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(), help="Folder to write the package into "
              "(must not exist or be empty) [default: ./zoo-NAME].")
def plugins_new(name, directory):
    """Write a ready, installable plugin package for a new model NAME.

    \b
    It holds pyproject.toml (the zoo.plugins entry point), a small working model
    with a `tiny` preset (zoo_NAME/model.py), tests using zoo.testing, and a README:
      zoo plugins new my-vae
      pip install -e zoo-my-vae && zoo list && zoo train my-vae --preset tiny
    The guide: docs/plugins.md.
    """
    from .scaffold import names, new_plugin
    target = new_plugin(name, directory)
    n = names(name)
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    click.echo(f"created plugin '{name}' (package {n['dist']}, import name {n['package']}) in {target}:")
    for f in files:
        click.echo(f"  {f}")
    click.echo(f"\nnext:\n  pip install -e {target}\n  zoo list                       # shows {name}\n"
               f"  zoo train {name} --preset tiny\n  pytest {target}\n"
               f"then edit {target / n['package'] / 'model.py'}")


@main.command("show-config")
@click.argument("model")
@click.option("--preset", "-p", help="A named preset of the model (e.g. tiny).")
@click.option("--config", "-c", "config_file", type=click.Path(), help="A YAML file of overrides.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def show_config(model, preset, config_file, sets):
    """Print MODEL's fully resolved config as YAML (defaults < preset < -c file < --set)."""
    from .registry import model_config
    click.echo(model_config(model, preset=preset, file=config_file, sets=sets).to_yaml(), nl=False)


# --- training -------------------------------------------------------------------------------
@main.command("train")
@click.argument("model", required=False)
@click.option("--preset", "-p", help="A named preset of the model (every built-in has 'tiny').")
@click.option("--config", "-c", "config_file", type=click.Path(), help="A YAML file of overrides.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Run directory [default: runs/MODEL-TIMESTAMP].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint and own config.")
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out.")
@click.option("--device", help="Shortcut for --set trainer.device=... (auto, cpu, cuda, cuda:N).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (automatic when stderr is not a terminal).")
@click.option("--gpus", type=int, default=1, show_default=True, help="Train on N GPUs (launches torchrun, DDP).")
def train_cmd(model, preset, config_file, sets, out, resume, force, device, quiet, gpus):
    """Train MODEL and write a run directory.

    \b
    The run directory gets config.yaml, meta.json, metrics.jsonl, samples/ grids,
    checkpoints/last.pt and samples.png. Ctrl-C saves a checkpoint; resume with
      zoo train --resume --out DIR [--set trainer.max_steps=N]
    """
    from . import api
    if gpus > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        _launch_torchrun(gpus)
    sets = list(sets) + ([f"trainer.device={device}"] if device else [])
    result = api.train(model, preset=preset, config_file=config_file, sets=sets, out=out, resume=resume,
                       force=force, quiet=True if quiet else None)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"{result.status}: {result.step} steps in {result.seconds:.1f}s -> {result.out_dir}")
    if result.status == "interrupted":
        sys.exit(130)


def _launch_torchrun(gpus: int) -> None:
    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a == "--gpus":
            skip = True
            continue
        if a.startswith("--gpus="):
            continue
        args.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}", "-m", "zoo",
           *args]
    os.execv(sys.executable, cmd)


# --- sampling -------------------------------------------------------------------------------
@main.command("sample")
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


@main.command("compare")
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


from .cli_eval import eval_cmd, eval_net  # noqa: E402 - the evaluation commands live in their own module

main.add_command(eval_cmd)
main.add_command(eval_net)


if __name__ == "__main__":  # pragma: no cover
    main()

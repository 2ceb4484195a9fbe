"""`zoo sample` and `zoo compare`: images from trained runs, and several models side by side."""
from __future__ import annotations

import contextlib
from pathlib import Path

import click

from .cli_common import LABEL_HELP, OPTION_HELP, label_plan, metrics_option, option_values
from .errors import ZooError

@contextlib.contextmanager
def clean_warnings():
    """Print each Python warning as one line, ``warning: <message>`` on stderr (no file, line or source),
    and each kind once per command, wherever in the code it was raised: messages that differ only in
    their numbers (the extractor trained on 9000 of 9000 or of 10000 reference images) count as one."""
    import re
    import warnings
    old = warnings.showwarning
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        kind = re.sub(r"\d+(\.\d+)?", "#", text)
        if kind not in shown:
            shown.add(kind)
            click.echo(f"warning: {text}", err=True)
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = old


# --- sampling -------------------------------------------------------------------------------
@click.command("sample")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("-n", "n", type=click.IntRange(1), default=64, show_default=True, help="Number of images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same images.")
@click.option("--out", "-o", required=True, type=click.Path(),
              help="grid.png (one grid), images.npz (uint8 N,H,W,C array) or a folder (one PNG each).")
@click.option("--option", "option_items", multiple=True, metavar="KEY=VALUE", help=OPTION_HELP)
@click.option("--sampler", help="Shortcut for --option sampler=NAME (DDPM: ddpm, ddim or dpm++).")
@click.option("--steps", help="Shortcut for --option steps=N (e.g. 50 DDIM steps).")
@click.option("--eta", help="Shortcut for --option eta=X (DDIM: 0 = deterministic).")
@click.option("--label", help=LABEL_HELP)
@click.option("--guidance", help="Shortcut for --option guidance=S: classifier-free guidance weight of a "
              "conditional run (models that declare it, e.g. DDPM; 0 = plain conditional sampling).")
@click.option("--batch-size", type=click.IntRange(1), default=500, show_default=True)
@click.option("--checkpoint", "ckpt", default="last.pt", show_default=True,
              help="Which file in checkpoints/ (best.pt: the best by periodic FID, where the run kept one).")
@click.option("--no-ema", is_flag=True, help="Use the raw weights even when the run has an EMA.")
@click.option("--device", default="auto", show_default=True)
def sample_cmd(run_dir, n, out, **opts):
    """Draw N images from a trained run (EMA weights when it has them), an export or hf://ORG/NAME[@REV].

    \b
    Options the model declares go through --option, checked before any work:
      zoo sample runs/ddpm -n 64 --out grid.png --option sampler=dpm++ --option steps=20

    \b
    A conditional run (model.conditional: true) draws the classes asked for:
      zoo sample runs/cddpm --label 7 -n 64 --out sevens.png --guidance 2
      zoo sample runs/cddpm --label all -n 100 --out classes.png
    """
    from . import api, sources
    options = option_values(opts["option_items"], sampler=("--sampler", opts["sampler"]),
                            steps=("--steps", opts["steps"]), eta=("--eta", opts["eta"]),
                            guidance=("--guidance", opts["guidance"]))
    cfg = sources.source_config(run_dir)  # before torch: a wrong RUN_DIR (or export, hf://) is an error at once
    labels, per_row = label_plan(opts["label"], cfg, n)
    n = len(labels) if labels is not None else n
    from .contract import check_sample_options
    from .registry import registry
    from .images import check_out
    check_out(out)
    options = check_sample_options(registry().model(cfg.model_name).cls, options, source="sampling options",
                                   name=cfg.model_name)
    with clean_warnings():
        model = sources.load(run_dir, ema=not opts["no_ema"], checkpoint_name=opts["ckpt"],
                             device=api.pick_device(opts["device"]))
        from .images import sample_labelled
        images, asked = sample_labelled(model, n, seed=opts["seed"], batch_size=opts["batch_size"], progress=True,
                                        labels=labels, **options)
        path = api.write_images(images, out, nrow=per_row or None, labels=asked)
    rows = f" ({per_row} per class, one row each)" if per_row else ""
    click.echo(f"wrote {n} images{rows} to {path}")


# --- comparing ------------------------------------------------------------------------------
@click.command("compare")
@click.argument("items", nargs=-1, required=True, metavar="MODEL_OR_RUN...")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option("--budget-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Train each model for this many minutes (same wall-clock budget for all).")
@click.option("--steps", type=click.IntRange(1), help="Train each model for this many steps instead.")
@click.option("-n", "n", type=click.IntRange(2), default=10000, show_default=True, help="Samples per model.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--extractor", help="Feature extractor (zoo list shows them) [default: the data's: mnist for 28x28 "
              "grayscale, else inception].")
@metrics_option("Comma-separated: {choices}, or a plugin's [default: {default}]. fid is required (the ranking).")
@click.option("--preset", "-p", "preset_specs", multiple=True, metavar="[MODEL=]PRESET",
              help="Preset for every model (e.g. tiny), or for one model (e.g. ddpm=small); repeatable.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override applied to every model.")
@click.option("--reference", "references", multiple=True, metavar="SPLIT_OR_PATH",
              help="Real images to score against: holdout, a split name, or a folder/.npz "
                   "(default: each run's training images). Repeat it to add an FID column per extra reference.")
@click.option("--option", "option_items", multiple=True, metavar="KEY=VALUE",
              help="A sampling option, passed to every compared model that declares it (repeatable; "
                   "`zoo list` shows them); one that no compared model declares is an error.")
@click.option("--sampler", help="Shortcut for --option sampler=NAME.")
@click.option("--sample-steps", help="Shortcut for --option steps=N (--steps is the training budget).")
@click.option("--fid-points", type=click.IntRange(0), default=8, show_default=True,
              help="Cheap FIDs during each training run, at most (its curve; the best checkpoint is ranked); 0 "
                   "turns periodic FID off and ranks the last checkpoint.")
@click.option("--fid-n", type=click.IntRange(2), default=500, show_default=True,
              help="Samples per periodic FID, at most (and at most -n; a short run takes fewer, never below 2 x "
                   "the extractor's feature dimension).")
@click.option("--fid-share", type=click.FloatRange(min=0), default=0.25, show_default=True,
              help="The periodic FID takes at most this fraction of each run's training time, planned from the "
                   "measured step and FID times (fewer points or samples on a short run, none if one does not fit).")
@click.option("--nll", is_flag=True, help="Also bits/dim of held-out images, for models with a likelihood "
              "(— for the others).")
@click.option("--nll-n", type=click.IntRange(1), help="With --nll: use the first N held-out images [default: all].")
@click.option("--nll-option", "nll_items", multiple=True, metavar="KEY=VALUE",
              help="With --nll: a likelihood option (repeatable), passed to every model whose likelihood takes it, "
                   "e.g. --nll-option timesteps=all (DDPM: all T terms of the bound instead of the 50-term estimate).")
@click.option("--device", default="auto", show_default=True, help="Device for sampling and scoring.")
@click.option("--title", default="zoo comparison", show_default=True)
def compare_cmd(items, out, **opts):
    """Train (what is not trained yet), evaluate and rank models side by side.

    \b
    Items are model names (trained into OUT/runs/NAME with the same budget), existing
    run directories, or exports (`zoo export` folders, hf://ORG/NAME[@REV]): those are
    scored as they are, never trained, and the leaderboard says so. Every name, preset,
    --set and --option is checked before anything trains. During training a cheap FID is
    taken up to --fid-points times per run, in at most --fid-share of its training time
    (the plan is printed); each model is ranked at its best checkpoint by that FID (as StudioGAN does), and its last
    checkpoint's FID is shown next to it. Writes leaderboard.md/.csv/.json, samples.png,
    curves.png (FID against time for every model, one loss panel per model),
    memorisation.png (samples next to their nearest training images) and a
    self-contained report.html. A model that fails is listed with its error, and the
    exit code is then 1. Runs in OUT/runs that finished are reused; interrupted ones resume.

    \b
      zoo compare ae vae gan ddpm --budget-minutes 10 --out study/
      zoo compare vae ddpm --steps 2000 --option sampler=dpm++ --nll --nll-option timesteps=100 --out s/

    The runs live under OUT/runs, so `tensorboard --logdir OUT/runs` overlays their
    curves (with zoo[tensorboard] installed, each run also writes RUN/tb).
    """
    import json

    from .compare import ModelsFailed, compare
    spec = _compare_spec(opts)
    with clean_warnings():
        files = compare(items, out, spec, echo=lambda m: click.echo(m, err=True))
    click.echo((Path(files["md"])).read_text().split("![samples]")[0].rstrip())
    click.echo(f"\nwrote {', '.join(str(p) for p in files.values())}")
    rows = json.loads(Path(files["json"]).read_text())["rows"]
    failed = [r["model"] for r in rows if r.get("error")]
    if failed:
        raise ModelsFailed(f"{len(failed)} of {len(rows)} models failed ({', '.join(failed)}): their errors are in "
                           f"{files['md']}")


def _compare_spec(opts: dict):
    """The :class:`~zoo.specs.CompareSpec` of the command line, checked before any heavy import."""
    from .config import parse_options
    from .specs import CompareSpec
    nll, nll_n, nll_items = opts["nll"], opts["nll_n"], opts["nll_items"]
    if (nll_n is not None or nll_items) and not nll:
        raise ZooError(f"{'--nll-n' if nll_n is not None else '--nll-option'} applies to the likelihood: add --nll")
    preset, presets = None, {}
    for spec in opts["preset_specs"]:
        name, sep, value = spec.rpartition("=")
        if sep and not (name and value):
            raise ZooError(f"--preset {spec!r}: write PRESET or MODEL=PRESET (e.g. --preset tiny, --preset ddpm=small)")
        if sep:
            presets[name] = value
        else:
            preset = value
    options = option_values(opts["option_items"], sampler=("--sampler", opts["sampler"]),
                            steps=("--sample-steps", opts["sample_steps"]))
    metrics, refs = opts["metrics"], opts["references"]
    return CompareSpec(budget_minutes=opts["budget_minutes"], steps=opts["steps"], n=opts["n"], seed=opts["seed"],
                       extractor=opts["extractor"], preset=preset, presets=presets, sets=tuple(opts["sets"]),
                       metrics=None if metrics is None else tuple(m.strip() for m in metrics.split(",") if m.strip()),
                       device=opts["device"], options=options, title=opts["title"],
                       reference=refs[0] if refs else None, extra_references=tuple(refs[1:]), nll=nll, nll_n=nll_n,
                       nll_options=parse_options(nll_items, "--nll-option"), fid_points=opts["fid_points"],
                       fid_n=opts["fid_n"], fid_share=opts["fid_share"])

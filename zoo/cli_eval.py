"""`zoo eval` and `zoo eval-net`: the evaluation harness on the command line (zoo/evaluate.py does the work)."""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import click

from .cli_common import OPTION_HELP, metrics_option, option_values
from .errors import ZooError

MNIST_TRAIN_STEPS = 1200


def result_table(r: dict) -> str:
    """The human-readable table of a result dict (``zoo eval``): each registered metric's lines (its
    declaration's ``table``; ± only where it means something), metrics on samples first, then the
    likelihood; ``—`` for what was asked but does not apply (a model with no likelihood)."""
    from .metrics import in_table_order
    rows = [row for metric in in_table_order() for row in metric.rows(r)]
    lines = [f"{name:<10} {value}" for name, value in rows if value not in (None, "-")]
    return "\n".join([f"{'metric':<10} value", f"{'-' * 10} {'-' * 16}", *lines])


@click.command("eval")
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--images", "images_path", type=click.Path(),
              help="Score these images instead of a run's samples: a folder of PNGs, or an .npz/.npy array "
                   "(uint8 0-255 or float 0-1; (N,H,W), (N,C,H,W) or (N,H,W,C)). Not a run directory. An .npz "
                   "with 'labels' (the class of each image) also gets label accuracy and intra-class FID.")
@click.option("-n", "n", type=click.IntRange(2),
              help="Samples to draw [default: 10000]; with --images, use the first N.")
@metrics_option("Comma-separated: {choices}, or a plugin's; none with --nll for the likelihood alone. "
                "[default: {default}]")
@click.option("--extractor", help="Feature extractor: mnist (zoo's MNIST classifier), inception (torch-fidelity's "
              "Inception-v3) or a plugin's (zoo list). [default: the one the dataset declares, else mnist for "
              "28x28 grayscale data, else inception]")
@click.option("--reference", help="Real images to compare against: the run's training images [default], "
              "holdout (its held-out images), a whole split (train, test), or a folder / .npz / .npy.")
@click.option("--option", "option_items", multiple=True, metavar="KEY=VALUE", help=OPTION_HELP)
@click.option("--sampler", help="Shortcut for --option sampler=NAME (DDPM: ddpm, ddim or dpm++).")
@click.option("--steps", help="Shortcut for --option steps=N.")
@click.option("--eta", help="Shortcut for --option eta=X.")
@click.option("--guidance", metavar="W[,W...]", help="Classifier-free guidance scale of a conditional run (models that "
              "declare it, e.g. ddpm): one value is --option guidance=W; several (0,1,2,4) are a sweep: FID, "
              "intra-class FID and label accuracy at each, a table, eval.json and a plot.")
@click.option("--out", "plot", type=click.Path(dir_okay=False), help="With a guidance sweep: the plot to write "
              "[default: RUN_DIR/guidance.png].")
@click.option("--nll", is_flag=True, help="Also measure the likelihood: bits/dim of the held-out images, for "
              "models that implement log_likelihood (— for the others).")
@click.option("--nll-n", type=click.IntRange(1), help="With --nll: use the first N held-out images [default: all].")
@click.option("--nll-option", "nll_items", multiple=True, metavar="KEY=VALUE",
              help="A likelihood option of the model (repeatable), e.g. --nll-option samples=256 for a VAE's "
                   "importance-weighted bound, timesteps=all for a DDPM's full bound (default: a 50-term "
                   "estimate).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed (same seed, same images).")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True,
              help="Images per batch for sampling, feature extraction and the likelihood.")
@click.option("--inception-weights", type=click.Path(dir_okay=False),
              help="Local copy of torch-fidelity's weights-inception-2015-12-05-6726825d.pth (no download).")
@click.option("--mnist-weights", type=click.Path(dir_okay=False),
              help="MNIST classifier weights from `zoo eval-net train` [default: the shipped ones].")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Where reference statistics are cached [default: $ZOO_CACHE, else ~/.cache/zoo/stats].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Change a data setting of the run (or, with --images, of the reference), e.g. "
                   "--set data.split=test --set data.holdout=1000.")
@click.option("--checkpoint", "ckpt", default="last.pt", show_default=True, help="Which file in checkpoints/.")
@click.option("--no-ema", is_flag=True, help="Use the raw weights even when the run has an EMA.")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout (for scripts).")
def eval_cmd(run_dir, images_path, **opts):
    """FID / IS / KID / precision-recall / mode coverage of a run's samples (or of --images) against real
    images, and with --nll the model's likelihood in bits/dim.

    \b
    Samples N images from RUN_DIR's model (EMA weights when it has them), compares them with the
    run's training images, prints a table and writes RUN_DIR/eval.json. RUN_DIR may also be an
    export (`zoo export`) or hf://ORG/NAME[@REV] (then no eval.json is written):
      zoo eval runs/ddpm --option sampler=ddim --option steps=50
      zoo eval runs/vae -n 2000 --metrics fid,is --reference holdout
      zoo eval runs/vae --nll --nll-option samples=256 --metrics none
      zoo eval runs/ddpm-cond --guidance 0,1,2,4 -n 1000 --reference holdout
      zoo eval --images samples.npz --set data.split=test --set data.holdout=1000 --json
    Reference statistics are computed once and cached. --extractor inception needs its weights
    file (cached by torch, downloaded, or --inception-weights PATH). docs/evaluation.md explains
    every number.
    """
    spec, options, overrides, scales = _eval_settings(run_dir, images_path, opts)  # before torch: typos cost nothing
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings come back in the result and are printed below
        if run_dir is not None:
            result = _eval_run(run_dir, spec, overrides, opts, scales)
        else:
            from .config import BASE, base_config, merge
            from .evaluate import evaluate
            from .images import read_images, read_labels
            data = merge(base_config()["data"].to_dict(), overrides.get("data"), source="--set", prefix="data.",
                         schema=BASE["data"])  # the user file's data settings, then --set
            result = evaluate(read_images(images_path), opts["reference"], spec, data=data,
                              labels=read_labels(images_path))
            result["images"] = str(images_path)
    import torch
    from . import __version__
    result.update({"sampler": options.get("sampler"), "sampling_steps": options.get("steps"),
                   "zoo": __version__, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "wall_seconds": round(time.time() - t0, 2)})
    from .sources import kind
    written = run_dir is not None and kind(run_dir) == "run"  # not into an export or the hub cache
    if run_dir is not None:
        result["run"] = str(run_dir)
        if scales:
            from .guidance_sweep import sweep_figure
            plot = opts["plot"] or (Path(run_dir) if written else Path(".")) / "guidance.png"
            result["plot"] = str(sweep_figure(result, plot))
    if written:
        (Path(run_dir) / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    if opts["as_json"]:
        click.echo(json.dumps(result))
    elif scales:
        from .guidance_sweep import sweep_table
        click.echo(f"{result['n']} samples of {run_dir} per guidance scale vs {result['reference']}; extractor "
                   f"{result['extractor']}")
        click.echo(sweep_table(result))
        wrote = f"{Path(run_dir) / 'eval.json'} and " if written else ""
        click.echo(f"wrote {wrote}{result['plot']} ({result['wall_seconds']:.1f} s)")
    else:
        if result.get("reference"):
            what = f"{result['n']} samples of {run_dir}" if run_dir else f"{result['n']} images from {images_path}"
            click.echo(f"{what} vs {result['reference']} ({result['n_reference']} images, statistics "
                       f"{result['reference_stats']}); extractor {result['extractor']}")
        if result.get("nll_images"):
            click.echo(f"likelihood of {result['nll_n']} images: {result['nll_images']} "
                       f"(D = {result['nll_dims']} dimensions)")
        click.echo(result_table(result))
        if written:
            click.echo(f"wrote {Path(run_dir) / 'eval.json'} ({result['wall_seconds']:.1f} s)")
    for w in result["warnings"]:
        click.echo(f"warning: {w}", err=True)


def _eval_settings(run_dir, images_path, opts: dict):
    """Check the command line before any work and build the :class:`~zoo.evaluate.EvalSpec` from it:
    ``(spec, sampling options, --set overrides, guidance scales of a sweep or [])``."""
    from .config import parse_options, parse_set
    from .eval_inputs import check_images_path
    from .guidance_sweep import check_sweep_args, parse_guidance
    from .metrics import parse_metrics
    from .specs import EvalSpec
    scales = parse_guidance(opts["guidance"])
    check_sweep_args(scales, opts["option_items"], opts["nll"], opts["plot"])
    if (run_dir is None) == (images_path is None):
        raise ZooError("give either a RUN_DIR to sample from or --images PATH to score (not both)"
                       if run_dir else "give a RUN_DIR to sample from, or --images PATH (a PNG folder or .npz)")
    overrides = parse_set(opts["sets"])
    if set(overrides) - {"data"}:
        raise ZooError("zoo eval --set only changes data.* settings, "
                       f"got {', '.join(sorted(set(overrides) - {'data'}))}")
    name, weights = _extractor_choice(opts["extractor"], opts["inception_weights"], opts["mnist_weights"])
    options = option_values(opts["option_items"], sampler=("--sampler", opts["sampler"]),
                            steps=("--steps", opts["steps"]), eta=("--eta", opts["eta"]),
                            guidance=("--guidance", scales[0] if len(scales) == 1 else None))
    nll, nll_options = opts["nll"], parse_options(opts["nll_items"], "--nll-option")
    if nll_options and not nll:
        raise ZooError("--nll-option applies to the likelihood: add --nll")
    if opts["nll_n"] is not None and not nll:
        raise ZooError("--nll-n applies to the likelihood: add --nll")
    if images_path is not None:
        if options or scales:
            raise ZooError(f"--option/--sampler/--steps/--eta/--guidance ({', '.join(options) or 'guidance'}) apply "
                           f"to sampling a run, not to --images")
        if nll:
            raise ZooError("--nll needs a model to ask for log p(x): use `zoo eval RUN --nll`, not --images")
        check_images_path(images_path)
    if opts["metrics"] is not None:
        parse_metrics(opts["metrics"], allow_empty=nll and run_dir is not None)
    device = opts["device"]
    spec = EvalSpec(metrics=opts["metrics"], n=opts["n"], seed=opts["seed"], extractor=name, extractor_weights=weights,
                    batch_size=opts["batch_size"], device=None if device == "auto" else device,
                    cache_dir=opts["cache_dir"], progress=True, sample_options=options, nll=nll,
                    nll_n=opts["nll_n"], nll_options=nll_options)
    return spec, options, overrides, scales if len(scales) > 1 else []


def _eval_run(run_dir, spec, overrides: dict, opts: dict, scales=()) -> dict:
    """Check everything a run's evaluation needs from its config (options, data, reference, guidance), then
    load its model and evaluate it (at each guidance scale of a sweep)."""
    from dataclasses import replace

    from . import api, sources
    cfg = sources.source_config(run_dir)  # before torch: a wrong RUN_DIR (or export, hf://) is an error at once
    from .config import Config, merge
    from .contract import check_likelihood_options, check_sample_options
    from .evaluate import evaluate
    from .metrics import parse_metrics
    from .references import reference_for_config
    from .registry import registry
    cls = registry().model(cfg.model_name).cls
    if opts["guidance"] is not None:
        from .guidance_sweep import check_guidance
        check_guidance(cls, cfg, run_dir)
        for w in scales:
            check_sample_options(cls, {"guidance": w}, source="--guidance", name=cfg.model_name)
    spec = replace(spec, sample_options=check_sample_options(cls, spec.sample_options, name=cfg.model_name))
    if spec.nll:   # before any work: a typo costs nothing
        spec = replace(spec, nll_options=check_likelihood_options(cls, spec.nll_options, name=cfg.model_name))
    model = sources.load(run_dir, ema=not opts["no_ema"], checkpoint_name=opts["ckpt"],
                         device=api.pick_device(opts["device"]))
    cfg = Config(merge(model.cfg.to_dict(), overrides, source="--set"))
    ref = reference_for_config(cfg, opts["reference"]) if parse_metrics(spec.metrics, allow_empty=spec.nll) else None
    spec = replace(spec, device=None, config=cfg)
    if scales:
        from .guidance_sweep import sweep
        return sweep(model, ref, spec, scales, echo=lambda m: click.echo(m, err=True))
    return evaluate(model, ref, spec)


def _extractor_choice(extractor, inception_weights, mnist_weights):
    if inception_weights and mnist_weights:
        raise ZooError("--inception-weights and --mnist-weights belong to different extractors: pass one")
    implied = "inception" if inception_weights else "mnist" if mnist_weights else None
    if implied and extractor and extractor != implied:
        raise ZooError(f"--{implied}-weights is for --extractor {implied}, not --extractor {extractor}")
    return extractor or implied, inception_weights or mnist_weights


@click.group("eval-net")
def eval_net():
    """The MNIST classifier behind --extractor mnist (shipped as zoo/assets/mnist_cnn.pt)."""


@eval_net.command("train")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default="mnist_cnn.pt", show_default=True,
              help="Weights file to write (zoo/assets/mnist_cnn.pt replaces the shipped one).")
@click.option("--data", type=click.Choice(["auto", "train", "test-holdout"]), default="auto", show_default=True,
              help="train: MNIST's 60k training split, validated on the test split; test-holdout: the seeded "
                   "9k slice of the test split, validated on the 1k held out; auto: train when its files exist.")
@click.option("--data-root", type=click.Path(file_okay=False),
              help="Folder with the MNIST IDX files [default: $ZOO_DATA, else ~/.cache/zoo/data].")
@click.option("--steps", type=click.IntRange(1), default=MNIST_TRAIN_STEPS, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same weights (same machine).")
@click.option("--device", default="cpu", show_default=True)
def eval_net_train(out, data, data_root, steps, batch_size, seed, device):
    """Train the MNIST feature-extractor classifier (a few minutes on a CPU).

    \b
    Reproduce the shipped weights:  zoo eval-net train --out zoo/assets/mnist_cnn.pt
    Use other weights:              zoo eval RUN --mnist-weights PATH
    The file records which images trained it; zoo eval warns when the reference images are among them.
    """
    from .extractors import train_mnist_classifier
    command = f"zoo eval-net train --out {out} --data {data} --steps {steps} --batch-size {batch_size} --seed {seed}"
    meta = train_mnist_classifier(out, data=data, root=data_root, steps=steps, batch_size=batch_size, seed=seed,
                                  device=device, echo=lambda m: click.echo(m, err=True),
                                  progress=sys.stderr.isatty(), command=command)
    click.echo(f"validation accuracy {meta['val_accuracy'] * 100:.2f}% on {meta['validation']} after {steps} steps "
               f"({meta['train_seconds']:.0f} s) -> {out}")


@eval_net.command("info")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def eval_net_info(path):
    """Show what trained the MNIST classifier weights PATH [default: the shipped ones]."""
    from .extractors import MNIST_WEIGHTS, load_mnist_weights
    _, meta = load_mnist_weights(path)
    click.echo(f"{path or MNIST_WEIGHTS}:")
    for k, v in meta.items():
        click.echo(f"  {k}: {v}")

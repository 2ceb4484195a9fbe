"""The importable API behind the CLI: train, resume, load a run, sample.

Importing it imports no torch: the CLI checks a command's arguments, files and config first, and torch
loads when the work starts (``sample_images`` and ``write_images`` are zoo.images', loaded on first use).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from .config import BASE, Config, defaults, load_yaml, merge, parse_set
from .errors import ZooError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    import torch


def __getattr__(name: str):
    if name in ("sample_images", "write_images"):  # part of the API; zoo.images imports torch
        from . import images
        return getattr(images, name)
    raise AttributeError(f"module 'zoo.api' has no attribute '{name}'")


def default_out_dir(model_name: str) -> Path:
    return Path("runs") / f"{model_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_config(out_dir: str | Path, sets=()) -> Config:
    """A run's own resolved config (config.yaml), with ``--set`` overrides applied. Keys added to zoo
    since the run started take their defaults."""
    path = Path(out_dir) / "config.yaml"
    check_run_dir(out_dir)
    cfg, schema = with_new_keys(load_yaml(path), f"'{path}'")
    return Config(merge(cfg, parse_set(sets), source="--set", schema=schema))


def with_new_keys(cfg: dict, source: str) -> tuple[dict, dict]:
    """``(cfg, schema)``: a run's saved config with the keys added to zoo and to its model since the run
    started at their defaults, and the schema that checks it (the schema lets nullable keys hold null)."""
    from .registry import model_schema
    try:
        schema = model_schema(str(cfg.get("model_name")))
    except ZooError:  # a model no longer installed: the run's own values stand for its declarations
        schema = {**BASE, "model": cfg.get("model", {})}
    return merge(defaults(schema), cfg, source=source, strict=False, schema=schema), schema


def check_run_dir(run_dir: str | Path) -> None:
    """A one-line error when ``run_dir`` does not exist, or is a folder but not a zoo run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        try:
            near = [p.name for p in run_dir.parent.iterdir() if p.is_dir()]
        except OSError:
            near = []
        raise ZooError(f"run directory '{run_dir}' does not exist{did_you_mean(run_dir.name, near)}")
    if not (run_dir / "config.yaml").is_file():
        raise ZooError(f"'{run_dir}' is not a zoo run directory (no config.yaml)")


def check_data_root(cfg: Config, out_dir, sets=()) -> None:
    """On --resume, the run's recorded data root wins over ``$ZOO_DATA`` (the run continues on the data it
    started with); ``--set data.root=DIR`` changes it. Says so in one line when the environment points
    elsewhere, and is a one-line error when the recorded root is gone."""
    import os
    import sys
    recorded = cfg.data.get("root")
    if not recorded or "root" in (parse_set(sets).get("data") or {}):
        return
    env = os.environ.get("ZOO_DATA")
    hint = f" (ZOO_DATA points to {env}: pass --set data.root={env} to use it)" if env else ""
    if not Path(recorded).is_dir():
        raise ZooError(f"this run's data root '{recorded}' (in {Path(out_dir) / 'config.yaml'}) no longer exists: "
                       f"pass --set data.root=DIR{hint}")
    if env and Path(env).expanduser().resolve() != Path(recorded).resolve():
        print(f"note: resuming on this run's data root {recorded} (config.yaml), not ZOO_DATA={env}; "
              f"pass --set data.root={env} to switch", file=sys.stderr)


def periodic_fid(cfg: Config):
    """The evaluation callback ``zoo train`` passes to the trainer when ``trainer.eval_every`` (or
    ``eval_at_minutes``) is set:
    a quick FID of ``trainer.eval_n`` samples against the training images' statistics."""
    from .evaluate import quick_fid
    n = int(cfg.trainer.eval_n)

    def evaluate(model) -> dict:
        return {"fid": float(quick_fid(model, cfg, n))}
    return evaluate


def train(model: str | None = None, *, preset: str | None = None, config_file=None, sets=(), out=None,
          resume: bool = False, force: bool = False, quiet: bool = True, overrides=None, evaluate=None,
          resume_hint: bool = True):
    """Train ``model`` (or resume the run in ``out``); returns a ``RunResult``.

    ``quiet=False`` prints the header and progress (zoo/progress.py: a bar at a terminal, else lines on
    stdout). ``evaluate(model) -> {"metric": value}`` is called every ``trainer.eval_every`` steps and at
    ``trainer.eval_at_minutes`` (default: the quick FID, :func:`periodic_fid`). An interrupted run's result has
    ``status="interrupted"`` and the command that resumes it in ``resume``; ``resume_hint=False``: an interrupt
    prints no ``zoo train --resume`` command (the caller says how to go on).

    >>> zoo.train("vae", preset="tiny", sets=["trainer.max_steps=100"], out="runs/vae")
    """
    from .registry import model_config
    if resume:
        if out is None:
            raise ZooError("--resume needs --out DIR: the run directory to continue")
        cfg = run_config(out, sets)
        if model is not None and model != cfg.model_name:
            raise ZooError(f"run '{out}' trains '{cfg.model_name}', not '{model}' (drop the model name to resume)")
        check_data_root(cfg, out, sets)
    else:
        if model is None:
            raise ZooError("name a model to train (`zoo list` shows them), or pass --resume --out DIR")
        cfg = model_config(model, preset=preset, file=config_file, sets=sets, overrides=overrides)
        cfg.setdefault("preset", preset)  # for the header (zoo.registry records it where presets follow the device)
    out = Path(out) if out is not None else default_out_dir(cfg.model_name)
    if evaluate is None and (cfg.trainer.eval_every or cfg.trainer.eval_at_minutes):
        evaluate = periodic_fid(cfg)
    from .trainer import fit  # torch: the arguments and the config are checked
    return fit(cfg, out, resume=resume, force=force, quiet=bool(quiet), evaluate=evaluate,
               resume_hint=resume_hint)


def load_run(run_dir: str | Path, *, ema: bool = True, checkpoint_name: str = "last.pt", device="cpu"):
    """The model of a run, ready to sample: EMA weights when the run has them.

    >>> model = zoo.load_run("runs/ddpm")
    >>> images = model.sample(16, torch.Generator().manual_seed(0))   # (16, C, H, W) in [0, 1]
    >>> sevens = model.sample(16, torch.Generator().manual_seed(0), labels=7)  # a conditional run
    """
    from . import checkpoint
    from .registry import complete_data_config, registry
    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / checkpoint_name
    if not path.is_file():
        check_run_dir(run_dir)
        raise ZooError(f"run '{run_dir}' has no checkpoints/{checkpoint_name} yet (train it first)")
    ckpt = checkpoint.load_from_run(path, resume=False)
    cfg = Config(with_new_keys(ckpt["config"], f"'{path}'")[0])
    entry = registry().model(cfg.model_name)
    complete_data_config(cfg)
    model = entry.cls(cfg)
    weights = ckpt["ema"]["model"] if ema and ckpt.get("ema") else ckpt["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise ZooError(f"checkpoint '{path}' does not match model '{cfg.model_name}': "
                       f"{str(e).strip().splitlines()[0][:200]}") from None
    model.step = int(ckpt["step"])
    return model.to(device).eval()


def pick_device(name: str = "auto") -> torch.device:
    from .device import resolve_device
    return resolve_device(name)

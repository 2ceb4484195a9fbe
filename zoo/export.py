"""`zoo export RUN OUT`: a trained run as a folder that travels -- the ecosystem's layout (diffusers, timm,
``PyTorchModelHubMixin``), readable by :func:`zoo.load` (zoo/sources.py) anywhere a run is accepted.

``OUT/model.safetensors``  the sampling weights (EMA where the run has one) and fitted buffers (the AE's latent
                           density): exactly the state dict of the model ``zoo sample RUN`` draws from. No pickle.
``OUT/config.json``        the resolved config (the machine's data root left out), the model's registered name,
                           the plugin package and version that provide it, the image shape and range, the step,
                           how it was trained, and the SHA-256 of model.safetensors (checked on every load).
``OUT/README.md``          a model card with Hub front matter (``library_name: zoo``, tags, dataset), training and
                           scores (n, extractor, reference), and ``samples.png``, a grid of 64 samples.
``OUT/eval.json``          the scores on the card: the run's ``eval.json``, or measured now with ``--eval``.

Why safetensors rather than zoo's own checkpoint format: it is a plain header plus raw tensor bytes, so reading
one cannot run code, it loads lazily and fast, and every hub tool already reads it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from .errors import ZooError
from .sources import CONFIG, FORMAT, WEIGHTS, sha256

CHECKPOINTS = {"last": "last.pt", "best": "best.pt"}
GRID = "samples.png"


def export(run, out, *, checkpoint: str = "last", eval_n: int | None = None, force: bool = False,
           hub_id: str | None = None, echo=print) -> Path:
    """Write the export of run ``run`` into ``out`` (atomically: a folder appears whole or not at all).
    ``eval_n``: measure the scores now with that many samples; ``hub_id``: the card's hub name."""
    from . import api
    run, out = Path(run), Path(out)
    name = _check(run, out, checkpoint, force)
    model = api.load_run(run, checkpoint_name=name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=_parent(out)))
    try:
        meta = write_weights(model, tmp, run, name)
        echo(f"wrote {WEIGHTS} ({(tmp / WEIGHTS).stat().st_size / 1e6:.2f} MB, step {model.step})")
        scores = measure(model, eval_n, echo) if eval_n else _run_scores(run)
        if scores:
            (tmp / "eval.json").write_text(json.dumps(scores, indent=2) + "\n")
        meta["scores"] = _score_summary(scores)
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
        write_grid(model, tmp / GRID)
        from .model_card import card
        (tmp / "README.md").write_text(card(meta, scores, f"hf://{hub_id}" if hub_id else str(out)))
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check(run: Path, out: Path, checkpoint: str, force: bool) -> str:
    """Before any work: the run, its checkpoint and an empty (or --force) target; returns the checkpoint file."""
    from .api import check_run_dir
    check_run_dir(run)
    if checkpoint not in CHECKPOINTS:
        raise ZooError(f"--checkpoint {checkpoint!r}: choose best or last")
    name = CHECKPOINTS[checkpoint]
    if not (run / "checkpoints" / name).is_file():
        fix = "train it first" if checkpoint == "last" else \
            "it logged no periodic FID (trainer.eval_every / eval_at_minutes): use --checkpoint last"
        raise ZooError(f"run '{run}' has no checkpoints/{name}: {fix}")
    if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents:
        raise ZooError(f"OUT '{out}' is inside the run: export to a folder of its own")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ZooError(f"'{out}' exists and is not empty: pass --force to replace it, or choose another OUT")
    return name


def _parent(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.parent


def _replace(tmp: Path, out: Path) -> None:
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    os.replace(tmp, out)
    os.chmod(out, 0o755)  # mkdtemp made it 0700


def write_weights(model, folder: Path, run: Path, checkpoint: str) -> dict:
    """``model.safetensors`` (each tensor stored whole and contiguous) and the metadata config.json records."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt", "zoo": FORMAT})
    os.chmod(folder / WEIGHTS, 0o644)
    ema = bool(model.cfg.get("ema", {}).get("enabled"))
    from .registry import registry
    return {"format": FORMAT, "model_name": model.cfg.model_name, "plugin": plugin_of(model.cfg.model_name),
            "family": registry().model(model.cfg.model_name).family,
            "step": int(model.step), "weights": {"file": WEIGHTS, "sha256": sha256(folder / WEIGHTS),
                                                 "checkpoint": checkpoint, "ema": ema,
                                                 "tensors": len(tensors),
                                                 "parameters": sum(p.numel() for p in model.parameters())},
            "image_shape": list(model.image_shape), "data_range": list(model.data_range),
            "training": training_info(run, model), "config": portable_config(model.cfg)}


def portable_config(cfg) -> dict:
    """The resolved config without what belongs to the training machine: the data root (the loading
    machine's ``$ZOO_DATA`` or default applies)."""
    out = json.loads(json.dumps(cfg.to_dict()))
    out.get("data", {})["root"] = None
    return out


def plugin_of(model_name: str) -> dict:
    """The plugin that registers ``model_name``: entry-point name, distribution (what to pip install), version."""
    from .registry import registry
    reg = registry()
    plugin = reg.model(model_name).plugin
    info = next((p for p in reg.plugins if p.name == plugin), None)
    return {"name": plugin, "package": info.distribution if info else "?", "version": info.version if info else "?"}


def training_info(run: Path, model) -> dict:
    """How the run was trained, from meta.json and metrics.jsonl."""
    meta = _json(run / "meta.json") or {}
    seconds = None
    log = run / "metrics.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("step", -1) <= model.step and "time" in row:
                seconds = row["time"]
    return {"steps": int(model.step), "seconds": round(seconds, 1) if seconds is not None else None,
            "device": meta.get("device"), "device_name": meta.get("device_name"),
            "world_size": meta.get("world_size"), "torch": meta.get("torch_version"),
            "zoo": meta.get("zoo_version"), "started": meta.get("started"), "preset": model.cfg.get("preset")}


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _run_scores(run: Path) -> dict | None:
    scores = _json(run / "eval.json")
    if scores:
        scores["source"] = f"the run's eval.json ({scores.get('date', 'undated')}; `zoo eval` does not record " \
                           f"which checkpoint it scored)"
    return scores


def measure(model, n: int, echo=print) -> dict:
    """The default metrics of ``n`` samples against the run's training images, as ``zoo eval`` measures them."""
    import torch

    from . import __version__
    from .evaluate import evaluate
    from .references import reference_for_config
    from .specs import EvalSpec
    echo(f"measuring the scores of {n} samples (--eval)")
    t0 = time.time()
    result = evaluate(model, reference_for_config(model.cfg, None), EvalSpec(n=n, seed=0))
    result.update({"zoo": __version__, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "wall_seconds": round(time.time() - t0, 2), "source": "measured by zoo export --eval"})
    return result


def _score_summary(scores: dict | None) -> dict | None:
    if not scores:
        return None
    from .metrics import result_keys
    return {k: v for k, v in scores.items() if k in result_keys() or k in ("n", "extractor", "reference", "source")}


def write_grid(model, path: Path, n: int = 64) -> None:
    from .images import sample_images, write_images
    write_images(sample_images(model, n, seed=0), path)

"""Checkpoints: written atomically, read without unpickling code.

``save`` writes to a temporary file in the same folder, fsyncs it, and renames
it over the target, so a process killed at any instant leaves the previous
checkpoint whole. ``load`` uses ``torch.load(weights_only=True)``: a file
crafted to run code when unpickled is refused, never executed.
"""
from __future__ import annotations

import os
import pickle
import random
import shlex
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch

from .errors import ZooError

FORMAT = "zoo-checkpoint-1"


def save(obj: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **obj}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


class Damaged(ZooError):
    """A checkpoint file that cannot be read: truncated, overwritten, or not one zoo wrote."""


def load(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"checkpoint '{path}' not found")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files that are not its own
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line]
        if not blocked:  # not a file torch.save wrote
            raise Damaged(f"checkpoint '{path}' is damaged (truncated or corrupt)") from None
        raise ZooError(f"checkpoint '{path}' was refused: it holds objects other than tensors and plain data "
                       f"({blocked[0][:200]}); zoo never unpickles code") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError):
        empty = " -- the file is empty" if path.stat().st_size == 0 else ""
        raise Damaged(f"checkpoint '{path}' is damaged (truncated or corrupt{empty})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise Damaged(f"'{path}' is not a zoo checkpoint (no '{FORMAT}' marker)")
    return obj


def load_from_run(path: Path, resume: bool) -> dict:
    """:func:`load` a run's checkpoint; a damaged one is an error that also says what to do: use another
    checkpoint the run kept, or train it again."""
    try:
        return load(path)
    except Damaged as e:
        raise Damaged(f"{e}; {way_forward(Path(path), resume)}") from None


def way_forward(path: Path, resume: bool) -> str:
    run = path.parent.parent
    again = f"zoo train {_model_name(run)} -c {shlex.quote(str(run / 'config.yaml'))} " \
            f"--out {shlex.quote(str(run))} --force"
    spare = next((p for p in sorted(path.parent.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
                  if p.name != path.name and _intact(p)), None)
    if spare is None:
        return f"no other checkpoint is kept in {path.parent}; start over: {again}"
    if resume:
        return (f"resume from {spare.name}, the newest other checkpoint it kept: cp {shlex.quote(str(spare))} "
                f"{shlex.quote(str(path))}, then zoo train --resume --out {shlex.quote(str(run))} again; "
                f"or start over: {again}")
    return f"use the other checkpoint it kept with --checkpoint {spare.name}, or train it again: {again}"


def _intact(path: Path) -> bool:
    try:
        load(path)
        return True
    except ZooError:
        return False


def _model_name(run: Path) -> str:
    import yaml
    try:
        return str(yaml.safe_load((run / "config.yaml").read_text())["model_name"])
    except Exception:  # noqa: BLE001 - only for the hint
        return "MODEL"


def load_into(ckpt: dict, path, *, model, ema, optimizers: dict, schedulers: dict, scalers: dict) -> None:
    """Load a training checkpoint's weights, EMA, optimizer, scheduler and grad-scaler states into freshly
    built objects; a mismatch (another model size, other optimizers) is a one-line error."""
    try:
        model.load_state_dict(ckpt["model"])
        if ema is not None:
            if ckpt.get("ema") is None:
                ema.model.load_state_dict(ckpt["model"])
            else:
                ema.load_state_dict(ckpt["ema"])
        if set(ckpt["optimizers"]) != set(optimizers):
            raise ValueError(f"optimizers {sorted(ckpt['optimizers'])} != {sorted(optimizers)}")
        for k, o in optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in schedulers.items():
            s.load_state_dict(ckpt["schedulers"][k])
        for k, s in scalers.items():
            s.load_state_dict(ckpt["scalers"][k])
    except (RuntimeError, ValueError, KeyError) as e:
        lines = str(e).strip().splitlines()
        detail = " ".join(line.strip() for line in lines[:3])[:300]
        raise ZooError(f"checkpoint '{path}' does not match this model/config: {detail}") from None


# --- random-number states (a resumed run continues the same streams) ---------------------------------
def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x

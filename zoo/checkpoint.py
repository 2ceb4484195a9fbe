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
import tempfile
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


def load(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"checkpoint '{path}' not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsafe content"
        raise ZooError(f"checkpoint '{path}' was refused: it holds objects other than tensors and plain data "
                       f"({first[:160]}); zoo never unpickles code") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise ZooError(f"checkpoint '{path}' is truncated or corrupt ({type(e).__name__}: "
                       f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else 'unreadable'})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ZooError(f"'{path}' is not a zoo checkpoint (no '{FORMAT}' marker)")
    return obj


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

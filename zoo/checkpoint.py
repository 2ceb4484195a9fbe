"""Checkpoints: written atomically, read without unpickling code.

``save`` writes to a temporary file in the same folder, fsyncs it, and renames
it over the target, so a process killed at any instant leaves the previous
checkpoint whole. ``load`` uses ``torch.load(weights_only=True)``: a file
crafted to run code when unpickled is refused, never executed.
"""
from __future__ import annotations

import os
import pickle
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

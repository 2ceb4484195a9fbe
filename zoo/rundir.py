"""The run directory: created only once a run can start, its files, and what a resumed run rewinds.

``config.yaml`` (every resolved value, the absolute data root included), ``meta.json`` (versions, device,
git commit, command), ``metrics.jsonl`` (the record: one JSON row per log step and per evaluation),
``samples/step-XXXXXX.png``, ``checkpoints/{last,best,step-XXXXXX}.pt``, ``samples.png`` and, when
enabled, ``tb/`` (TensorBoard). While a run writes, ``.zoo.lock`` holds its PID: one writer at a time
(zoo/runlock.py).
"""
from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from . import paths, runlock
from .errors import ZooError

RUN_FILES = ("config.yaml", "meta.json", "metrics.jsonl", "samples.png", "eval.json", "guidance.png", "samples",
             "checkpoints", "tb")


def check_target(out_dir: Path, resume: bool, force: bool) -> None:
    """Fail early (before anything is built or written) when ``out_dir`` cannot be used: another zoo
    process writes it, nothing to resume, not empty, or not a folder zoo can write."""
    if out_dir.is_dir():
        runlock.check_free(out_dir)
    check_contents(out_dir, resume, force)
    paths.check_writable(out_dir, "run directory")


def check_contents(out_dir: Path, resume: bool, force: bool) -> None:
    if resume:
        if not (out_dir / "checkpoints" / "last.pt").is_file():
            raise ZooError(f"nothing to resume in '{out_dir}': no checkpoints/last.pt (start it without --resume)")
    elif out_dir.is_dir() and any(p.name != runlock.LOCK_NAME for p in out_dir.iterdir()) and not force:
        raise ZooError(f"run directory '{out_dir}' is not empty: pass --force to overwrite it, "
                       f"or --resume to continue it")


def create(out_dir: Path, resume: bool, force: bool) -> tuple[list[Path], runlock.RunLock | None]:
    """Make ``out_dir`` ready: create it, lock it for this process (zoo/runlock.py), check it again now
    that no other zoo process can write it, and with --force clear zoo's files from it (keeping the
    user's own). Returns the folders this call created, so that a run failing before it writes anything
    can remove them again (:func:`remove_if_empty`, after releasing the lock), and the lock."""
    check_target(out_dir, resume, force)
    created = [p for p in [out_dir, *out_dir.parents] if not p.exists()]
    paths.make_dir(out_dir, "run directory")
    lock = None
    try:
        lock = runlock.acquire(out_dir)
        check_contents(out_dir, resume, force)
        if not resume:
            for name in RUN_FILES:
                p = out_dir / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
    except BaseException:
        if lock is not None:
            lock.release()
        remove_if_empty(created)
        raise
    return created, lock


def remove_if_empty(created: list[Path]) -> None:
    """Remove the folders :func:`create` made, innermost first, while they are still empty: a failed
    ``zoo train`` leaves no empty timestamped run directory behind."""
    for p in created:
        try:
            p.rmdir()
        except OSError:
            return  # not empty (or gone): keep it and its parents


def truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from (and a half-written last line)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            pass
    path.write_text("".join(k + "\n" for k in keep))


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def zoo_version() -> str:
    try:
        return version("zoo")
    except PackageNotFoundError:
        return "0.0.0+src"


def write_meta(out_dir: Path, cfg, device: torch.device, world: int, resume: bool) -> None:
    """``meta.json``: what ran where; a resumed run appends its start time to ``resumed``."""
    meta = {
        "model": cfg.model_name, "seed": cfg.seed, "zoo_version": zoo_version(), "torch_version": torch.__version__,
        "python_version": platform.python_version(), "platform": platform.platform(),
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(), "world_size": world, "git_commit": git_commit(),
        "command": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = out_dir / "meta.json"
    if resume and path.is_file():
        old = json.loads(path.read_text())
        old.setdefault("resumed", []).append(meta["started"])
        meta = old
    path.write_text(json.dumps(meta, indent=2) + "\n")

"""What `zoo eval` is asked to score, checked without torch: an --images path.

``zoo eval`` checks these before it imports the evaluation harness (zoo/evaluate.py, which imports
torch), so a typo is a one-line error at once.
"""
from __future__ import annotations

from pathlib import Path

from .errors import ZooError


def run_dir_of(folder: Path) -> Path | None:
    """The zoo run directory ``folder`` is (config.yaml next to checkpoints/ or metrics.jsonl), or whose
    ``samples/`` grid folder it is; else None."""
    def is_run(d: Path) -> bool:
        return (d / "config.yaml").is_file() and ((d / "checkpoints").is_dir() or (d / "metrics.jsonl").is_file())
    if is_run(folder):
        return folder
    if folder.name == "samples" and is_run(folder.parent):
        return folder.parent
    return None


def check_images_path(path) -> Path:
    """``path`` (``~`` expanded) when it can hold images to score: a folder that is not a run directory,
    or an existing ``.npz`` / ``.npy`` file; else a one-line error saying what to pass."""
    p = Path(path).expanduser()
    if p.is_dir():
        run = run_dir_of(p)
        if run is not None:
            raise ZooError(f"'{path}' is {'the samples folder of ' if run != p else ''}a zoo run directory: its PNGs "
                           f"are training-time sample grids, not samples -- score its model with `zoo eval {run}` "
                           f"(or write samples with `zoo sample {run} -n 10000 --out FOLDER` and pass that)")
        return p
    if not p.exists():
        raise ZooError(f"'{path}' does not exist (pass a folder of PNG images, an .npz or an .npy file)")
    if p.suffix.lower() not in (".npz", ".npy"):
        raise ZooError(f"'{path}' is not a folder, .npz or .npy file (pass a folder of PNG images or an image array)")
    return p

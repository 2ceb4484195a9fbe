"""Images out of a model: sampling in batches, grids, .npz arrays and PNG folders.

Shared by the trainer (sample grids), ``zoo sample``, the evaluation harness and ``zoo compare``.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .device import autocast, resolve_precision
from .errors import ZooError


def save_grid(images: torch.Tensor, path: str | Path) -> None:
    """Save [0, 1] images as one roughly square grid (torchvision's ``make_grid``)."""
    from torchvision.utils import make_grid, save_image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = max(1, int(math.ceil(math.sqrt(len(images)))))
    save_image(make_grid(images.float().cpu(), nrow=nrow, padding=2, pad_value=1.0), path)


def sample_images(model, n: int, seed: int = 0, batch_size: int = 500, progress: bool = False,
                  **options) -> torch.Tensor:
    """``n`` images in [0, 1] from ``model`` in batches, on the model's device; same seed, same images.
    ``progress``: a bar on a terminal, else a line on stderr every 30 s (:class:`zoo.progress.Heartbeat`)."""
    from .progress import Heartbeat
    device = model.device
    g = torch.Generator(device=device).manual_seed(int(seed))
    amp = resolve_precision("auto", device)
    out = []
    with torch.no_grad(), Heartbeat(n, "sampling", "img", show=progress) as bar:
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            bar.doing(b)
            with autocast(device, amp):
                x = model.sample(b, g, **options)
            out.append(x.float().clamp(0, 1).cpu())
            bar.update(b)
    return torch.cat(out)


def write_images(images: torch.Tensor, out: str | Path) -> Path:
    """Save [0, 1] images: a grid for ``*.png``, a uint8 ``(N, H, W, C)`` array
    (key ``images``) for ``*.npz``, else one PNG per image in the folder ``out``."""
    from torchvision.utils import save_image
    from .data import to_uint8
    out = Path(out)
    if out.suffix.lower() == ".png":
        save_grid(images, out)
    elif out.suffix.lower() == ".npz":
        import numpy as np
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, images=to_uint8(images).permute(0, 2, 3, 1).numpy())
    elif out.suffix:
        raise ZooError(f"--out '{out}': use a .png (grid), a .npz (uint8 array) or a folder (one PNG per image)")
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            save_image(img, out / f"{i:06d}.png")
    return out

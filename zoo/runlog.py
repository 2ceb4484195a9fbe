"""A run's record: ``metrics.jsonl`` (the source of truth), mirrored to TensorBoard when enabled.

``trainer.tensorboard: true`` also writes every logged scalar and every sample grid to ``RUN/tb``
through ``torch.utils.tensorboard`` (``tensorboard --logdir runs/`` overlays runs). It needs the optional
extra: ``pip install 'zoo[tensorboard]'``. A resumed run drops TensorBoard events after its checkpoint
(``purge_step``), as ``metrics.jsonl`` drops its rows.
"""
from __future__ import annotations

import json
import numbers
from pathlib import Path

import torch

from .errors import ZooError


def require_tensorboard() -> None:
    """A one-line error, before anything is written, when TensorBoard is enabled but not installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ZooError("trainer.tensorboard=true needs the tensorboard package: pip install 'zoo[tensorboard]' "
                       "(or set trainer.tensorboard=false)") from None


class RunLog:
    def __init__(self, out_dir: Path, tensorboard: bool = False, purge_step: int | None = None):
        self.file = open(out_dir / "metrics.jsonl", "a")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out_dir / "tb"), purge_step=purge_step)

    def row(self, row: dict) -> None:
        """One JSON line (``step`` first); numbers other than step/epoch also go to TensorBoard."""
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch") and isinstance(v, numbers.Number) and not isinstance(v, bool):
                    self.tb.add_scalar(k, v, row["step"])

    def images(self, tag: str, images: torch.Tensor, step: int) -> None:
        """A sample grid of ``(N, C, H, W)`` images in [0, 1] (the PNG in the run directory is the record)."""
        if self.tb is not None:
            import math
            from torchvision.utils import make_grid
            nrow = max(1, int(math.ceil(math.sqrt(len(images)))))
            self.tb.add_image(tag, make_grid(images.float().cpu(), nrow=nrow, padding=2, pad_value=1.0), step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()

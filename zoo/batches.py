"""Which images each step trains on: seeded, resumable, split across processes."""
from __future__ import annotations

import torch

from .errors import ZooError


class Batches:
    """Seeded, resumable batch indices over ``n`` images.

    Each epoch is a permutation drawn from ``seed`` and the epoch number; a global batch of
    ``batch_size`` is split evenly across ``world`` processes, so N processes see exactly the images one
    process would.
    """

    def __init__(self, n: int, batch_size: int, seed: int, device, rank: int = 0, world: int = 1):
        if batch_size > n:
            raise ZooError(f"trainer.batch_size={batch_size} is larger than the {n} training images "
                           f"(lower trainer.batch_size)")
        if batch_size % world:
            raise ZooError(f"trainer.batch_size={batch_size} must be divisible by the {world} processes")
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self.rank, self.world = rank, world
        self.per_epoch = n // batch_size
        self.epoch, self.index = 0, 0
        self._perm_epoch, self._perm = -1, None

    def next(self) -> torch.Tensor:
        if self.index >= self.per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
        if self._perm_epoch != self.epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            self._perm = torch.randperm(self.n, generator=g).to(self.device)
            self._perm_epoch = self.epoch
        local = self.batch_size // self.world
        start = self.index * self.batch_size + self.rank * local
        self.index += 1
        return self._perm[start:start + local]

    def completed_epochs(self) -> int:
        return self.epoch + (self.index >= self.per_epoch)

    def state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])

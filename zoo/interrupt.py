"""Ctrl-C and SIGTERM during training: stop after this step, or at once.

The first SIGINT/SIGTERM says so at once and asks the loop to stop after the current step; the trainer
then saves a checkpoint and the summary gives the resume command (no final sample grid). Another signal
stops at once (``KeyboardInterrupt``): whatever is being written is abandoned, and the last checkpoint
stays whole because saves are atomic (``zoo/checkpoint.py``).

Every press counts, however fast the second follows the first. The one exception: a torchrun worker that
shares its launcher's process group gets each terminal Ctrl-C twice (from the terminal, and forwarded by
torchrun a moment later), so there a repeat within ``REPEAT_AFTER_S`` is the same press. (Recent torchruns
start workers in their own session, and forward each press once.)

Under several processes the stop is agreed: every process stops after the same step
(:meth:`Interrupts.agreed`, one tiny all-reduce per step, read one step late so it never stalls a GPU).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Callable

import torch
import torch.distributed as dist

REPEAT_AFTER_S = 1.0


def doubled_by_launcher() -> bool:
    """Whether a terminal's Ctrl-C reaches this process twice: a torchrun worker in its launcher's
    process group (the terminal signals the group, and torchrun forwards the signal)."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return False
    try:
        return os.getpgrp() == os.getpgid(os.getppid())
    except OSError:
        return False


class Interrupts:
    def __init__(self, say: Callable[[str], None] | None = None):
        self.signal: int | None = None
        self._first_at = 0.0
        self._say = say
        self._old: dict = {}
        self._vote = self._work = None
        self._repeat_after = REPEAT_AFTER_S if doubled_by_launcher() else 0.0

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        if self._work is not None:  # every process issued this vote: finish it before the group goes
            self._work.wait()
            self._work = None
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal else "signal"

    def _handle(self, signum, frame):
        now = time.monotonic()
        if self.signal is None:
            self.signal, self._first_at = signum, now
            if self._say:
                self._say(f"{self.name}: stopping after this step and saving a checkpoint "
                          f"-- Ctrl-C again to stop now (the last checkpoint is kept)")
        elif now - self._first_at >= self._repeat_after:
            raise KeyboardInterrupt  # second request: stop now

    def requested(self) -> bool:
        return self.signal is not None

    def agreed(self, world: int, device: torch.device) -> bool:
        """Whether the run stops after this step: this process's request alone, or, under several
        processes, any process's request as of the previous step (the same answer everywhere)."""
        if world <= 1:
            return self.requested()
        stop = False
        if self._work is not None:
            self._work.wait()
            stop = bool(self._vote.item())
        self._vote = torch.tensor([int(self.requested())], device=device)
        self._work = dist.all_reduce(self._vote, op=dist.ReduceOp.MAX, async_op=True)
        return stop

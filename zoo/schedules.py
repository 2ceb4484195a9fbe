"""Learning-rate schedules: linear warm-up, then constant, cosine or linear decay over the budget.

The factor multiplies ``trainer.lr`` (and the model's own ``lr_factor(step)``)::

    warm-up   min(1, (step + 1) / trainer.warmup_steps)
    decay     constant: 1
              cosine:   r + (1 - r) * (1 + cos(pi * p)) / 2
              linear:   r + (1 - r) * (1 - p)

with ``r = trainer.min_lr_ratio`` and ``p`` the fraction of the budget used after warm-up: of the step
budget when there is one (``trainer.max_steps``, or ``trainer.max_epochs`` in steps), else of
``trainer.max_minutes`` by training time used. The time-based ``p`` depends on the machine's speed, so such
a run is not bitwise-resumable (nor repeatable); step budgets are.
"""
from __future__ import annotations

import math
from typing import Callable


def decay(schedule: str, progress: float, min_ratio: float) -> float:
    """The decay factor at ``progress`` in [0, 1] of the budget."""
    p = min(1.0, max(0.0, progress))
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    if schedule == "linear":
        return min_ratio + (1 - min_ratio) * (1 - p)
    return 1.0


def lr_lambda(*, warmup: int, schedule: str, min_ratio: float, total_steps: int | None,
              time_fraction: Callable[[], float] | None, model_factor: Callable[[int], float]):
    """``step -> factor`` for ``torch.optim.lr_scheduler.LambdaLR`` (called after each step with the
    number of steps done). ``time_fraction`` (used only without a step budget) gives the share of
    ``trainer.max_minutes`` used so far."""
    warmup = int(warmup or 0)

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if schedule == "constant" or step < warmup:
            progress = 0.0
        elif total_steps is not None:
            progress = (step - warmup) / max(1, total_steps - warmup)
        elif time_fraction is not None:
            progress = time_fraction()
        else:
            progress = 0.0
        return warm * decay(schedule, progress, min_ratio) * model_factor(step)

    return factor

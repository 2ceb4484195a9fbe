"""Weight averages to sample from: the exponential EMA and the power-function EMA.

``ema.kind: exponential`` (the default) keeps ``ema_w <- decay * ema_w + (1 - decay) * w`` after every
update; with ``ema.warmup`` the decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
random init fades quickly. Its horizon is fixed: decay 0.9999 averages over about 10,000 updates, longer
than a 10-minute CPU run.

``ema.kind: power`` is the power-function EMA of Karras et al. 2024 ("Analyzing and Improving the Training
Dynamics of Diffusion Models", eq. 2): ``beta_t = (1 - 1/t) ** (gamma + 1)`` after ``t`` updates. It
averages the weights with a profile proportional to ``tau ** gamma`` over the whole run so far, so its
horizon is always a fixed fraction of the run, whatever the budget. ``gamma`` is set directly
(``ema.gamma``) or through ``ema.sigma_rel``, the width of that profile relative to the run length.
"""
from __future__ import annotations

import copy
import math

import torch


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """The exponent ``gamma`` whose power profile has relative width ``sigma_rel`` (Karras et al. 2024,
    eq. 3: ``sigma_rel**2 = (gamma + 1) / ((gamma + 2)**2 (gamma + 3))``), by bisection (it decreases)."""
    target = float(sigma_rel) ** 2
    width = lambda g: (g + 1) / ((g + 2) ** 2 * (g + 3))  # noqa: E731
    if not 0 < target < width(0.0):
        raise ValueError(f"sigma_rel={sigma_rel} must be in (0, {math.sqrt(width(0.0)):.4f})")
    lo, hi = 0.0, 1.0
    while width(hi) > target:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if width(mid) > target else (lo, mid)
    return (lo + hi) / 2


class EMA:
    """An averaged copy of ``model`` (parameters averaged; buffers copied), updated every ``every``
    steps from step ``start`` on."""

    def __init__(self, model: torch.nn.Module, *, kind: str = "exponential", decay: float = 0.999,
                 warmup: bool = True, gamma: float = 6.94, every: int = 1, start: int = 0):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.kind, self.decay, self.warmup, self.gamma = kind, float(decay), bool(warmup), float(gamma)
        self.every, self.start = max(1, int(every)), int(start)
        self.updates = 0

    @classmethod
    def from_config(cls, model: torch.nn.Module, ema) -> "EMA":
        """From the ``ema`` config section (``ema.sigma_rel``, when set, gives ``gamma``)."""
        gamma = sigma_rel_to_gamma(ema.sigma_rel) if ema.sigma_rel is not None else ema.gamma
        return cls(model, kind=ema.kind, decay=ema.decay, warmup=ema.warmup, gamma=gamma,
                   every=ema.every, start=ema.start)

    def beta(self) -> float:
        """The weight of the old average in the next update."""
        n = self.updates
        if self.kind == "power":
            t = n + 1
            return (1.0 - 1.0 / t) ** (self.gamma + 1.0)
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        if step < self.start or step % self.every:
            return
        ema_p = list(self.model.parameters())
        src_p = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, src_p, 1.0 - self.beta())
        for eb, b in zip(self.model.buffers(), model.buffers()):
            eb.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])

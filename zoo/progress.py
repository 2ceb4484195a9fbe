"""What a person watching ``zoo train`` sees, on stderr.

A header (run directory, model and its size, device, precision, which configuration and why, data,
budget); the ETA once the first steps are timed; then a tqdm bar on a terminal, or -- where stderr is not
one (tee, nohup, CI, cluster logs) -- a plain line every ``trainer.progress_seconds`` with the step, the
losses, images/s and the ETA, as training frameworks do. ``--quiet`` silences all of that; warnings
(e.g. a GPU-sized configuration on a CPU) are always printed.
"""
from __future__ import annotations

import sys
import time
from typing import Callable


def human_seconds(s: float) -> str:
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 100 * 3600:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{s / 3600:,.0f} h"


def human_count(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return str(n)


def rate(seconds_per_step: float) -> str:
    return f"{seconds_per_step:.1f} s/step" if seconds_per_step >= 1 else f"{1 / seconds_per_step:.1f} steps/s"


def header_lines(*, run: str, model: str, n_params: int, preset, reason, device: str, data: str,
                 max_steps, max_epochs, max_minutes, per_epoch: str) -> list[str]:
    """The header: run directory, model and size, which configuration and why (``preset`` is ``...``
    when the config does not record one), device and precision, data, budget."""
    config = ("" if preset is ... else f"; preset {preset}" + (f" ({reason})" if reason else "") if preset
              else "; model defaults (no preset)")
    budget = ([f"{int(max_steps):,} steps"] if max_steps is not None else []) + \
             ([f"{max_epochs} epochs"] if max_epochs is not None else []) + \
             ([f"{float(max_minutes):g} min"] if max_minutes is not None else [])
    return [f"zoo train {model} -> {run}",
            f"  model   {model}, {human_count(n_params)} parameters{config}",
            f"  device  {device}",
            f"  data    {data}",
            f"  budget  {', or '.join(budget)}{', whichever ends first' if len(budget) > 1 else ''} ({per_epoch})"]


class Progress:
    """Header, ETA and progress of one run (see the module docstring). ``total_steps`` and ``max_seconds``
    are the budget (either may be None); ``warning`` (when set) is printed with the ETA instead of it."""

    ETA_AFTER_STEPS, ETA_AFTER_S = 20, 5.0  # time this much (past the first step) before an ETA

    def __init__(self, *, show: bool, total_steps: int | None, max_seconds: float | None, batch_size: int,
                 every_s: float, label: str, warning: Callable[[str], str] | None = None, tty: bool | None = None):
        self.show = show
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.total_steps, self.max_seconds = total_steps, max_seconds
        self.batch_size, self.every_s, self.label, self.warning = batch_size, every_s, label, warning
        self.bar = None
        self._timed_from: tuple[int, float] | None = None  # (step, train seconds) after the first step
        self._eta_said = False
        self._line_at = (time.monotonic(), 0, 0.0)  # (wall clock, step, train seconds) of the last line

    # --- printing ---------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """Lines on stderr, above the bar when there is one (tqdm's lock is re-entrant: safe in a signal
        handler)."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def header(self, lines: list[str]) -> None:
        if self.show:
            self.say("\n".join(lines))

    def start(self, step: int, train_seconds: float) -> None:
        self._line_at = (time.monotonic(), step, train_seconds)
        if self.show and self.tty:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total_steps, initial=step, desc=self.label, unit="step", dynamic_ncols=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # --- each step --------------------------------------------------------------------------------------
    def eta(self, step: int, train_seconds: float) -> float | None:
        """Seconds of training left, from the pace since the first step of this session."""
        if self._timed_from is None or step <= self._timed_from[0]:
            return None
        per_step = (train_seconds - self._timed_from[1]) / (step - self._timed_from[0])
        left = []
        if self.total_steps is not None:
            left.append((self.total_steps - step) * per_step)
        if self.max_seconds is not None:
            left.append(self.max_seconds - train_seconds)
        return max(0.0, min(left)) if left else None

    def seconds_per_step(self, step: int, train_seconds: float) -> float:
        s0, t0 = self._timed_from
        return (train_seconds - t0) / max(1, step - s0)

    def step(self, step: int, train_seconds: float, values: Callable[[], dict]) -> None:
        """After every step. ``values()`` gives the running losses (called only when a line is due)."""
        if self.bar is not None:
            self.bar.update(1)
        if self._timed_from is None:
            self._timed_from = (step, train_seconds)  # the first step (set-up, compilation) is not timed
            return
        timed_steps, timed_s = step - self._timed_from[0], train_seconds - self._timed_from[1]
        if not self._eta_said and timed_steps >= 1 and (timed_steps >= self.ETA_AFTER_STEPS
                                                         or timed_s >= self.ETA_AFTER_S):
            self._eta_said = True
            eta = self.eta(step, train_seconds)
            text = f"ETA {human_seconds(eta)}" if eta is not None else "no step or time budget"
            text += f" ({rate(self.seconds_per_step(step, train_seconds))})"
            if self.warning is not None:
                self.say(self.warning(text))
            elif self.show:
                self.say(text)
        if self.show and not self.tty and time.monotonic() - self._line_at[0] >= self.every_s:
            self.line(step, train_seconds, values())

    def line(self, step: int, train_seconds: float, values: dict) -> None:
        """The plain progress line: step, losses, images/s since the last line, elapsed, ETA."""
        _, step0, seconds0 = self._line_at
        img_s = (step - step0) * self.batch_size / max(train_seconds - seconds0, 1e-9)
        eta = self.eta(step, train_seconds)
        parts = [f"step {step:,}" + (f"/{self.total_steps:,}" if self.total_steps else ""),
                 " ".join(f"{k} {v:.4g}" for k, v in values.items()),
                 f"{img_s:,.0f} img/s", f"elapsed {human_seconds(train_seconds)}"]
        if eta is not None:
            parts.append(f"ETA {human_seconds(eta)}")
        self.say(f"{self.label}: " + " | ".join(p for p in parts if p))
        self._line_at = (time.monotonic(), step, train_seconds)

    def logged(self, values: dict, images_per_s: float) -> None:
        """A metrics row was written: show its values on the bar."""
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()} | {"img/s": images_per_s})

"""What a person watching a long command sees: ``zoo train``'s header and progress, and a heartbeat for
sampling and scoring.

``zoo train``: a header (run directory, model and its size, device, precision, which configuration and
why, data, budget); the ETA once the first steps are timed; then a tqdm bar when a person is at a terminal
(stdout and stderr both terminals; the bar is on stderr), or -- where output is piped or redirected
(``| tee log``, ``> log``, nohup, CI, cluster logs) -- a plain line every ``trainer.progress_seconds``
with the step, the losses, images/s, the elapsed time and the ETA (the time left, with a time budget).
Those lines, the header and the final summary are the run's log, so they go to **stdout**, as Keras and
Lightning print theirs: ``zoo train ... | tee log`` keeps all of it, and warnings and errors stay on stderr.
``--quiet`` silences the header and progress; warnings are always printed. If stdout's reader goes away
(``tee`` killed by the same Ctrl-C), later lines go to stderr instead of failing.

Sampling and scoring (:class:`Heartbeat`): a tqdm bar on a terminal, else a plain line on stderr every
``$ZOO_PROGRESS_SECONDS`` (30) seconds -- stderr, because their stdout can be data (``zoo eval --json``).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, ClassVar

EVERY_S_ENV = "ZOO_PROGRESS_SECONDS"  # seconds between a heartbeat's plain lines (default 30)
BAR_REFRESH_S = 0.5


def interactive() -> bool:
    """A person at a terminal: stdout and stderr are both terminals (no pipe, no redirection)."""
    return sys.stdout.isatty() and sys.stderr.isatty()


_stdout_gone = False


def log(text: str) -> None:
    """One line of the log on stdout; on stderr once stdout's reader is gone (a broken pipe)."""
    global _stdout_gone
    if not _stdout_gone:
        try:
            _write(sys.stdout, text)
            return
        except BrokenPipeError:
            _stdout_gone = True
            _silence_stdout()
    try:
        _write(sys.stderr, text)
    except OSError:
        pass


def warn(text: str) -> None:
    """A line on stderr (warnings)."""
    try:
        _write(sys.stderr, text)
    except OSError:
        pass


def _write(stream, text: str) -> None:
    try:
        stream.write(text + "\n")
        stream.flush()
    except RuntimeError:  # a signal handler's line while the main code is inside this stream's write
        os.write(stream.fileno(), (text + "\n").encode())


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so Python's flush at exit does not report the broken pipe."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass


def every_seconds(default: float = 30.0) -> float:
    """Seconds between a heartbeat's plain lines: ``$ZOO_PROGRESS_SECONDS``, else ``default``."""
    try:
        return float(os.environ.get(EVERY_S_ENV, default))
    except ValueError:
        return default


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


def header_lines(cfg, *, run: str, n_params: int, device: str, data: str, per_epoch: str) -> list[str]:
    """The header: run directory, model (``cfg.model_name``) and size, which configuration and why
    (``cfg.preset`` and ``cfg.preset_reason``; nothing said when the config records no preset), device and
    precision, data, budget (``cfg.trainer``'s)."""
    model, preset, reason, t = cfg.model_name, cfg.get("preset", ...), cfg.get("preset_reason"), cfg.trainer
    config = ("" if preset is ... else f"; preset {preset}" + (f" ({reason})" if reason else "") if preset
              else "; model defaults (no preset)")
    budget = ([f"{int(t.max_steps):,} steps"] if t.max_steps is not None else []) + \
             ([f"{t.max_epochs} epochs"] if t.max_epochs is not None else []) + \
             ([f"{float(t.max_minutes):g} min"] if t.max_minutes is not None else [])
    return [f"zoo train {model} -> {run}",
            f"  model   {model}, {human_count(n_params)} parameters{config}",
            f"  device  {device}",
            f"  data    {data}",
            f"  budget  {', or '.join(budget)}{', whichever ends first' if len(budget) > 1 else ''} ({per_epoch})"]


class Progress:
    """Header, ETA and progress of one run (see the module docstring). ``total_steps`` and ``max_seconds``
    are the budget (either may be None); ``warning`` (when set) is printed with the ETA instead of it;
    ``tty``: draw a bar (default: :func:`interactive`)."""

    ETA_AFTER_STEPS, ETA_AFTER_S = 20, 5.0  # time this much (past the first step) before an ETA

    def __init__(self, *, show: bool, total_steps: int | None, max_seconds: float | None, batch_size: int,
                 every_s: float, label: str, warning: Callable[[str], str] | None = None, tty: bool | None = None):
        self.show = show
        self.tty = interactive() if tty is None else tty
        self.total_steps, self.max_seconds = total_steps, max_seconds
        self.batch_size, self.every_s, self.label, self.warning = batch_size, every_s, label, warning
        self.bar = None
        self._timed_from: tuple[int, float] | None = None  # (step, train seconds) after the first step
        self._eta_said = False
        self._line_at = (time.monotonic(), 0, 0.0)  # (wall clock, step, train seconds) of the last line
        self._losses: dict = {}   # the last logged values, on a time-budget bar
        self._drawn_at = 0.0

    # --- printing ---------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """A line of the log: above the bar on stderr when there is one, else on stdout (:func:`log`).
        Safe in a signal handler (tqdm's lock is re-entrant)."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            log(text)

    def warn(self, text: str) -> None:
        """A warning: on stderr, above the bar when there is one."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            warn(text)

    def header(self, lines: list[str]) -> None:
        if self.show:
            self.say("\n".join(lines))

    def start(self, step: int, train_seconds: float) -> None:
        self._line_at = (time.monotonic(), step, train_seconds)
        if not (self.show and self.tty):
            return
        from tqdm.auto import tqdm
        if self.max_seconds is None:
            self.bar = tqdm(total=self.total_steps, initial=step, desc=self.label, unit="step", dynamic_ncols=True,
                            file=sys.stderr)
        else:  # a bar over the budget used, with the time left (tqdm's own ETA would count steps)
            self.bar = tqdm(total=1000, desc=self.label, dynamic_ncols=True, file=sys.stderr, postfix=[""],
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix[0]}")  # a list: no ", "
            self._draw_budget(step, train_seconds)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # --- each step --------------------------------------------------------------------------------------
    def eta(self, step: int, train_seconds: float) -> float | None:
        """Seconds of training left, from the pace since the first step of this session (with a time
        budget and nothing timed yet: the budget left)."""
        if self._timed_from is None or step <= self._timed_from[0]:
            return None if self.max_seconds is None else max(0.0, self.max_seconds - train_seconds)
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
            if self.max_seconds is None:
                self.bar.update(1)
            elif time.monotonic() - self._drawn_at >= BAR_REFRESH_S:
                self._draw_budget(step, train_seconds)
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
                self.warn(self.warning(text))
            elif self.show:
                self.say(text)
        if self.show and not self.tty and time.monotonic() - self._line_at[0] >= self.every_s:
            self.line(step, train_seconds, values())

    def _draw_budget(self, step: int, train_seconds: float) -> None:
        """The time-budget bar: the share of the budget used, the step, the time used and left, the pace."""
        used = train_seconds / self.max_seconds
        if self.total_steps:
            used = max(used, step / self.total_steps)
        self.bar.n = min(1000, round(used * 1000))
        parts = [f"step {step:,}" + (f"/{self.total_steps:,}" if self.total_steps else ""),
                 f"{human_seconds(train_seconds)} of {human_seconds(self.max_seconds)}",
                 f"{human_seconds(self.eta(step, train_seconds))} left"]
        if self._timed_from is not None and step > self._timed_from[0]:
            parts.append(rate(self.seconds_per_step(step, train_seconds)))
        parts += [f"{k} {v:.4g}" for k, v in self._losses.items()]
        self.bar.postfix = [", ".join(parts)]
        self.bar.refresh()
        self._drawn_at = time.monotonic()

    def line(self, step: int, train_seconds: float, values: dict) -> None:
        """The plain progress line: step, losses, images/s since the last line, elapsed (of the time
        budget) and the ETA (the time left, with a time budget)."""
        _, step0, seconds0 = self._line_at
        img_s = (step - step0) * self.batch_size / max(train_seconds - seconds0, 1e-9)
        eta = self.eta(step, train_seconds)
        budget = f" of {human_seconds(self.max_seconds)}" if self.max_seconds is not None else ""
        parts = [f"step {step:,}" + (f"/{self.total_steps:,}" if self.total_steps else ""),
                 " ".join(f"{k} {v:.4g}" for k, v in values.items()),
                 f"{img_s:,.0f} img/s", f"elapsed {human_seconds(train_seconds)}{budget}"]
        if eta is not None:
            parts.append(f"{human_seconds(eta)} left" if self.max_seconds is not None else f"ETA {human_seconds(eta)}")
        self.say(f"{self.label}: " + " | ".join(p for p in parts if p))
        self._line_at = (time.monotonic(), step, train_seconds)

    def logged(self, values: dict, images_per_s: float) -> None:
        """A metrics row was written: show its values on the bar."""
        if self.bar is None:
            return
        if self.max_seconds is None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()} | {"img/s": images_per_s})
        else:
            self._losses = dict(values)


class Heartbeat:
    """Progress of a long loop over ``total`` units (sampling, scoring): a tqdm bar on stderr at a
    terminal; elsewhere a plain line on stderr every ``every_s`` seconds (default
    :func:`every_seconds`) with the count, the pace, the time elapsed and the ETA. Nothing when ``show``
    is false. Used like tqdm (``update(n)``, a context manager)::

        with Heartbeat(n, "sampling", "img", show=progress) as hb:
            for b in batches:
                hb.doing(b)          # optional: the size of the chunk under way, for within()
                ...
                hb.update(b)

    An inner loop that takes long (a DDPM batch's timesteps) reports with :func:`within`, which keeps
    the lines coming and the ETA honest while one chunk runs for minutes.
    """

    _open: ClassVar[list[Heartbeat]] = []

    def __init__(self, total: int, desc: str, unit: str = "img", *, show: bool = True,
                 every_s: float | None = None):
        self.total, self.desc, self.unit, self.show = int(total), desc, unit, show
        self.every_s = every_seconds() if every_s is None else float(every_s)
        self.done, self.chunk, self.inner = 0, 0, (0, 0)
        self.bar = None
        self._t0 = self._said_at = self._drawn_at = time.monotonic()

    def __enter__(self) -> Heartbeat:
        if self.show and sys.stderr.isatty():
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, leave=False, file=sys.stderr)
        Heartbeat._open.append(self)
        return self

    def __exit__(self, *exc) -> None:
        Heartbeat._open.remove(self)
        if self.bar is not None:
            self.bar.close()

    def doing(self, n: int) -> None:
        self.chunk, self.inner = int(n), (0, 0)

    def update(self, n: int) -> None:
        self.done += int(n)
        self.chunk, self.inner = 0, (0, 0)
        self._tick()

    def within(self, i: int, n: int) -> None:
        self.inner = (int(i), int(n))
        self._tick()

    def progress(self) -> float:
        """Units done, counting the chunk under way by its inner loop's share."""
        i, n = self.inner
        return self.done + (self.chunk * i / n if n else 0.0)

    def line(self) -> str:
        done, elapsed = self.progress(), time.monotonic() - self._t0
        parts = [f"{self.desc}: {done:,.0f}/{self.total:,} {self.unit}"
                 + (f" ({100 * done / self.total:.0f}%)" if self.total else "")]
        if self.inner[1] and not self.chunk:
            parts[0] += f", {self.inner[0]}/{self.inner[1]} of the current batch"
        if done > 0:
            parts.append(f"{done / elapsed:,.3g} {self.unit}/s")
        parts.append(f"elapsed {human_seconds(elapsed)}")
        if done > 0:
            parts.append(f"ETA {human_seconds((self.total - done) * elapsed / done)}")
        return " | ".join(parts)

    def _tick(self) -> None:
        now = time.monotonic()
        if self.bar is not None:
            if now - self._drawn_at >= BAR_REFRESH_S or self.done >= self.total:
                self.bar.n = min(self.total, int(self.progress()))
                self.bar.refresh()
                self._drawn_at = now
        elif self.show and now - self._said_at >= self.every_s:
            warn(self.line())
            self._said_at = now


def within(i: int, n: int) -> None:
    """An inner loop is at step ``i`` of ``n`` of the innermost open :class:`Heartbeat`'s chunk (a no-op
    when none is open)."""
    if Heartbeat._open:
        Heartbeat._open[-1].within(i, n)

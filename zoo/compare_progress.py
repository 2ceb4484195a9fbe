"""Lines that keep coming while ``zoo compare`` works.

Training under compare is quiet (a line as each model starts and ends), and a periodic FID or the final
scoring of one model can take minutes. :class:`StageEcho` is compare's ``echo``: it prints compare's
lines and, from a background thread, a line saying what is being done and for how long whenever nothing
was printed for ``every_s`` seconds (``trainer.progress_seconds``, 30 s by default) -- on a terminal and
in a pipe alike, so a piped ``zoo compare`` never looks hung.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .progress import human_seconds


class StageEcho:
    """compare's echo: its lines, and a line on what is under way whenever nothing was said for ``every_s``
    seconds (a stage-based beat, unlike :class:`zoo.progress.Heartbeat`, which counts a loop's units)."""

    def __init__(self, echo: Callable[[str], None], every_s: float):
        self._echo, self.every_s = echo, float(every_s)
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._stages: list[tuple] = []  # (text or a function giving it, started), innermost last
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, message: str) -> None:
        with self._lock:
            self._echo(message)
            self._last = time.monotonic()

    @contextlib.contextmanager
    def doing(self, what: str | Callable[[], str]):
        """While the block runs, the heartbeat says ``what`` (a text, or a function giving the current one)."""
        depth = len(self._stages)
        self._stages.append((what, time.monotonic()))
        try:
            yield
        finally:
            del self._stages[depth:]

    def now(self, what: str | Callable[[], str]) -> None:
        """The block running now has moved on to ``what``."""
        if self._stages:
            self._stages[-1] = (what, time.monotonic())

    def __enter__(self):
        self._thread = threading.Thread(target=self._beat, name="zoo-compare-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.every_s / 4)):
            if time.monotonic() - self._last < self.every_s or not self._stages:
                continue
            what, since = self._stages[-1]
            try:
                text = what() if callable(what) else what
            except Exception:  # noqa: BLE001 - a status that cannot be read now is said next time
                continue
            self(f"[compare] {text} ({human_seconds(time.monotonic() - since)} so far)")


def doing(echo, what):
    """``echo.doing(what)`` where compare's echo is a :class:`StageEcho`, else nothing."""
    return echo.doing(what) if isinstance(echo, StageEcho) else contextlib.nullcontext()


def now_doing(echo, what) -> None:
    """``echo.now(what)`` where compare's echo is a :class:`StageEcho`."""
    if isinstance(echo, StageEcho):
        echo.now(what)


def training_status(label: str, run: Path, budget: str) -> Callable[[], str]:
    """What a run training under compare has done so far, from the tail of its metrics.jsonl."""
    def status() -> str:
        step = seconds = fid = None
        path = Path(run) / "metrics.jsonl"
        if path.is_file():
            with open(path, "rb") as f:
                start = max(0, f.seek(0, 2) - 16384)
                f.seek(start)
                lines = f.read().decode(errors="replace").splitlines()[1 if start else 0:]
            for line in lines:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                step, seconds = row.get("step", step), row.get("time", seconds)
                if isinstance(row.get("fid"), (int, float)):
                    fid = (row["step"], row["fid"])
        done = f"step {step:,} after {human_seconds(seconds or 0)} of training" if step is not None else "starting"
        done += f" (budget {budget})" if budget else ""
        return f"{label}: training, {done}" + (f"; FID {fid[1]:.2f} at step {fid[0]:,}" if fid else "")
    return status

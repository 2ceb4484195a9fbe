"""The declaration types of a metric -- :class:`Score` (one result key: label, direction, format) and
:class:`Metric` (name, needs, compute, scores; ``compute`` gets a ``zoo.metrics.Inputs``) -- and the
leaderboard's cell format. Imports nothing of zoo at import time, so the registry, the hook
specifications and the report can all use them (zoo/metrics.py re-exports them with zoo's own metrics).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

NEEDS = ("images", "features", "logits", "reference", "model", "labels")
"""What a metric can need: ``images`` (the uint8 samples), ``features`` / ``logits`` (the extractor's
outputs for them), ``reference`` (the real images' cached statistics and features), ``model`` (the model
itself, e.g. its likelihood: such a metric is chosen by ``--nll``, never computed from image files),
``labels`` (the class each sample was asked for: only a conditional run's samples have them; elsewhere
such a metric does not apply and is omitted -- ``null`` in JSON, ``—`` in tables)."""
ABSENT = "—"


def fmt(v, digits=3) -> str:
    """A leaderboard cell: ``—`` for a value not measured, floats to ``digits`` decimals, big counts short."""
    if v is None or v == "":
        return ABSENT
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.3g}"
    if isinstance(v, int) and v >= 100_000:
        return f"{v / 1e6:.2f}M"
    if isinstance(v, int) and v >= 10_000:
        return f"{v / 1e3:.0f}k"
    return str(v)


@dataclass(frozen=True)
class Score:
    """One result key of a metric. ``label``: its name in tables (None: only in JSON); ``better``:
    ``up``, ``down`` or None; ``digits``: decimals in the leaderboard; ``column``: in leaderboard.csv
    even without a label; ``cell``: a custom leaderboard cell ``cell(row) -> str``."""
    key: str
    label: str | None = None
    better: str | None = None
    digits: int = 3
    column: bool = False
    cell: Callable[[dict], str] | None = None

    @property
    def header(self) -> str:
        return self.label + {"up": " ↑", "down": " ↓"}.get(self.better or "", "")

    def show(self, row: dict) -> str:
        return self.cell(row) if self.cell else fmt(row.get(self.key), self.digits)


@dataclass(frozen=True)
class Metric:
    """A registered metric (see :func:`zoo.hookspecs.zoo_register_metrics` for each field)."""
    name: str
    compute: Callable[..., dict]                # compute(inputs: zoo.metrics.Inputs) -> dict
    scores: tuple[Score, ...]
    needs: tuple[str, ...] = ("features",)
    description: str = ""
    default: bool = False
    table: Callable[[dict], list] | None = None
    plugin: str = ""

    def rows(self, result: dict) -> list[tuple[str, str]]:
        """Its lines in ``zoo eval``'s table: ``table(result)``, else one per labelled score it gave."""
        if self.table is not None:
            return self.table(result)
        return [(s.label, f"{result[s.key]:.4f}" if isinstance(result[s.key], float) else str(result[s.key]))
                for s in self.scores if s.label and result.get(s.key) is not None]

    @property
    def conditional(self) -> bool:
        """Judges conditioning (needs the samples' requested ``labels``): omitted for unconditional samples."""
        return "labels" in self.needs

    @property
    def on_samples(self) -> bool:
        """Computed from samples (chosen with --metrics), not from the model (chosen with --nll)."""
        return "model" not in self.needs

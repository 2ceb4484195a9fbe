"""Settings as objects: what ``zoo eval`` and ``zoo compare`` are asked to do, built once from the command
line or the API and passed whole (:class:`EvalSpec`, :class:`CompareSpec`).

Light (no torch): the CLI builds and checks them before any heavy import.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

FID_POINTS = 8          # zoo compare: periodic FID evaluations per run (at most; fewer where FID_SHARE does not
                        # afford them)
FID_N = 500             # samples per periodic FID (at most; never fewer than 2 x the extractor's features, e.g. 256)
FID_SHARE = 0.25        # zoo compare: the periodic FID takes at most this share of each run's training time


@dataclass(frozen=True)
class EvalSpec:
    """How to evaluate, built once (from the CLI or the API) and passed whole.

    ``metrics``: names or ``"fid,is"`` (None: the default ones; may be empty for a model when ``nll``);
    ``n``: samples to draw from a model (default 10000), or the first ``n`` given images; ``extractor``:
    a registered extractor (default: the one the dataset declares, else ``mnist`` for 28x28 grayscale
    data, else ``inception``); ``sample_options``: the model's declared sampling options, checked before
    any work; ``nll``: also the model's likelihood (``nll_n`` held-out images, ``nll_options`` for its
    ``log_likelihood``); ``data``: the ``data`` config section of the reference for image arrays
    (default: MNIST's train split); ``config``: the run's config with changed data settings (default: the
    model's own), for the reference and the held-out images."""
    metrics: object = None
    n: int | None = None
    seed: int = 0
    extractor: str | None = None
    extractor_weights: str | None = None
    batch_size: int = 256
    device: object = None
    cache_dir: object = None
    progress: bool = False
    sample_options: object = None
    nll: bool = False
    nll_n: int | None = None
    nll_options: object = None
    data: object = None
    config: object = None

    @classmethod
    def of(cls, spec: "EvalSpec | None", settings: dict) -> "EvalSpec":
        """``spec`` (default: the defaults) with ``settings`` (field names) changed."""
        return replace(spec or cls(), **settings)


@dataclass(frozen=True)
class CompareSpec:
    """How ``zoo compare`` trains and scores, built once and passed whole (zoo/compare.py).

    Training: ``budget_minutes`` or ``steps`` per model, ``preset`` for every model and ``presets``
    (``{model: preset}``) for single ones, ``sets`` (``--set`` overrides for every model), ``fid_points``
    cheap periodic FIDs of up to ``fid_n`` samples per trained run taking at most ``fid_share`` of its training
    time (0 points: off, the last checkpoint is ranked),
    ``quiet``. Scoring: ``n`` samples per model with ``seed``, ``extractor``, ``metrics`` (None: the
    default ones; fid is required), ``reference`` and ``extra_references`` (one FID column each),
    ``options`` (sampling options for every model that declares them) and ``sample_options``
    (``{label or model name: {...}}`` for single models), ``nll`` (bits/dim, ``nll_n`` images,
    ``nll_options``), ``score_last`` (the last checkpoint's FID next to the best one's), ``device``.
    The report: ``title``."""
    budget_minutes: float | None = None
    steps: int | None = None
    preset: str | None = None
    presets: object = None
    sets: tuple = ()
    fid_points: int = FID_POINTS
    fid_n: int = FID_N
    fid_share: float = FID_SHARE
    quiet: bool = True
    n: int = 10000
    seed: int = 0
    extractor: str | None = None
    metrics: object = None
    reference: str | None = None
    extra_references: tuple = ()
    options: object = None
    sample_options: object = None
    nll: bool = False
    nll_n: int | None = None
    nll_options: object = None
    score_last: bool = True
    device: str = "auto"
    title: str = "zoo comparison"

    @classmethod
    def of(cls, spec: "CompareSpec | None", settings: dict) -> "CompareSpec":
        """``spec`` (default: the defaults) with ``settings`` (field names) changed."""
        spec = replace(spec or cls(), **settings)
        return replace(spec, sets=tuple(spec.sets), extra_references=tuple(spec.extra_references))

"""Settings as objects: what ``zoo eval`` and ``zoo compare`` are asked to do, built once from the command
line or the API and passed whole (:class:`EvalSpec`, :class:`CompareSpec`).

Light (no torch): the CLI builds and checks them before any heavy import.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


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

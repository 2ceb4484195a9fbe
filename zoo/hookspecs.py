"""The hooks a zoo plugin can implement, and the ``register`` callables they receive.

A plugin is a module named by an entry point in the ``zoo.plugins`` group::

    [project.entry-points."zoo.plugins"]
    mymodel = "my_package.my_module"

and implements any of these hooks with ``@zoo.hookimpl``. Each hook gets a
``register`` callable (typed below by the ``Register*`` protocols); call it once
per thing you add. Hooks are called through pluggy, so ``tryfirst``/``trylast``
and wrappers work; docs/plugins.md#the-hooks says exactly how.

This module is light (no torch): ``import zoo`` and ``zoo --help`` load it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .contract import ZooModel
    from .scores import Score

API_VERSION = 1
"""The plugin API version, bumped when the contract changes incompatibly. A plugin module may set
``ZOO_API = 1``; the registry refuses plugins written for another version (``zoo plugins`` says why)."""

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


class RegisterModel(Protocol):
    def __call__(self, cls: type[ZooModel], name: str | None = None, config: dict | None = None,
                 description: str | None = None) -> None:
        """Add model ``name`` (default: ``cls.name``, else the lower-cased class name) built by ``cls``;
        ``config`` holds a variant's overrides on top of ``cls.config``; ``description`` defaults to
        ``cls.description``, else the first line of the class docstring."""


class RegisterDataset(Protocol):
    def __call__(self, name: str, loader: Callable, channels: int, image_size: int, description: str = "",
                 splits: tuple[str, ...] = ("train", "test"), extractor: str | None = None,
                 num_classes: int | None = None) -> None:
        """Add dataset ``name``: ``loader(root: Path, split: str, download: bool)`` returns uint8
        ``(N, C, H, W)`` images, or ``(images, labels)``; ``extractor`` names the feature extractor
        made for this data (``zoo eval`` warns when another one scores it)."""


class RegisterExtractor(Protocol):
    def __call__(self, name: str, factory: Callable, description: str = "") -> None:
        """Add feature extractor ``name``: ``factory(**options)`` returns a
        ``torch_fidelity.FeatureExtractorBase``."""


class RegisterMetric(Protocol):
    def __call__(self, name: str, compute: Callable, scores: tuple[Score, ...], needs: tuple[str, ...] = ("features",),
                 description: str = "", default: bool = False, table: Callable | None = None) -> None:
        """Add metric ``name``: ``compute(inputs: zoo.metrics.Inputs)`` returns a dict holding its result
        keys (``scores``: ``zoo.metrics.Score`` declarations: key, label, direction, decimals) and any notes;
        ``needs``: what it reads (``zoo.metrics.NEEDS``); ``default``: computed when no ``--metrics`` are
        chosen; ``table(result)``: its lines in ``zoo eval``'s table (default: one per labelled score)."""


@hookspec
def zoo_register_models(register: RegisterModel) -> None:
    """Add models: call ``register(cls, name=None, config=None, description=None)`` once per model name.

    Called once per process, when the registry is first used (``zoo list``, ``zoo train``,
    ``zoo.create_model``...), for every plugin, zoo's built-ins first.
    """


@hookspec
def zoo_register_datasets(register: RegisterDataset) -> None:
    """Add datasets: call ``register(name, loader, channels, image_size, description="", splits=("train",
    "test"), extractor=None, num_classes=None)`` once per dataset.

    ``loader(root: Path, split: str, download: bool)`` returns uint8 images ``(N, C, H, W)`` (or
    ``(images, labels)``, labels int64 ``(N,)`` class indices 0..K-1: a conditional run, ``model.conditional:
    true``, trains on them; ``num_classes=K`` says K without reading the data, else it is the largest label
    plus one); it raises :class:`zoo.ZooError` when the files are missing, naming them and how
    to point zoo at local copies. Called once per process, when the registry is first used.
    """


@hookspec
def zoo_register_extractors(register: RegisterExtractor) -> None:
    """Add feature extractors for evaluation: call ``register(name, factory, description="")``.

    ``factory(**options)`` returns a ``torch_fidelity.FeatureExtractorBase`` (see ``zoo/extractors.py`` for
    the optional attributes the harness reads). Called once per process, when the registry is first used.
    """


@hookspec
def zoo_register_metrics(register: RegisterMetric) -> None:
    """Add evaluation metrics: call ``register(name, compute, scores, needs=("features",), description="",
    default=False, table=None)`` once per metric.

    ``zoo eval --metrics NAME``, ``zoo compare --metrics fid,NAME``, the result JSON, the leaderboard and
    report.html then show it (``zoo/metrics.py`` holds zoo's own as examples). Called once per process,
    when the registry is first used.
    """


HOOKS = ("zoo_register_models", "zoo_register_datasets", "zoo_register_extractors", "zoo_register_metrics")
"""Every hook, in the order zoo calls them."""

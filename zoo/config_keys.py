"""Config keys and their validation: every setting declared once.

A :class:`Key` declares one setting -- its default, one line of help, its valid values -- and checks a value
against them (:meth:`Key.check`: converted to the declared type, or a one-line :class:`ZooError` naming the key,
the value, the layer it came from and what is valid). :data:`BASE` declares zoo's own keys; a model declares its
``model.*`` keys in its ``config``. The same declarations generate ``zoo show-config --explain`` and
``docs/config.md`` (:mod:`zoo.config_docs`). Declarations as trees: :func:`key_of`, :func:`defaults`,
:func:`leaves`, :func:`check_declarations`.

Layering and merging the values live in :mod:`zoo.config_layers`; :mod:`zoo.config` re-exports both.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import ZooError

_NUMBER = (int, float)


@dataclass(frozen=True)
class Key:
    """One declared setting: its default, one line of help, and which values are valid.

    The same declaration serves validation (:meth:`check`), ``zoo show-config --explain`` and the
    generated reference in ``docs/``. ``type`` is inferred from ``default`` unless given (give it when the
    default is ``None``; a tuple allows several, e.g. ``(bool, str)``). ``None`` is accepted when the
    default is ``None`` or ``nullable=True``. Ranges are pydantic-style: ``ge``/``gt``/``le``/``lt``;
    ``choices`` lists the allowed values; ``pattern`` is a regular expression a string must match. For a
    list, ranges and choices apply to each item (of type ``item``, inferred from the default's first
    item) and ``length`` fixes how many there are::

        "lr": Key(2e-4, "AdamW learning rate", gt=0),
        "batch_size": Key(128, "global batch size (split across processes)", ge=1),
        "sampler": Key("ddim", "default sampler", choices=("ddpm", "ddim")),
        "betas": Key([0.9, 0.999], "AdamW betas", ge=0, lt=1, length=2),
    """
    default: Any
    help: str = ""
    type: Any = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    nullable: bool = False
    item: Any = None
    length: int | None = None
    pattern: str | None = None

    def types(self) -> tuple:
        if self.type is not None:
            return self.type if isinstance(self.type, tuple) else (self.type,)
        if self.default is None:
            return ()
        if isinstance(self.default, bool):
            return (bool,)
        if isinstance(self.default, float):
            return (float,)
        if isinstance(self.default, (list, tuple)):
            return (list,)
        return (type(self.default),)

    def item_types(self) -> tuple:
        """The type of a list's items: ``item``, else the default's first item's."""
        if self.item is not None:
            return self.item if isinstance(self.item, tuple) else (self.item,)
        if isinstance(self.default, (list, tuple)) and self.default:
            first = self.default[0]
            return (float,) if isinstance(first, float) else (type(first),)
        return ()

    def allows_none(self) -> bool:
        return self.default is None or self.nullable

    def describe(self) -> str:
        """What a valid value looks like, e.g. ``int >= 1``, ``float in (0, 1)``, ``one of: a, b``."""
        if self.types() == (list,):
            items = self.item_types()
            text = "list" + (f" of {self.length}" if self.length is not None else "")
            if items:
                text += (" " if self.length is not None else " of ") + " or ".join(_type_name(t) for t in items)
            if self.choices is not None:
                text += ", each one of: " + ", ".join(yaml_scalar(c) for c in self.choices)
            elif self._bounds():
                text += f", each {self._bounds()}"
        elif self.choices is not None:
            text = "one of: " + ", ".join(yaml_scalar(c) for c in self.choices)
        else:
            text = " or ".join(_type_name(t) for t in self.types()) or "any"
            if self.pattern is not None:
                text += f" matching {self.pattern}"
            bounds = self._bounds()
            if bounds:
                text += f" {bounds}"
        return text + (" or null" if self.allows_none() else "")

    def _bounds(self) -> str:
        lo = (f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else None)
        hi = (f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None else None)
        if lo and hi:
            return f"in {lo}, {hi}"
        if lo:
            return (">= " if lo[0] == "[" else "> ") + lo[1:]
        if hi:
            return ("<= " if hi[-1] == "]" else "< ") + hi[:-1]
        return ""

    def check(self, path: str, value: Any, source: str = "config", like: Any = None) -> Any:
        """``value`` converted to the declared type (``'1e-3'`` -> 0.001 for a float key), or a one-line
        :class:`ZooError` naming ``path``, the bad value, what is valid and where it came from. ``like``:
        the example a type error shows (default: the declared default)."""
        if value is None:
            if self.allows_none():
                return None
            raise ZooError(self._error(path, value, source, like))
        converted = _coerce(value, self.types())
        if converted is _BAD:
            raise ZooError(self._error(path, value, source, like))
        value = converted
        if isinstance(value, list):
            if self.length is not None and len(value) != self.length:
                raise ZooError(f"{path}={value!r} (in {source}) must have {self.length} items"
                               + (f" -- {self.help}" if self.help else ""))
            items = self.item_types()
            if items:
                coerced = [_coerce(v, items) for v in value]
                if any(c is _BAD for c in coerced):
                    raise ZooError(self._error(path, value, source, like))
                value = coerced
            for v in value:
                self._check_one(path, value, v, source)
            return value
        self._check_one(path, value, value, source)
        return value

    def _check_one(self, path: str, value: Any, v: Any, source: str) -> None:
        """Choices, pattern and range of ``v`` (``value`` itself or one of its items)."""
        if self.choices is not None and v not in self.choices:
            raise ZooError(f"{path}={value!r} (in {source}) is not one of {', '.join(map(yaml_scalar, self.choices))}")
        if self.pattern is not None and isinstance(v, str) and not re.fullmatch(self.pattern, v):
            raise ZooError(f"{path}={value!r} (in {source}) does not match {self.pattern}"
                           + (f" -- {self.help}" if self.help else ""))
        if isinstance(v, _NUMBER) and not isinstance(v, bool):
            ok = ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                  and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))
            if not ok or (isinstance(v, float) and math.isnan(v)):
                what = f"must have each item {self._bounds()}" if v is not value else f"must be {self._bounds()}"
                raise ZooError(f"{path}={value!r} (in {source}) {what}" + (f" -- {self.help}" if self.help else ""))

    def _error(self, path, value, source, like=None) -> str:
        example = like if like is not None else self.default
        example = "" if example is None else f", like {example!r}"
        return f"{path} in {source} expects {self.describe()}{example}, got {value!r}"


def _type_name(t) -> str:
    return "any" if t is object else t.__name__


def yaml_scalar(value: Any) -> str:
    """A value as a YAML user writes it: true/false/null, lists in brackets."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    return str(value)


_BAD = object()


def _coerce(value: Any, types: tuple) -> Any:
    """``value`` as one of ``types`` (no types: anything goes), or ``_BAD``."""
    if not types:
        return value
    for t in types:
        if t is bool:
            if isinstance(value, bool):
                return value
        elif t is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                number = read_number(value)
                if isinstance(number, float) and number.is_integer():
                    return int(number)
                if isinstance(number, str) and number.lstrip("+-").isdigit():
                    return int(number)
        elif t is float:
            if isinstance(value, _NUMBER) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str) and isinstance(read_number(value), float):
                return read_number(value)
        elif t is list:
            if isinstance(value, (list, tuple)):
                return list(value)
        elif t is str:
            if isinstance(value, str):
                return value
        elif isinstance(value, t):
            return value
    return _BAD


def read_number(text: str):
    """YAML 1.1 reads '1e-3' as a string; accept it as a float (anything else stays a string). Used by
    validation (a float key given ``'1e-3'``) and by the ``--set`` parser (:mod:`zoo.config_layers`)."""
    try:
        return float(text) if any(c in text.lower() for c in ".e") and text.lower() not in ("e",) else text
    except ValueError:
        return text


# --- zoo's own keys ---------------------------------------------------------------------------
BASE: dict = {
    "model_name": Key(None, "the model this config is for (filled in by zoo)", type=str),
    "preset": Key(None, "the preset applied (filled in by zoo: --preset NAME, else `cpu`/`gpu` by device)",
                  type=str),
    "preset_reason": Key(None, "why that preset (filled in by zoo): --preset, auto: training on cpu|cuda, or "
                               "defaults", type=str),
    "seed": Key(0, "seeds the weights, the batch order, the training noise and the sample grids", ge=0),
    "data": {
        "name": Key("mnist", "the dataset: a registered name (`zoo list` shows them)"),
        "root": Key(None, "folder holding the dataset files; null: $ZOO_DATA, else ~/.cache/zoo/data", type=str),
        "split": Key("train", "which split of the dataset to train on (`test` where only MNIST's test split "
                              "is on disk)"),
        "holdout": Key(0, "images of the split held out from training (seeded, the same for every run), for "
                          "--reference holdout: a count, or a fraction below 1", type=(int, float), ge=0),
        "image_size": Key(28, "side of the square images the model is fed (28 -> 32 pads 2 pixels each side)",
                          ge=1),
        "channels": Key(None, "image channels the model is fed; null: the dataset's", type=int, ge=1),
        "resize": Key("pad", "how images reach data.image_size: pad (zero border, exact pixels) or interpolate",
                      choices=("pad", "interpolate")),
        "download": Key(True, "try torchvision's download when the files are missing (never with ZOO_OFFLINE=1)"),
        "limit": Key(None, "train on the first N images only (after the holdout); null: all", type=int, ge=1),
        "num_classes": Key(None, "classes in the dataset's labels (filled in by zoo from the data when a model "
                                 "is conditional, model.conditional: true)", type=int, ge=1),
    },
    "trainer": {
        "device": Key("auto", "auto (CUDA when available, else CPU), cpu, cuda or cuda:N",
                      pattern=r"auto|cpu|cuda(:\d+)?"),
        "batch_size": Key(128, "global batch size (split evenly across processes)", ge=1),
        "lr": Key(2e-4, "AdamW learning rate (after warm-up)", gt=0),
        "betas": Key([0.9, 0.999], "AdamW betas (beta1, beta2)", ge=0, lt=1, length=2),
        "weight_decay": Key(0.0, "AdamW decoupled weight decay", ge=0),
        "warmup_steps": Key(0, "linear learning-rate warm-up from 0 over this many steps", ge=0),
        "grad_clip": Key(None, "clip the global gradient norm to this; null: no clipping", type=float, gt=0),
        "max_steps": Key(2000, "stop after this many steps; null: no step limit (the first limit reached "
                               "stops the run)", type=int, ge=1, nullable=True),
        "max_epochs": Key(None, "stop after this many passes over the training images; null: no limit",
                          type=int, ge=1),
        "max_minutes": Key(None, "stop after this many minutes of training; null: no time limit",
                           type=float, gt=0),
        "precision": Key("auto", "autocast: auto (bf16 on CUDA, fp16 without bf16, fp32 on CPU), fp32, bf16, "
                                 "fp16", choices=("auto", "fp32", "bf16", "fp16")),
        "channels_last": Key("auto", "channels-last memory format: auto (on CUDA only), true or false",
                             type=(bool, str), choices=("auto", True, False)),
        "compile": Key(False, "torch.compile the model's training_loss"),
        "log_every": Key(50, "steps per row of metrics.jsonl; each logged value is the mean over those steps "
                             "(the log window)", ge=1),
        "sample_every": Key(500, "steps between fixed-noise sample grids in samples/; 0: none", ge=0),
        "checkpoint_every": Key(500, "steps between saves of checkpoints/last.pt; 0: only at the end", ge=0),
        "keep_checkpoints": Key(0, "also keep the newest N step-XXXXXX.pt checkpoints; 0: only last.pt", ge=0),
        "n_samples": Key(64, "images in each sample grid and in samples.png", ge=1, le=1024),
        "skip_nonfinite": Key(False, "skip a step whose loss is NaN/inf instead of stopping the run"),
        "eval_every": Key(None, "steps between quick FIDs (logged as fid, best.pt keeps the best); null: off",
                          type=int, ge=1),
        "eval_at_minutes": Key([], "also a quick FID at the first step past each of these minutes of training, e.g. "
                               "[1, 3, 10, 30] (a curve read at fixed times; not held back by eval_max_minutes, "
                               "but their time counts in it)",
                               item=float, gt=0),
        "eval_n": Key(1000, "samples per quick FID (trainer.eval_every, eval_at_minutes)", ge=2),
        "eval_max_minutes": Key(None, "wall-clock minutes all periodic evaluations of a run may take (their time "
                                "is not training time): none starts once the rest would not cover the last one; "
                                "null: no bound", type=float, gt=0),
        "lr_schedule": Key("constant", "learning-rate decay after warm-up, over the budget (trainer.max_steps or "
                           "max_epochs, else max_minutes by time used: not bitwise-resumable)",
                           choices=("constant", "cosine", "linear")),
        "min_lr_ratio": Key(0.0, "final learning rate of a cosine or linear schedule, as a fraction of "
                            "trainer.lr", ge=0, le=1),
        "grid_seconds": Key(30.0, "time bound for a sample grid (samples/ and samples.png): after the first "
                            "8 images, drawing stops before the bound; null: always trainer.n_samples",
                            type=float, gt=0, nullable=True),
        "progress_seconds": Key(30.0, "seconds between plain progress lines (on stdout) when output is piped or "
                                "redirected (tee, nohup, CI)", gt=0),
        "tensorboard": Key(False, "also write scalars and sample grids to RUN/tb (pip install "
                           "'zoo[tensorboard]'); metrics.jsonl stays the record"),
        "ddp_find_unused": Key(False, "DDP: let an optimizer phase leave some of its own parameters without "
                               "a gradient (find_unused_parameters; slower, only for models that need it)"),
    },
    "ema": {
        "enabled": Key(False, "keep an exponential moving average of the weights; sampling uses it"),
        "decay": Key(0.999, "EMA decay per update: the average spans about 1 / (1 - decay) updates", ge=0, lt=1),
        "warmup": Key(True, "lower the decay early on: min(decay, (1 + n) / (10 + n)) after n updates"),
        "every": Key(1, "update the EMA every N steps", ge=1),
        "start": Key(0, "first step that updates the EMA", ge=0),
        "kind": Key("exponential", "exponential (ema.decay) or power: beta_t = (1 - 1/t)^(gamma + 1) after t "
                    "updates (Karras et al. 2024), an average whose horizon grows with the run",
                    choices=("exponential", "power")),
        "gamma": Key(6.94, "power EMA exponent (6.94 is sigma_rel 0.10, 16.97 is 0.05)", gt=0),
        "sigma_rel": Key(None, "power EMA width relative to the run length (Karras et al. 2024); "
                         "overrides ema.gamma; null: use ema.gamma", type=float, gt=0, lt=0.288),
    },
    "model": {},
}

RECORDED = ("model_name", "preset", "preset_reason")
"""Top-level keys zoo fills in while resolving; no layer sets them (a ``-c`` file may hold them: a run's
own config.yaml can be passed back with ``-c``)."""


# --- declarations as trees --------------------------------------------------------------------
def key_of(value: Any) -> Key:
    """The :class:`Key` of a declaration: a Key as it is; a plain value is a default with no help and its
    type inferred (a plain string default also accepts numbers and booleans, as before declarations)."""
    if isinstance(value, Key):
        return value
    if isinstance(value, str):
        return Key(value, type=(str, int, float, bool))
    return Key(value)


def defaults(tree: Mapping) -> dict:
    """``tree`` with every :class:`Key` replaced by its default (plain values stay): plain config data."""
    return {k: defaults(v) if isinstance(v, Mapping) else
            copy.deepcopy(v.default if isinstance(v, Key) else v) for k, v in tree.items()}


def leaves(tree: Mapping, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """``(dotted path, leaf)`` of every leaf of a nested dict, in order."""
    for k, v in tree.items():
        if isinstance(v, Mapping):
            yield from leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def check_declarations(tree: Mapping, source: str, prefix: str = "") -> None:
    """Every declared default must itself be valid (a plugin author's ``Key(0, ge=1)`` is caught)."""
    for path, leaf in leaves(tree, prefix):
        if isinstance(leaf, Key):
            leaf.check(path, leaf.default, source)


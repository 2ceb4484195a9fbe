"""Config: declared keys, nested dicts with attribute access, layered and checked.

Every setting is declared once as a :class:`Key` (default, one line of help, valid values): zoo's own in
:data:`BASE`, a model's ``model.*`` keys in its ``config``. The declarations validate every layer and
generate ``zoo show-config --explain`` and ``docs/config.md``.

Layers, later wins (:func:`resolve`)::

    base defaults < model defaults < user file < preset < -c file < overrides < --set

The user file is ``$ZOO_CONFIG``, else ``${XDG_CONFIG_HOME:-~/.config}/zoo/config.yaml``: settings for
this machine (``data.split``, ``data.holdout``, ``data.root``, ``trainer.device`` ...), written once. Its
``model.*`` settings go under ``models: {NAME: {...}}`` because they differ per model. An unknown key or a
value of the wrong type or out of range, in any layer, is a one-line :class:`ZooError` naming the key, the
value, the layer it came from and what is valid.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import ZooError, did_you_mean

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
                text += ", each one of: " + ", ".join(_show(c) for c in self.choices)
            elif self._bounds():
                text += f", each {self._bounds()}"
        elif self.choices is not None:
            text = "one of: " + ", ".join(_show(c) for c in self.choices)
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
            raise ZooError(f"{path}={value!r} (in {source}) is not one of {', '.join(map(_show, self.choices))}")
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


def _show(value: Any) -> str:
    """A value as a YAML user writes it: true/false/null, lists in brackets."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


_BAD = object()
_MISSING = object()


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
                number = _number(value)
                if isinstance(number, float) and number.is_integer():
                    return int(number)
                if isinstance(number, str) and number.lstrip("+-").isdigit():
                    return int(number)
        elif t is float:
            if isinstance(value, _NUMBER) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str) and isinstance(_number(value), float):
                return _number(value)
        elif t is list:
            if isinstance(value, (list, tuple)):
                return list(value)
        elif t is str:
            if isinstance(value, str):
                return value
        elif isinstance(value, t):
            return value
    return _BAD


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
        "eval_n": Key(1000, "samples per quick FID (trainer.eval_every)", ge=2),
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
        "progress_seconds": Key(30.0, "seconds between plain progress lines when stderr is not a terminal "
                                "(tee, nohup, CI)", gt=0),
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


def _with_default(key: Key, value: Any) -> Key:
    """``key`` with another default (a variant's, a subclass's), its type and nullability kept."""
    return dataclasses.replace(key, default=value, type=key.types() or object, nullable=key.allows_none(),
                               item=key.item_types() or None)


class Config(dict):
    """A dict whose keys are also attributes (``cfg.trainer.lr``)."""

    def __init__(self, data: Mapping | None = None):
        super().__init__()
        for k, v in (data or {}).items():
            self[k] = Config(v) if isinstance(v, Mapping) else v

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __deepcopy__(self, memo):
        return Config(copy.deepcopy(self.to_dict(), memo))

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self.items()}

    def get_path(self, path: str) -> Any:
        node: Any = self
        for part in path.split("."):
            node = node[part]
        return node

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def merge(base: dict, override: Mapping | None, *, source: str = "config", strict: bool = True,
          prefix: str = "", schema: Mapping | None = None, sources: dict | None = None) -> dict:
    """Return ``base`` updated by ``override``.

    In strict mode every key of ``override`` must exist in ``base``. Each value is checked (type, range,
    choices) by its :class:`Key`: the one in ``schema`` at the same path, else ``base``'s own leaf (a Key,
    or a plain value whose type is inferred). Where ``base``'s leaf is a Key -- merging declarations, as a
    variant or a subclass does -- a plain value becomes that Key's new default and a Key replaces it.
    ``sources`` (path -> layer), when given, records ``source`` for every leaf set.
    """
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        path = f"{prefix}{key}"
        if key not in out:
            if strict:
                raise ZooError(f"unknown config key '{path}' in {source}"
                               f"{did_you_mean(path, [p for p, _ in _paths(base, prefix)])}")
            out[key] = copy.deepcopy(value)
            if sources is not None:
                for p, _ in leaves({key: value}, prefix):
                    sources[p] = source
            continue
        declared = schema.get(key, _MISSING) if isinstance(schema, Mapping) else _MISSING
        if isinstance(out[key], Mapping):
            if value is None:  # a YAML section with every line commented out
                continue
            if not isinstance(value, Mapping):
                raise ZooError(f"config key '{path}' in {source} is a section (like {path}.KEY: VALUE), "
                               f"got {value!r}")
            out[key] = merge(out[key], value, source=source, strict=strict, prefix=f"{path}.",
                             schema=declared if isinstance(declared, Mapping) else None, sources=sources)
            continue
        if isinstance(out[key], Key):  # merging declarations
            out[key] = value if isinstance(value, Key) else _with_default(out[key], out[key].check(path, value, source))
        else:
            k = key_of(out[key] if declared is _MISSING or isinstance(declared, Mapping) else declared)
            out[key] = k.check(path, value, source, like=out[key])
        if sources is not None:
            sources[path] = source
    return out


def _paths(tree: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    paths = []
    for k, v in tree.items():
        paths.append((f"{prefix}{k}", v))
        if isinstance(v, Mapping):
            paths += _paths(v, f"{prefix}{k}.")
    return paths


def check_declarations(tree: Mapping, source: str, prefix: str = "") -> None:
    """Every declared default must itself be valid (a plugin author's ``Key(0, ge=1)`` is caught)."""
    for path, leaf in leaves(tree, prefix):
        if isinstance(leaf, Key):
            leaf.check(path, leaf.default, source)


# --- parsing ----------------------------------------------------------------------------------
def parse_set(items: Iterable[str]) -> dict:
    """``["a.b=1", "c=x"]`` -> nested dict; values are parsed as YAML scalars."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ZooError(f"--set '{item}' is not KEY=VALUE (e.g. --set trainer.lr=1e-3)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ZooError(f"--set '{item}' has an empty key (e.g. --set trainer.lr=1e-3)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):
            value = _number(value)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ZooError(f"--set '{item}' conflicts with another --set for '{part}'")
        node[parts[-1]] = value
    return out


def _number(text: str):
    """YAML 1.1 reads '1e-3' as a string; accept it as a float (anything else stays a string)."""
    try:
        return float(text) if any(c in text.lower() for c in ".e") and text.lower() not in ("e",) else text
    except ValueError:
        return text


def parse_options(items: Iterable[str], what: str = "--option") -> dict:
    """``["steps=20", "sampler=ddim"]`` -> ``{"steps": 20, "sampler": "ddim"}`` (flat; YAML scalars)."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ZooError(f"{what} '{item}' is not KEY=VALUE (e.g. {what} steps=20)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key] = _number(value) if isinstance(value, str) else value
    return out


def load_yaml(path: str | Path, what: str = "config file", fix: str = "pass an existing YAML file with -c") -> dict:
    p = Path(path)
    if not p.is_file():
        raise ZooError(f"{what} '{path}' not found ({fix})")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ZooError(f"malformed YAML in '{path}'{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ZooError(f"{what} '{path}' must hold a mapping of keys, got {type(data).__name__}")
    return data


# --- the user file ----------------------------------------------------------------------------
def user_config_path() -> Path | None:
    """``$ZOO_CONFIG`` (set but empty: no user file), else ``${XDG_CONFIG_HOME:-~/.config}/zoo/config.yaml``
    when it exists."""
    explicit = os.environ.get("ZOO_CONFIG")
    if explicit is not None:
        return Path(explicit).expanduser() if explicit.strip() else None
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    path = Path(base) / "zoo" / "config.yaml"
    return path if path.is_file() else None


def user_layers(model_name: str | None = None) -> list[tuple[dict, str]]:
    """The user file as layers ``[(settings, source), ...]``: its general part, then ``models: NAME:``.

    The general part holds ``data``, ``trainer``, ``ema`` (and ``seed``) settings for every model; a
    top-level ``model:`` is an error, since ``model.*`` keys differ per model: they go under
    ``models: {NAME: {model: {...}, trainer: {...}}}``, applied to that model only (names of models not
    installed are ignored)."""
    path = user_config_path()
    if path is None:
        return []
    source = f"user file {path}"
    fix = "unset ZOO_CONFIG, or point it at a YAML file" if os.environ.get("ZOO_CONFIG") else "create it"
    data = load_yaml(path, what="user file (ZOO_CONFIG)" if os.environ.get("ZOO_CONFIG") else "user file",
                     fix=fix)
    data = dict(data)
    models = data.pop("models", None) or {}
    if "model" in data:
        raise ZooError(f"'model:' in {source}: model.* settings differ per model -- put them under "
                       f"models: {{NAME: {{model: {{...}}}}}} (e.g. models: {{ddpm: {{model: {{dim: 32}}}}}})")
    if not isinstance(models, Mapping):
        raise ZooError(f"'models:' in {source} must map model names to settings, got {models!r}")
    layers = [(data, source)]
    if model_name is not None and isinstance(models.get(model_name), Mapping):
        layers.append((dict(models[model_name]), f"{source} (models.{model_name})"))
    elif model_name is not None and models.get(model_name) is not None:
        raise ZooError(f"'models.{model_name}' in {source} must be a mapping of settings, "
                       f"got {models[model_name]!r}")
    return layers


def base_config(user: bool = True) -> Config:
    """zoo's base defaults (no model), with the user file's general settings when ``user``: the data
    settings ``zoo eval --images`` and other model-less commands start from."""
    values = defaults(BASE)
    for layer, source in (user_layers() if user else []):
        values = merge(values, _without_recorded(layer, source), source=source, schema=BASE)
    return Config(values)


def _without_recorded(layer: Mapping | None, source: str, allow: bool = False) -> dict:
    """``layer`` without the keys zoo fills in; setting them is an error unless ``allow`` (a -c file,
    which may be a run's own config.yaml: they are dropped)."""
    layer = dict(layer or {})
    for key in RECORDED:
        if key in layer:
            if not allow:
                fix = "name the model on the command line" if key == "model_name" else "choose one with --preset NAME"
                raise ZooError(f"'{key}' in {source} is filled in by zoo, not set ({fix})")
            del layer[key]
    return layer


# --- resolving --------------------------------------------------------------------------------
def resolve(model_defaults: Mapping | None = None, preset: Mapping | None = None,
            file: str | Path | None = None, sets: Iterable[str] = (), *,
            preset_name: str = "preset", overrides: Mapping | None = None, user: Iterable = (),
            model_label: str = "model defaults", sources: dict | None = None) -> Config:
    """Layer the config: base < model defaults < user < preset < file < overrides < --set.

    ``model_defaults`` is a model's ``config``: its ``model`` section declares the ``model.*`` keys
    (:class:`Key` or plain defaults), its other sections override zoo's defaults. ``user``: layers
    ``(mapping, source)`` (see :func:`user_layers`). Every value of every layer is checked against its
    declaration. ``sources`` (a dict), when given, is filled with ``path -> layer`` for every leaf.
    The result holds plain values only."""
    model_defaults = dict(model_defaults or {})
    schema = {**BASE, "model": dict(model_defaults.pop("model", None) or {})}
    check_declarations(schema["model"], model_label, "model.")
    values = defaults(schema)
    if sources is not None:
        sources.update({path: "base default" for path, _ in leaves(BASE)})
        sources.update({path: model_label for path, _ in leaves(schema["model"], "model.")})
    values = merge(values, defaults(model_defaults), source=model_label, schema=schema, sources=sources)
    layers = [*user, (preset, f"preset '{preset_name}'")]
    if file is not None:
        layers.append((load_yaml(file), f"-c file '{file}'"))
    layers += [(overrides, "arguments"), (parse_set(sets), "--set")]
    for layer, source in layers:
        layer = _without_recorded(layer, source, allow=source.startswith("-c file"))
        values = merge(values, layer, source=source, schema=schema, sources=sources)
    return Config(values)


# --- showing ----------------------------------------------------------------------------------
def _flow(value: Any) -> str:
    """``value`` as one line of YAML (lists in brackets, strings quoted where YAML needs it)."""
    return yaml.safe_dump([value], default_flow_style=True, width=10**9).strip()[1:-1]


def annotated_yaml(cfg: Mapping, sources: Mapping[str, str], schema: Mapping | None = None) -> str:
    """``cfg`` as YAML with ``# from LAYER`` after every value; with ``schema``, each key's help and
    valid values as a comment line above it (``zoo show-config --explain``). The result loads back
    (``yaml.safe_load``) to the plain config."""
    lines: list[str] = []

    def walk(node: Mapping, declared: Mapping | None, prefix: str, indent: str) -> None:
        for k, v in node.items():
            path = f"{prefix}{k}"
            d = declared.get(k) if isinstance(declared, Mapping) else None
            if isinstance(v, Mapping) and v:
                lines.append(f"{indent}{k}:")
                walk(v, d if isinstance(d, Mapping) else None, f"{path}.", indent + "  ")
                continue
            if schema is not None:
                key = key_of(d) if d is not None and not isinstance(d, Mapping) else key_of(v)
                lines.append(f"{indent}# {key.help + ' ' if key.help else ''}[{key.describe()}]")
            lines.append(f"{indent}{_flow(k)}: {_flow(v)}  # from {sources.get(path, 'zoo')}")

    walk(cfg.to_dict() if isinstance(cfg, Config) else copy.deepcopy(dict(cfg)), schema, "", "")
    return "\n".join(lines) + "\n"

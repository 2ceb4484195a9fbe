"""Config: nested dicts with attribute access, layered and checked.

Resolution order (later wins): zoo's base defaults < the model's ``config``
< a preset (``--preset``) < a YAML file (``-c``) < ``--set key.path=value``.
The defaults are the schema: an unknown key or a value of the wrong type is a
:class:`ZooError` naming the key and the closest known keys.
"""
from __future__ import annotations

import copy
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
    ``choices`` lists the allowed values::

        "lr": Key(2e-4, "AdamW learning rate", gt=0),
        "batch_size": Key(128, "global batch size (split across processes)", ge=1),
        "sampler": Key("ddim", "default sampler", choices=("ddpm", "ddim")),
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

    def allows_none(self) -> bool:
        return self.default is None or self.nullable

    def describe(self) -> str:
        """What a valid value looks like, e.g. ``int >= 1``, ``float in (0, 1)``, ``one of: a, b``."""
        if self.choices is not None:
            text = "one of: " + ", ".join(str(c) for c in self.choices)
        else:
            names = [t.__name__ for t in self.types()] or ["any"]
            text = " or ".join(names)
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

    def check(self, path: str, value: Any, source: str = "config") -> Any:
        """``value`` converted to the declared type (``'1e-3'`` -> 0.001 for a float key), or a one-line
        :class:`ZooError` naming ``path``, the bad value, what is valid and where it came from."""
        if value is None:
            if self.allows_none():
                return None
            raise ZooError(self._error(path, value, source))
        converted = _coerce(value, self.types())
        if converted is _BAD:
            raise ZooError(self._error(path, value, source))
        value = converted
        if self.choices is not None and value not in self.choices:
            raise ZooError(f"{path}={value!r} (in {source}) is not one of {', '.join(map(str, self.choices))}")
        if isinstance(value, _NUMBER) and not isinstance(value, bool):
            ok = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                  and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
            if not ok:
                raise ZooError(f"{path}={value!r} (in {source}) must be {self._bounds()}"
                               + (f" ({self.help})" if self.help else ""))
        return value

    def _error(self, path, value, source) -> str:
        example = "" if self.default is None else f", like {self.default!r}"
        return f"{path} in {source} expects {self.describe()}{example}, got {value!r}"


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


BASE: dict = {
    "model_name": None,     # filled in by the registry
    "seed": 0,
    "data": {
        "name": "mnist",        # a registered dataset (zoo list shows them)
        "root": None,           # None -> $ZOO_DATA -> ~/.cache/zoo/data
        "split": "train",       # which split's files to read
        "holdout": 0,           # images held out (seeded) for validation/eval
        "image_size": 28,       # what the model is fed; 28 -> 32 pads by 2
        "channels": None,       # None -> the dataset's
        "resize": "pad",        # pad|interpolate when sizes differ
        "download": True,       # try torchvision's download when files are missing
        "limit": None,          # use only the first N images (after the holdout)
    },
    "trainer": {
        "device": "auto",       # auto|cpu|cuda|cuda:N
        "batch_size": 128,      # global batch (split across processes)
        "lr": 2e-4,
        "betas": [0.9, 0.999],
        "weight_decay": 0.0,
        "warmup_steps": 0,
        "grad_clip": None,      # max grad norm, None = off
        "max_steps": 2000,
        "max_epochs": None,
        "max_minutes": None,
        "precision": "auto",    # auto (bf16 on CUDA, fp16 if no bf16, fp32 on CPU)|fp32|bf16|fp16
        "channels_last": "auto",
        "compile": False,
        "log_every": 50,
        "sample_every": 500,
        "checkpoint_every": 500,
        "keep_checkpoints": 0,  # also keep this many step-XXXXXX.pt files
        "n_samples": 64,        # images in each sample grid
        "skip_nonfinite": False,
        "eval_every": None,     # steps between quick FIDs (logged, best.pt kept)
        "eval_n": 1000,
        # --- trainer keys added with the trainer rework (schedules, grids, progress, TensorBoard, DDP) ---
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
        "enabled": False,
        "decay": 0.999,
        "warmup": True,         # decay = min(decay, (1 + n) / (10 + n))
        "every": 1,
        "start": 0,
        # --- EMA keys added with the trainer rework (power-function EMA) ---
        "kind": Key("exponential", "exponential (ema.decay) or power: beta_t = (1 - 1/t)^(gamma + 1) after t "
                    "updates (Karras et al. 2024), an average whose horizon grows with the run",
                    choices=("exponential", "power")),
        "gamma": Key(6.94, "power EMA exponent (6.94 is sigma_rel 0.10, 16.97 is 0.05)", gt=0),
        "sigma_rel": Key(None, "power EMA width relative to the run length (Karras et al. 2024); "
                         "overrides ema.gamma; null: use ema.gamma", type=float, gt=0, lt=0.288),
    },
    "model": {},
}


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
          prefix: str = "") -> dict:
    """Return ``base`` updated by ``override``. In strict mode every key of
    ``override`` must exist in ``base`` and values must fit the default's type."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        path = f"{prefix}{key}"
        if key not in out:
            if strict:
                raise ZooError(f"unknown config key '{path}' in {source}{did_you_mean(path, _all_paths(base, prefix))}")
            out[key] = copy.deepcopy(value)
            continue
        if isinstance(out[key], Key):
            out[key] = out[key].check(path, value, source)
        elif isinstance(out[key], dict):
            if not isinstance(value, Mapping):
                raise ZooError(f"config key '{path}' in {source} must be a mapping, got {value!r}")
            out[key] = merge(out[key], value, source=source, strict=strict, prefix=f"{path}.")
        else:
            out[key] = check_type(path, out[key], value, source)
    return out


def _all_paths(tree: Mapping, prefix: str = "") -> list[str]:
    paths = []
    for k, v in tree.items():
        paths.append(f"{prefix}{k}")
        if isinstance(v, Mapping):
            paths += _all_paths(v, f"{prefix}{k}.")
    return paths


def check_type(path: str, default: Any, value: Any, source: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float, bool)):  # e.g. "auto" default, user gives a number
            return value
    elif isinstance(default, list):
        if isinstance(value, (list, tuple)):
            return list(value)
    else:
        return value
    kind = type(default).__name__
    raise ZooError(f"config key '{path}' in {source} expects {kind} (like {default!r}), got {value!r}")


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


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ZooError(f"config file '{path}' not found (pass an existing YAML file with -c)")
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
        raise ZooError(f"config file '{path}' must hold a mapping of keys, got {type(data).__name__}")
    return data


def resolve(model_defaults: Mapping | None = None, preset: Mapping | None = None,
            file: str | Path | None = None, sets: Iterable[str] = (), *,
            preset_name: str = "preset", overrides: Mapping | None = None) -> Config:
    """Layer the config: base < model defaults < preset < file < overrides < --set."""
    cfg = merge(BASE, {k: v for k, v in (model_defaults or {}).items() if k != "model"}, source="model defaults")
    cfg["model"] = copy.deepcopy(dict((model_defaults or {}).get("model", {})))
    cfg = merge(cfg, preset, source=f"preset '{preset_name}'")
    if file is not None:
        cfg = merge(cfg, load_yaml(file), source=f"'{file}'")
    cfg = merge(cfg, overrides, source="arguments")
    cfg = merge(cfg, parse_set(sets), source="--set")
    return Config(defaults(cfg))


def defaults(tree: Mapping) -> dict:
    """``tree`` with every :class:`Key` replaced by its default: plain config data."""
    return {k: defaults(v) if isinstance(v, Mapping) else copy.deepcopy(v.default if isinstance(v, Key) else v)
            for k, v in tree.items()}

"""What ``zoo list`` shows, as plain data, and a cache of it so that ``zoo list`` needs no torch.

:func:`snapshot` turns the live registry into JSON-able data: every model (family, plugin,
description, parameters at its defaults and per preset, presets with their help, its ``model.*``
settings with defaults, valid values and help, its sampling options), dataset and extractor, and
the plugin failures. Building it imports every plugin, hence torch: a few seconds. It also carries each
model's declarations (its config of :class:`~zoo.config.Key` and its presets, where JSON carries them
exactly): :func:`cached_models` hands them to ``zoo.registry.model_config``, so that a bad model name,
preset, ``-c`` file or ``--set`` is rejected without importing a plugin (or torch).

:func:`listing` returns that snapshot from a cache file when the cache is current, else builds it
and rewrites the cache. The cache is keyed by what could change the listing: the ``zoo.plugins``
entry points (name, module, distribution, version), the modification times of zoo's own modules and
of each plugin module's folder, the Python environment and machine (presets may depend on the
device), ``ZOO_PLUGINS`` / ``ZOO_DISABLE_PLUGINS`` and the user config file. A snapshot that holds a
plugin failure is never reused (installing a missing dependency changes none of the keys), and
``ZOO_STRICT_PLUGINS=1`` always loads the plugins.
The cache lives in ``$ZOO_CACHE``, else ``~/.cache/zoo``; ``zoo list --refresh`` rebuilds it.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .env import env_flag

FORMAT = 4  # bump when the snapshot's layout changes
_ENV = ("ZOO_PLUGINS", "ZOO_DISABLE_PLUGINS", "ZOO_CONFIG", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")


# --- the snapshot ---------------------------------------------------------------------------------
def snapshot(reg) -> dict:
    """The registry ``reg`` as plain data (imports the models' code: torch)."""
    return {
        "models": [_model(e) for e in sorted(reg.models.values(), key=lambda e: e.name)],
        "datasets": [{"name": d.name, "plugin": d.plugin, "channels": d.channels, "image_size": d.image_size,
                      "splits": list(d.splits), "description": d.description, "extractor": d.extractor,
                      "num_classes": d.num_classes}
                     for d in sorted(reg.datasets.values(), key=lambda d: d.name)],
        "extractors": [{"name": x.name, "plugin": x.plugin, "description": x.description}
                       for x in sorted(reg.extractors.values(), key=lambda x: x.name)],
        "failures": [{"plugin": f.plugin, "error": f.error} for f in reg.failures],
    }


def _model(entry) -> dict:
    from .config import Key
    cls = entry.cls
    own = (cls.config or {}).get("model", {}) or {}
    variant = (entry.config or {}).get("model", {}) or {}
    settings = []

    def walk(section: dict, overrides: dict, prefix: str) -> None:
        for k, v in section.items():
            if isinstance(v, dict):
                walk(v, overrides.get(k, {}) if isinstance(overrides.get(k), dict) else {}, f"{prefix}{k}.")
                continue
            key = v if isinstance(v, Key) else Key(v)
            default = overrides[k] if k in overrides else key.default
            settings.append({"key": f"{prefix}{k}", "default": _jsonable(default), "valid": key.describe(),
                             "help": key.help})
    walk(own, variant, "model.")
    others = {}
    for source in (cls.config or {}, entry.config or {}):
        for section, values in source.items():
            if section != "model" and isinstance(values, dict):
                for k, v in values.items():
                    others[f"{section}.{k}"] = _jsonable(v.default if isinstance(v, Key) else v)
    helps = entry.preset_help
    return {
        "config": _portable(entry.defaults),
        "preset_configs": _portable(lambda: entry.presets),
        "name": entry.name, "family": entry.family, "plugin": entry.plugin, "description": entry.description,
        "can_condition": bool(getattr(cls, "can_condition", False)),  # `zoo list`: cond.
        "null_label": bool(getattr(cls, "null_label", False)),
        "params": param_count(entry.name),  # at the preset zoo picks with no --preset, on this machine
        "params_preset": _default_preset(entry.name),
        "presets": [{"name": p, "help": helps.get(p, ""), "params": param_count(entry.name, p)}
                    for p in entry.presets],
        "settings": settings,
        "defaults": others,
        "sample_options": [{"name": n, "default": _jsonable(k.default), "valid": k.describe(), "help": k.help}
                           for n, k in (getattr(cls, "sample_options", None) or {}).items()],
        "likelihood_options": [{"name": n, "default": _jsonable(k.default), "valid": k.describe(), "help": k.help}
                               for n, k in (getattr(cls, "likelihood_options", None) or {}).items()],
    }


def param_count(name: str, preset: str | None = None) -> int | None:
    """Parameters of model ``name`` (at ``preset``), counted on the ``meta`` device: nothing is allocated.
    ``None`` when it cannot be built (a listing never fails because of one model)."""
    import torch
    from .registry import create_model, model_config
    try:
        cfg = model_config(name, preset=preset)
        with torch.device("meta"):
            model = create_model(name, cfg)
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:  # noqa: BLE001
        return None


def _default_preset(name: str) -> dict:
    """``{"name": preset or None, "reason": why}``: what ``zoo train NAME`` applies with no --preset here."""
    from .registry import model_config
    try:
        cfg = model_config(name)
        return {"name": cfg.preset, "reason": cfg.preset_reason}
    except Exception:  # noqa: BLE001 - a listing never fails because of one model
        return {"name": None, "reason": "?"}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


# --- declarations as JSON -------------------------------------------------------------------------
_TYPES = {t.__name__: t for t in (bool, int, float, str, list, dict, tuple, object, type(None))}
_NAMES = {t: name for name, t in _TYPES.items()}


def _encode(tree: Any) -> Any:
    """A config tree (sections, :class:`Key` leaves, plain values) as JSON data; ``TypeError`` for a
    type JSON cannot name."""
    from .config import Key
    if isinstance(tree, dict):
        return {"section": {k: _encode(v) for k, v in tree.items()}}
    if isinstance(tree, Key):
        fields = {f.name: getattr(tree, f.name) for f in dataclasses.fields(Key)}
        for name in ("type", "item"):  # a type by name; a tuple of types as a list of names
            t = fields[name]
            fields[name] = [_NAMES[x] for x in t] if isinstance(t, tuple) else None if t is None else _NAMES[t]
        fields["choices"] = None if tree.choices is None else list(tree.choices)
        return {"key": fields}
    return {"value": tree}


def _decode(data: Any) -> Any:
    from .config import Key
    if "section" in data:
        return {k: _decode(v) for k, v in data["section"].items()}
    if "key" in data:
        fields = dict(data["key"])
        for name in ("type", "item"):
            t = fields[name]
            fields[name] = None if t is None else tuple(_TYPES[x] for x in t) if isinstance(t, list) else _TYPES[t]
        if fields["choices"] is not None:
            fields["choices"] = tuple(fields["choices"])
        return Key(**fields)
    return data["value"]


def _portable(tree_of: Callable[[], dict]) -> Any:
    """``tree_of()`` encoded for the cache, or None unless decoding gives it back exactly (same repr: types,
    tuples and key order included) -- then the live registry is used for this model."""
    try:
        tree = tree_of()
        data = json.loads(json.dumps(_encode(tree)))
        return data if repr(_decode(data)) == repr(tree) else None
    except Exception:  # noqa: BLE001 - a type without a name here, a broken declaration: a listing never fails
        return None


# --- the cache ------------------------------------------------------------------------------------
def cache_path() -> Path:
    base = os.environ.get("ZOO_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zoo"
    env = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]  # one file per Python environment
    return Path(base).expanduser() / f"registry-{env}.json"


def cache_key() -> dict:
    """Everything the listing depends on that can be read without importing a plugin."""
    import importlib.metadata as md
    eps = sorted(md.entry_points(group="zoo.plugins"), key=lambda ep: (ep.name, ep.value))
    points = [[ep.name, ep.value, *((ep.dist.metadata["Name"], ep.dist.version) if ep.dist else ("?", "?"))]
              for ep in eps]
    files = {}
    for folder_or_file in [Path(__file__).parent, *(_module_files(ep.module) for ep in eps)]:
        if folder_or_file is None:
            continue
        paths = sorted(folder_or_file.glob("*.py")) if folder_or_file.is_dir() else [folder_or_file]
        for p in paths:
            try:
                files[str(p)] = p.stat().st_mtime_ns
            except OSError:
                files[str(p)] = None
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    user_files = [os.environ.get("ZOO_CONFIG"), config_home / "zoo" / "config.yaml"]
    for p in filter(None, user_files):
        p = Path(p).expanduser()
        files[str(p)] = p.stat().st_mtime_ns if p.is_file() else None
    return {"format": FORMAT, "python": sys.version, "prefix": sys.prefix, "host": platform.node(),
            "env": {v: os.environ.get(v) for v in _ENV}, "entry_points": points, "files": files}


def _module_files(module: str) -> Path | None:
    """The folder whose ``*.py`` files make up plugin ``module`` (its package), or its one file.

    Found the way ``import`` finds it (the finders of ``sys.meta_path``, editable installs included) but
    without importing anything, parent packages included, and without ``sys.modules`` (which may hold a
    module of that name from elsewhere)."""
    spec, path = None, None
    parts = module.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        spec = None
        for finder in sys.meta_path:
            try:
                spec = finder.find_spec(name, path)
            except Exception:  # noqa: BLE001 - a broken finder or plugin: the live registry will say why
                spec = None
            if spec is not None:
                break
        if spec is None:
            return None
        path = spec.submodule_search_locations
    if not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    origin = Path(spec.origin)
    return origin.parent if (spec.submodule_search_locations or "." in module) else origin


def listing(refresh: bool = False, on_build=None) -> tuple[dict, str]:
    """``(snapshot, how)``: ``how`` is ``live`` (the registry was loaded in this process already),
    ``cached`` or ``refreshed`` (built now -- slow: imports torch and every plugin -- and cached).
    ``on_build()`` is called before a slow build (``zoo list`` says so on a terminal)."""
    loaded = sys.modules.get("zoo.registry")  # (importing it would import pluggy: not needed for a cache hit)
    if loaded is not None and loaded.loaded():
        return snapshot(loaded.registry()), "live"
    if not refresh:
        stored = current()
        if stored is not None and not stored["failures"]:
            return stored, "cached"
    if on_build is not None:
        on_build()
    from .registry import registry
    key = cache_key()  # before loading: a file edited meanwhile makes the next call rebuild
    snap = snapshot(registry())
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "snapshot": snap}))
        os.replace(tmp, path)  # atomic: a concurrent `zoo list` reads the old file or the new one
    except OSError:
        pass  # a read-only cache folder only costs speed
    return snap, "refreshed"


def _strict() -> bool:
    return env_flag("ZOO_STRICT_PLUGINS")  # a plugin author: live


def current() -> dict | None:
    """The cached snapshot when the cache is current (plugin failures included), else None; always None
    with ``ZOO_STRICT_PLUGINS=1``. Imports no plugin."""
    if _strict():
        return None
    try:
        stored = json.loads(cache_path().read_text())
        if stored.get("key") == cache_key():
            return stored["snapshot"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


@dataclasses.dataclass
class CachedModel:
    """A model's declarations read from the cache: what ``zoo.registry.model_config`` needs of a
    ``ModelEntry`` (``defaults()``, ``presets``), without its class."""
    name: str
    config: dict
    presets: dict

    def defaults(self) -> dict:
        return copy.deepcopy(self.config)


def cached_models(snap: dict) -> dict[str, CachedModel | None] | None:
    """``name -> CachedModel`` of every model in ``snap`` (from :func:`current`), None for a model whose
    declarations JSON could not carry exactly; None when a plugin failed (the live registry says why)."""
    if snap["failures"]:
        return None
    return {m["name"]: CachedModel(m["name"], _decode(m["config"]), _decode(m["preset_configs"]))
            if m.get("config") is not None and m.get("preset_configs") is not None else None
            for m in snap["models"]}

"""Plugin discovery and the registry of models, datasets and feature extractors.

Every plugin -- the built-ins under ``plugins/`` included -- is a module named
by an entry point in the ``zoo.plugins`` group. ``ZOO_PLUGINS=a,b`` loads only
those entry points; ``ZOO_DISABLE_PLUGINS=c`` skips some. A plugin that fails to
import, raises in a hook, registers a taken name or breaks the contract is
recorded in ``registry().failures`` (shown by ``zoo plugins``) and never hides
the others.
"""
from __future__ import annotations

import difflib
import importlib.metadata as md
import inspect
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from . import hookspecs
from .contract import API_VERSION, ZooModel
from .errors import ZooError, did_you_mean

GROUP = "zoo.plugins"


@dataclass
class ModelEntry:
    name: str
    cls: type
    plugin: str
    family: str
    description: str
    config: dict = field(default_factory=dict)  # variant overrides on top of cls.config

    def defaults(self) -> dict:
        from .config import merge
        return merge(_plain(self.cls.config), _plain(self.config), strict=False)

    @property
    def presets(self) -> dict:
        return dict(self.cls.presets)


@dataclass
class DatasetEntry:
    name: str
    loader: Callable
    plugin: str
    channels: int
    image_size: int
    description: str = ""
    splits: tuple = ("train", "test")


@dataclass
class ExtractorEntry:
    name: str
    factory: Callable
    plugin: str
    description: str = ""


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str
    distribution: str


@dataclass
class Failure:
    plugin: str
    error: str
    detail: str = ""


def _plain(d) -> dict:
    """A deep copy of a config dict, each ``zoo.Key`` replaced by its default.
    (Stopgap so a plugin can declare Keys in ``config`` before the config resolver checks them.)"""
    import copy

    from .config import Key
    return {k: v.default if isinstance(v, Key) else _plain(v) if isinstance(v, dict) else copy.deepcopy(v)
            for k, v in dict(d or {}).items()}


class Registry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("zoo")
        self.pm.add_hookspecs(hookspecs)
        self.models: dict[str, ModelEntry] = {}
        self.datasets: dict[str, DatasetEntry] = {}
        self.extractors: dict[str, ExtractorEntry] = {}
        self.plugins: list[PluginInfo] = []
        self.failures: list[Failure] = []

    # --- loading --------------------------------------------------------------------
    def load_entry_points(self) -> "Registry":
        only = _env_list("ZOO_PLUGINS")
        skip = set(_env_list("ZOO_DISABLE_PLUGINS") or [])
        seen: dict[str, str] = {}  # entry-point name -> the distribution that provides it
        # zoo's own plugins first, then the others by name: the first to register a name keeps it
        def order(ep):
            dist = getattr(ep, "dist", None)
            return (dist is None or dist.metadata["Name"] != "zoo", ep.name)
        for ep in sorted(md.entry_points(group=GROUP), key=order):
            if (only is not None and ep.name not in only) or ep.name in skip:
                continue
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "?"
            if ep.name in seen:  # the same distribution found twice on sys.path is no conflict
                if dist_name != seen[ep.name]:
                    self._fail(ep.name, f"the plugin name '{ep.name}' of {dist_name} ({ep.value}) is taken by "
                                        f"{seen[ep.name]}: rename the entry point in {dist_name}")
                continue
            seen[ep.name] = dist_name
            version = dist.version if dist is not None else "?"
            try:
                module = ep.load()
            except Exception as e:  # noqa: BLE001 - any import error is the plugin's
                self._fail(ep.name, f"failed to import {ep.value}: {type(e).__name__}: {e}")
                continue
            self.add_plugin(module, ep.name, version=version, distribution=dist_name)
        return self

    def add_plugin(self, module: Any, name: str, version: str = "?", distribution: str = "?") -> None:
        """Register one plugin object (module or instance) and run its hooks."""
        wanted = getattr(module, "ZOO_API", API_VERSION)
        if not isinstance(wanted, int) or isinstance(wanted, bool):
            self._fail(name, f"ZOO_API = {wanted!r} is not an integer (this zoo provides plugin API "
                             f"{API_VERSION}: set ZOO_API = {API_VERSION})")
            return
        if wanted != API_VERSION:
            self._fail(name, f"needs zoo plugin API {wanted}, this zoo provides {API_VERSION} "
                             f"(upgrade {'zoo' if wanted > API_VERSION else 'the plugin'})")
            return
        try:
            self.pm.register(module, name=name)
        except Exception as e:  # noqa: BLE001 - pluggy validation errors
            self._fail(name, f"invalid plugin: {e}")
            return
        self.plugins.append(PluginInfo(name, getattr(module, "__name__", repr(module)), version, distribution))
        for unknown in _unknown_hooks(module):
            close = difflib.get_close_matches(unknown, _HOOK_NAMES, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the hooks are {', '.join(_HOOK_NAMES)}"
            self._fail(name, f"{unknown}() is not a zoo hook, so it is never called ({hint})")
        for hook, register in (("zoo_register_models", self._model_registrar(name)),
                               ("zoo_register_datasets", self._dataset_registrar(name)),
                               ("zoo_register_extractors", self._extractor_registrar(name))):
            for impl in getattr(self.pm.hook, hook).get_hookimpls():
                if impl.plugin_name != name:
                    continue
                try:
                    impl.function(register=register)
                except Exception as e:  # noqa: BLE001 - isolate the broken plugin
                    self._fail(name, f"{hook} raised {type(e).__name__}: {e}", traceback.format_exc())

    def _fail(self, plugin: str, error: str, detail: str = "") -> None:
        self.failures.append(Failure(plugin, error, detail))

    # --- registrars handed to hooks -----------------------------------------------------
    def _model_registrar(self, plugin: str):
        def register(cls, name: str | None = None, config: dict | None = None, description: str | None = None):
            problem = _contract_problem(cls)
            name = name or getattr(cls, "name", None) or getattr(cls, "__name__", "?").lower()
            if problem:
                self._fail(plugin, f"model '{name}' breaks the contract: {problem}")
                return
            if name in self.models:
                self._fail(plugin, f"model name '{name}' is already registered by plugin '{self.models[name].plugin}'")
                return
            self.models[name] = ModelEntry(name, cls, plugin, cls.family,
                                           description or cls.description or (cls.__doc__ or "").strip().split("\n")[0],
                                           _plain(config))
        return register

    def _dataset_registrar(self, plugin: str):
        def register(name: str, loader: Callable, channels: int, image_size: int, description: str = "",
                     splits=("train", "test")):
            if name in self.datasets:
                self._fail(plugin, f"dataset name '{name}' is already registered by plugin '{self.datasets[name].plugin}'")
                return
            if not callable(loader):
                self._fail(plugin, f"dataset '{name}': loader is not callable")
                return
            self.datasets[name] = DatasetEntry(name, loader, plugin, int(channels), int(image_size), description,
                                               tuple(splits))
        return register

    def _extractor_registrar(self, plugin: str):
        def register(name: str, factory: Callable, description: str = ""):
            if name in self.extractors:
                self._fail(plugin, f"extractor name '{name}' is already registered by plugin "
                                   f"'{self.extractors[name].plugin}'")
                return
            self.extractors[name] = ExtractorEntry(name, factory, plugin, description)
        return register

    # --- lookup -------------------------------------------------------------------------
    def model(self, name: str) -> ModelEntry:
        if name not in self.models:
            broken = [f.plugin for f in self.failures]
            hint = f"; plugins that failed to load: {', '.join(sorted(set(broken)))}" if broken else ""
            raise ZooError(f"unknown model '{name}'{did_you_mean(name, self.models)}"
                           f" -- `zoo list` shows the {len(self.models)} available{hint}")
        return self.models[name]

    def dataset(self, name: str) -> DatasetEntry:
        if name not in self.datasets:
            raise ZooError(f"unknown dataset '{name}'{did_you_mean(name, self.datasets)}"
                           f" (known: {', '.join(sorted(self.datasets))}; set data.name)")
        return self.datasets[name]

    def extractor(self, name: str) -> ExtractorEntry:
        if name not in self.extractors:
            raise ZooError(f"unknown feature extractor '{name}'{did_you_mean(name, self.extractors)}"
                           f" (known: {', '.join(sorted(self.extractors))})")
        return self.extractors[name]


def _contract_problem(cls) -> str | None:
    if not (inspect.isclass(cls) and issubclass(cls, ZooModel)):
        return f"{cls!r} is not a subclass of zoo.ZooModel"
    for method in ("training_loss", "sample"):
        if getattr(cls, method) is getattr(ZooModel, method):
            return f"{cls.__name__} does not implement {method}()"
    if not isinstance(cls.config, dict) or not isinstance(cls.presets, dict):
        return f"{cls.__name__}.config and .presets must be dicts"
    return None


_HOOK_NAMES = tuple(sorted(n for n in dir(hookspecs) if getattr(getattr(hookspecs, n), "zoo_spec", None)))


def _unknown_hooks(module: Any) -> list[str]:
    """Names of ``@hookimpl`` functions of ``module`` that match no hook (typos such as
    ``zoo_register_model``); pluggy accepts them silently and never calls them."""
    names = []
    for attr in dir(module):
        try:
            opts = getattr(getattr(module, attr), "zoo_impl", None)
        except Exception:  # noqa: BLE001 - odd attributes are not hooks
            continue
        if isinstance(opts, dict) and (opts.get("specname") or attr) not in _HOOK_NAMES:
            names.append(opts.get("specname") or attr)
    return names


def _env_list(var: str) -> list[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return [s.strip() for s in raw.split(",") if s.strip()]


_REGISTRY: Registry | None = None


def registry(reload: bool = False) -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        _REGISTRY = Registry().load_entry_points()
    return _REGISTRY


def list_models() -> list[str]:
    return sorted(registry().models)


def model_config(name: str, preset: str | None = None, file=None, sets=(), overrides=None):
    """The resolved config for model ``name`` (see ``zoo.config.resolve``)."""
    from .config import resolve
    entry = registry().model(name)
    preset_cfg = None
    if preset is not None:
        if preset not in entry.presets:
            raise ZooError(f"model '{name}' has no preset '{preset}'{did_you_mean(preset, entry.presets)}"
                           f" (presets: {', '.join(entry.presets) or 'none'})")
        preset_cfg = entry.presets[preset]
    cfg = resolve(entry.defaults(), preset_cfg, file, sets, preset_name=preset or "", overrides=overrides)
    cfg["model_name"] = name
    return cfg


def create_model(name: str, cfg=None, **sets):
    """Build model ``name`` (timm-style): ``create_model("vae", **{"model.latent": 8})``.
    ``cfg`` is a resolved config; keyword arguments are ``--set`` style overrides."""
    if cfg is None:
        cfg = model_config(name, sets=[f"{k}={v}" for k, v in sets.items()])
    complete_data_config(cfg)
    entry = registry().model(cfg.get("model_name", name))
    return entry.cls(cfg)


def complete_data_config(cfg) -> None:
    """Fill ``data.channels`` from the dataset when it is not set."""
    if cfg.data.get("channels") is None:
        cfg.data["channels"] = registry().dataset(cfg.data.name).channels

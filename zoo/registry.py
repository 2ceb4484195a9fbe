"""Plugin discovery and the registry of models, datasets, feature extractors and metrics.

Every plugin -- the built-ins under ``plugins/`` included -- is a module named
by an entry point in the ``zoo.plugins`` group. ``ZOO_PLUGINS=a,b`` loads only
those entry points; ``ZOO_DISABLE_PLUGINS=c`` skips some. A plugin that fails to
import, raises in a hook, registers a taken name or breaks the contract is
recorded in ``registry().failures`` (shown by ``zoo plugins``) and never hides
the others; ``ZOO_STRICT_PLUGINS=1`` turns any such failure into an error.

Hooks are called through pluggy's own machinery (``pm.hook.zoo_register_models``),
so ``tryfirst``/``trylast``, wrappers and implementations that leave out the
``register`` argument behave as pluggy documents. Isolation comes from registering
each plugin as a proxy whose hook functions are guarded: an exception is recorded
against its plugin and the call goes on with the next implementation.

This module imports no torch (``zoo list`` reads a cached listing without it).
"""
from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.metadata as md
import inspect
import os
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import pluggy

from . import hookspecs
from .env import env_flag
from .errors import ZooError, did_you_mean
from .hookspecs import API_VERSION, HOOKS

if TYPE_CHECKING:  # pragma: no cover
    from .contract import ZooModel

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
        return merge(_plain(self.cls.config), _plain(self.config), strict=False,
                     source=f"the config registered for model '{self.name}'")

    @property
    def presets(self) -> dict:
        return dict(self.cls.presets)

    @property
    def preset_help(self) -> dict:
        return dict(getattr(self.cls, "preset_help", None) or {})


@dataclass
class DatasetEntry:
    name: str
    loader: Callable
    plugin: str
    channels: int
    image_size: int
    description: str = ""
    splits: tuple = ("train", "test")
    extractor: str | None = None  # the feature extractor made for this data (zoo eval warns on another)
    num_classes: int | None = None  # classes of its labels, when known without reading it (mnist: 10)


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
    detail: str = ""          # the traceback, where there is one (`zoo plugins -v`)
    distribution: str = ""    # the plugin's distribution: two distributions may use one entry-point name


class PluginError(ZooError):
    """A plugin failed while ``ZOO_STRICT_PLUGINS=1``; ``detail`` holds the stored tracebacks."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


def _plain(d) -> dict:
    import copy
    return copy.deepcopy(dict(d or {}))


class _Proxy:
    """What zoo registers with pluggy for one plugin: its hook functions, each guarded."""

    def __init__(self, plugin: Any, name: str):
        self.plugin, self.__name__ = plugin, name

    def __repr__(self) -> str:
        return f"<zoo plugin {self.__name__}: {self.plugin!r}>"


class Registry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("zoo")
        self.pm.add_hookspecs(hookspecs)
        self.models: dict[str, ModelEntry] = {}
        self.datasets: dict[str, DatasetEntry] = {}
        self.extractors: dict[str, ExtractorEntry] = {}
        self.metrics: dict = {}                # name -> zoo.metrics.Metric, in registration order
        self.plugins: list[PluginInfo] = []    # registered with pluggy (their hooks ran)
        self.attempted: list[PluginInfo] = []  # every plugin zoo tried to load, in load order
        self.failures: list[Failure] = []
        self._current: str | None = None       # the plugin whose hook code is running now

    # --- loading --------------------------------------------------------------------
    def load_entry_points(self, only=None, skip=None) -> "Registry":
        """Load the ``zoo.plugins`` entry points (``only``/``skip``: entry-point names; default from
        ``ZOO_PLUGINS`` / ``ZOO_DISABLE_PLUGINS``) and call every hook once, through pluggy."""
        only = _env_list("ZOO_PLUGINS") if only is None else list(only)
        skip = set(_env_list("ZOO_DISABLE_PLUGINS") or [] if skip is None else skip)
        seen: dict[str, str] = {}  # entry-point name -> the distribution that provides it
        loaded = []
        for ep in sorted(md.entry_points(group=GROUP), key=_load_order):
            if (only is not None and ep.name not in only) or ep.name in skip:
                continue
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "?"
            version = dist.version if dist is not None else "?"
            if ep.name in seen:  # the same distribution found twice on sys.path is no conflict
                if dist_name != seen[ep.name]:
                    self.attempted.append(PluginInfo(ep.name, ep.value, version, dist_name))
                    self._fail(ep.name, f"the plugin name '{ep.name}' of {dist_name} ({ep.value}) is taken by "
                                        f"{seen[ep.name]}: rename the entry point in {dist_name}",
                               distribution=dist_name)
                continue
            seen[ep.name] = dist_name
            self.attempted.append(PluginInfo(ep.name, ep.value, version, dist_name))
            try:
                module = ep.load()
            except Exception as e:  # noqa: BLE001 - any import error is the plugin's
                self._fail(ep.name, f"failed to import {ep.value}: {type(e).__name__}: {e}", traceback.format_exc(),
                           distribution=dist_name)
                continue
            loaded.append((module, ep.name, version, dist_name))
        self._add(loaded)  # zoo's own first, then the others by name: the first to register a name keeps it
        return self

    def add_plugin(self, module: Any, name: str, version: str = "?", distribution: str = "?") -> None:
        """Register one plugin object (module or instance) and run its hooks (only its own)."""
        self.add_plugins([(module, name)], version=version, distribution=distribution)

    def add_plugins(self, plugins, version: str = "?", distribution: str = "?") -> None:
        """Register plugin objects ``[(module_or_instance, name), ...]`` and call each hook once for them
        together (so ``tryfirst``/``trylast`` order them; listed order otherwise), not for earlier ones."""
        plugins = [(module, name, version, distribution) for module, name in plugins]
        for module, name, _, _ in plugins:
            self.attempted.append(PluginInfo(name, getattr(module, "__name__", repr(module)), version, distribution))
        self._add(plugins)

    def _add(self, plugins: list[tuple[Any, str, str, str]]) -> None:
        """Register ``(module, name, version, distribution)`` plugins and call each hook once for them
        (not for plugins registered before), in the listed order unless tryfirst/trylast say otherwise."""
        before = list(self.pm.get_plugins())
        added = len(self.plugins)
        for module, name, version, distribution in reversed(plugins):  # pluggy calls the last registered first
            self._register(module, name, version, distribution)
        self.plugins[added:] = self.plugins[added:][::-1]
        if len(self.plugins) > added:
            self._call_hooks(remove=before)

    def _register(self, module: Any, name: str, version: str, distribution: str) -> _Proxy | None:
        """Check the plugin's API version and hooks and register its guarded proxy with pluggy."""
        wanted = getattr(module, "ZOO_API", API_VERSION)
        if not isinstance(wanted, int) or isinstance(wanted, bool):
            self._fail(name, f"ZOO_API = {wanted!r} is not an integer (this zoo provides plugin API "
                             f"{API_VERSION}: set ZOO_API = {API_VERSION})", distribution=distribution)
            return None
        if wanted != API_VERSION:
            self._fail(name, f"needs zoo plugin API {wanted}, this zoo provides {API_VERSION} "
                             f"(upgrade {'zoo' if wanted > API_VERSION else 'the plugin'})", distribution=distribution)
            return None
        proxy = _Proxy(module, name)
        for attr, opts in _hook_functions(self.pm, module):
            hook = opts.get("specname") or attr
            if hook not in HOOKS:
                close = difflib.get_close_matches(hook, HOOKS, n=1)
                hint = f"did you mean {close[0]}?" if close else f"the hooks are {', '.join(HOOKS)}"
                self._fail(name, f"{hook}() is not a zoo hook, so it is never called ({hint})",
                           distribution=distribution)
                continue
            setattr(proxy, attr, self._guard(name, hook, getattr(module, attr), opts))
        try:
            self.pm.register(proxy, name=name)
        except Exception as e:  # noqa: BLE001 - pluggy's validation (a bad argument name, a wrapper that is
            # not a generator, a name registered twice)
            self._fail(name, f"invalid plugin: {' '.join(str(e).split())}", distribution=distribution)
            return None
        self.plugins.append(PluginInfo(name, getattr(module, "__name__", repr(module)), version, distribution))
        return proxy

    def _call_hooks(self, remove=()) -> None:
        """Call each hook through pluggy (all plugins but ``remove``), handing it the registrar."""
        for hook, register in (("zoo_register_models", self._register_model),
                               ("zoo_register_datasets", self._register_dataset),
                               ("zoo_register_extractors", self._register_extractor),
                               ("zoo_register_metrics", self._register_metric)):
            caller = self.pm.subset_hook_caller(hook, remove) if remove else getattr(self.pm.hook, hook)
            caller(register=register)

    def _guard(self, plugin: str, hook: str, fn: Callable, opts: dict) -> Callable:
        """``fn`` with the same signature (pluggy reads the argument names through ``__wrapped__``), run as
        ``plugin``; an exception is recorded against the plugin instead of stopping the hook call."""
        if (opts.get("wrapper") or opts.get("hookwrapper")) and inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def guarded(*args):
                try:
                    with self._running(plugin):
                        gen = fn(*args)
                        sent = next(gen)
                except StopIteration:
                    self._fail(plugin, f"{hook} wrapper returned without yielding")
                    return (yield)
                except Exception as e:  # noqa: BLE001 - a failed wrapper steps aside; the others still run
                    self._hook_failed(plugin, hook, e)
                    return (yield)
                result = yield sent
                try:
                    with self._running(plugin):
                        gen.send(result)
                except StopIteration as stop:
                    return stop.value
                except Exception as e:  # noqa: BLE001
                    self._hook_failed(plugin, hook, e)
                    return result
                gen.close()
                self._fail(plugin, f"{hook} wrapper yielded more than once")
                return result
        else:
            @functools.wraps(fn)
            def guarded(*args):
                try:
                    with self._running(plugin):
                        return fn(*args)
                except Exception as e:  # noqa: BLE001 - isolate the broken plugin
                    self._hook_failed(plugin, hook, e)
                    return None
        return hookspecs.hookimpl(**opts)(guarded)  # marked as the plugin's function was

    @contextlib.contextmanager
    def _running(self, plugin: str):
        before, self._current = self._current, plugin
        try:
            yield
        finally:
            self._current = before

    def _hook_failed(self, plugin: str, hook: str, e: Exception) -> None:
        tb = e.__traceback__.tb_next or e.__traceback__  # from the plugin's own frame on, not the guard's
        self._fail(plugin, f"{hook} raised {type(e).__name__}: {e}",
                   "".join(traceback.format_exception(type(e), e, tb)))

    def _fail(self, plugin: str, error: str, detail: str = "", distribution: str | None = None) -> None:
        if distribution is None:
            distribution = next((p.distribution for p in reversed(self.attempted) if p.name == plugin), "")
        self.failures.append(Failure(plugin, error, detail, distribution))

    # --- the registrars handed to the hooks (signatures: zoo.hookspecs.Register*) -----------------
    def _register_model(self, cls: type[ZooModel], name: str | None = None, config: dict | None = None,
                        description: str | None = None) -> None:
        plugin = self._current or "?"
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

    def _register_dataset(self, name: str, loader: Callable, channels: int, image_size: int, description: str = "",
                          splits: tuple[str, ...] = ("train", "test"), extractor: str | None = None,
                          num_classes: int | None = None) -> None:
        plugin = self._current or "?"
        if name in self.datasets:
            self._fail(plugin, f"dataset name '{name}' is already registered by plugin '{self.datasets[name].plugin}'")
            return
        if not callable(loader):
            self._fail(plugin, f"dataset '{name}': loader is not callable")
            return
        if extractor is not None and not isinstance(extractor, str):
            self._fail(plugin, f"dataset '{name}': extractor must be the name of a feature extractor, "
                               f"got {extractor!r}")
            return
        self.datasets[name] = DatasetEntry(name, loader, plugin, int(channels), int(image_size), description,
                                           tuple(splits), extractor, int(num_classes) if num_classes else None)

    def _register_extractor(self, name: str, factory: Callable, description: str = "") -> None:
        plugin = self._current or "?"
        if name in self.extractors:
            self._fail(plugin, f"extractor name '{name}' is already registered by plugin "
                               f"'{self.extractors[name].plugin}'")
            return
        self.extractors[name] = ExtractorEntry(name, factory, plugin, description)

    def _register_metric(self, name: str, compute: Callable, scores: tuple = (), needs: tuple = ("features",),
                         description: str = "", default: bool = False, table: Callable | None = None) -> None:
        from .scores import NEEDS, Metric, Score
        plugin = self._current or "?"
        taken = {s.key: m.name for m in self.metrics.values() for s in m.scores}
        problem = ("is already registered by plugin " + repr(self.metrics[name].plugin) if name in self.metrics else
                   "compute is not callable" if not callable(compute) else
                   "scores must be a non-empty tuple of zoo.metrics.Score" if not scores or
                   not all(isinstance(s, Score) for s in scores) else
                   f"needs {sorted(set(needs) - set(NEEDS))}, not among {', '.join(NEEDS)}" if set(needs) - set(NEEDS)
                   else next((f"result key '{s.key}' is already metric '{taken[s.key]}''s" for s in scores
                              if s.key in taken), None))
        if problem:
            self._fail(plugin, f"metric '{name}': {problem}")
            return
        self.metrics[name] = Metric(name, compute, tuple(scores), tuple(needs), description, bool(default), table,
                                    plugin)

    # --- lookup -------------------------------------------------------------------------
    def model(self, name: str) -> ModelEntry:
        if name not in self.models:
            raise unknown_model(name, self.models, [f.plugin for f in self.failures])
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

    # --- what `zoo plugins` shows -----------------------------------------------------------
    def report(self) -> list[dict]:
        """One entry per plugin zoo tried to load, each once: name, distribution, version, module,
        ``status`` (``ok`` or ``failed``), what it adds, and its failures (error and traceback)."""
        out, matched = [], set()
        for p in self.attempted:
            fails = [i for i, f in enumerate(self.failures)
                     if f.plugin == p.name and f.distribution in (p.distribution, "")]
            matched.update(fails)
            registered = any(q.name == p.name and q.distribution == p.distribution for q in self.plugins)
            adds = _adds(self, p.name) if registered else {"models": [], "datasets": [], "extractors": []}
            out.append({"name": p.name, "distribution": p.distribution, "version": p.version, "module": p.module,
                        "status": "failed" if fails else "ok", "adds": adds,
                        "failures": [{"error": self.failures[i].error, "traceback": self.failures[i].detail or None}
                                     for i in fails]})
        for i, f in enumerate(self.failures):  # failures of plugins zoo never tried by name (rare)
            if i not in matched:
                out.append({"name": f.plugin, "distribution": f.distribution or "?", "version": "?", "module": "?",
                            "status": "failed", "adds": {"models": [], "datasets": [], "extractors": []},
                            "failures": [{"error": f.error, "traceback": f.detail or None}]})
        return out


def unknown_model(name: str, known, broken=()) -> ZooError:
    hint = f"; plugins that failed to load: {', '.join(sorted(set(broken)))}" if broken else ""
    return ZooError(f"unknown model '{name}'{did_you_mean(name, known)} -- `zoo list` shows the {len(known)} "
                    f"available{hint}")


def _adds(reg: Registry, plugin: str) -> dict:
    adds = {"models": sorted(m.name for m in reg.models.values() if m.plugin == plugin),
            "datasets": sorted(d.name for d in reg.datasets.values() if d.plugin == plugin),
            "extractors": sorted(x.name for x in reg.extractors.values() if x.plugin == plugin)}
    metrics = [m.name for m in reg.metrics.values() if m.plugin == plugin]
    return {**adds, "metrics": metrics} if metrics else adds


def _load_order(ep) -> tuple:
    """zoo's own plugins first, then the others by entry-point name."""
    dist = getattr(ep, "dist", None)
    return (dist is None or dist.metadata["Name"] != "zoo", ep.name)


def _contract_problem(cls) -> str | None:
    from .contract import ZooModel
    if not (inspect.isclass(cls) and issubclass(cls, ZooModel)):
        return f"{cls!r} is not a subclass of zoo.ZooModel"
    for method in ("training_loss", "sample"):
        if getattr(cls, method) is getattr(ZooModel, method):
            return f"{cls.__name__} does not implement {method}()"
    if not isinstance(cls.config, dict) or not isinstance(cls.presets, dict):
        return f"{cls.__name__}.config and .presets must be dicts"
    return None


def _hook_functions(pm: pluggy.PluginManager, module: Any) -> list[tuple[str, dict]]:
    """``(attribute, hookimpl options)`` for every ``@hookimpl`` function of ``module`` -- typos such as
    ``zoo_register_model`` included (pluggy would accept those silently and never call them). The options are
    what pluggy itself reads when registering (``parse_hookimpl_opts``)."""
    found = []
    for attr in dir(module):
        try:
            opts = pm.parse_hookimpl_opts(module, attr)
        except Exception:  # noqa: BLE001 - odd attributes are not hooks
            continue
        if opts is not None:
            found.append((attr, dict(opts)))
    return found


def _env_list(var: str) -> list[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return [s.strip() for s in raw.split(",") if s.strip()]


def strict() -> bool:
    """``ZOO_STRICT_PLUGINS=1``: a plugin failure is an error, with its traceback."""
    return env_flag("ZOO_STRICT_PLUGINS")


def check_strict(reg: Registry) -> None:
    """Raise :class:`PluginError` when plugins failed and ``ZOO_STRICT_PLUGINS=1``."""
    if not (reg.failures and strict()):
        return
    first = reg.failures[0]
    more = f" (and {len(reg.failures) - 1} more: `zoo plugins` lists them)" if len(reg.failures) > 1 else ""
    detail = "\n".join(f"plugin '{f.plugin}': {f.error}\n{f.detail}".rstrip() for f in reg.failures)
    raise PluginError(f"plugin '{first.plugin}' failed: {first.error}{more} "
                      f"[ZOO_STRICT_PLUGINS=1 makes this an error]", detail)


_REGISTRY: Registry | None = None


def registry(reload: bool = False, *, check: bool = True) -> Registry:
    """The process-wide registry, loaded from entry points on first use. With ``ZOO_STRICT_PLUGINS=1`` a
    plugin failure raises :class:`PluginError` (``check=False``: never; ``zoo plugins`` lists them)."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        _REGISTRY = Registry().load_entry_points()
    if check:
        check_strict(_REGISTRY)
    return _REGISTRY


def loaded() -> bool:
    """Whether this process has loaded the registry already (then using it costs nothing)."""
    return _REGISTRY is not None


def use_registry(reg: Registry | None) -> Registry | None:
    """Make ``reg`` the process-wide registry (``None``: load from entry points on next use); returns
    the previous one. ``zoo.testing.registry_with`` uses it to give a test a registry of its own."""
    global _REGISTRY
    before, _REGISTRY = _REGISTRY, reg
    return before


def list_models() -> list[str]:
    return sorted(registry().models)


def declared(name: str):
    """Model ``name``'s declarations (``defaults()``, ``presets``): the registry's entry when this process
    loaded it; else the `zoo list` index's copy when the index is current -- no plugin is imported, nor
    torch, so a bad model name, preset, file or value costs nothing; else the registry's, and the index is
    rebuilt on the way (the plugins are loaded then anyway)."""
    if _REGISTRY is None and not strict():
        from . import catalog
        snap = catalog.current()
        models = catalog.cached_models(snap) if snap is not None else None
        if models is not None and name not in models:
            raise unknown_model(name, models)
        if models is not None and models[name] is not None:
            return models[name]
        if snap is None:
            catalog.listing()
    return registry().model(name)


def model_config(name: str, preset: str | None = None, file=None, sets=(), overrides=None, sources=None):
    """The resolved config for model ``name``: base < model defaults < user file < preset < ``file`` <
    ``overrides`` < ``sets`` (see ``zoo.config.resolve``; ``sources``, a dict, gets each value's layer).

    With no ``preset``, a model's preset named ``cpu`` or ``gpu`` is applied when it fits the device the
    run will use (``trainer.device`` after every other layer). The config records the choice in
    ``preset`` and ``preset_reason``."""
    try:
        return _model_config(name, preset, dict(file=file, sets=sets, overrides=overrides), sources)
    except ZooError as e:  # model.conditional where the model does not declare it: it cannot be conditional
        if "unknown config key 'model.conditional'" in str(e):
            raise cannot_condition(name) from None
        raise


def _model_config(name: str, preset: str | None, given: dict, sources):
    from .config import resolve, user_layers
    entry = declared(name)
    if preset is not None and preset not in entry.presets:
        raise ZooError(f"model '{name}' has no preset '{preset}'{did_you_mean(preset, entry.presets)}"
                       f" (presets: {', '.join(entry.presets) or 'none'})")
    layers = dict(**given, user=user_layers(name), model_label=f"model '{name}' defaults")
    reason = "--preset"
    if preset is None:
        preset, reason = device_preset(entry.presets, resolve(entry.defaults(), **layers).trainer.device)
    cfg = resolve(entry.defaults(), entry.presets[preset] if preset else None, preset_name=preset or "",
                  sources=sources, **layers)
    cfg.update(model_name=name, preset=preset, preset_reason=reason)
    if sources is not None:
        sources.update({key: "zoo" for key in ("model_name", "preset", "preset_reason")})
    return cfg


def model_schema(name: str) -> dict:
    """Every key of model ``name``'s config as a declaration: zoo's ``BASE`` with the model's ``model.*``
    keys (``zoo show-config --explain``, docs/config.md)."""
    from .config import BASE
    return {**BASE, "model": declared(name).defaults().get("model", {})}


def check_config(cfg) -> None:
    """Check a resolved config the way training does before it touches data: build the model on the
    ``meta`` device (no memory, no compute), so a setting the model rejects is a ZooError here too."""
    import copy

    import torch
    cfg = copy.deepcopy(cfg)
    complete_data_config(cfg)
    with torch.device("meta"):
        registry().model(cfg.model_name).cls(cfg)


def device_preset(presets, device: str) -> tuple[str | None, str]:
    """``(preset, reason)`` with no ``--preset``: ``gpu`` when the run will train on CUDA (``trainer.device``
    ``cuda``/``cuda:N``, or ``auto`` with CUDA available), ``cpu`` otherwise -- when the model has it."""
    if not {"cpu", "gpu"} & set(presets):
        return None, "defaults (no --preset)"
    device = str(device)
    if device == "auto":
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = "cuda" if device.startswith("cuda") else "cpu"
    wanted = "gpu" if kind == "cuda" else "cpu"
    if wanted in presets:
        return wanted, f"auto: training on {kind}"
    return None, f"auto: training on {kind}, no '{wanted}' preset"


def create_model(name: str, cfg=None, *, preset: str | None = None, **sets) -> ZooModel:
    """Build model ``name`` (timm-style): ``create_model("vae", **{"model.latent": 8})``,
    ``create_model("ddpm", preset="cpu")``. ``cfg`` is a resolved config; ``preset`` one of the model's
    presets (default: chosen by device, as ``zoo train`` does); keyword arguments are ``--set`` style overrides."""
    if cfg is None:
        cfg = model_config(name, preset=preset, sets=[f"{k}={v}" for k, v in sets.items()])
    complete_data_config(cfg)
    entry = registry().model(cfg.get("model_name", name))
    return entry.cls(cfg)


_READ = object()


def complete_data_config(cfg, labels=_READ) -> None:
    """Fill ``data.channels`` from the dataset when it is not set. For a conditional run
    (``model.conditional: true``): check that the model can be conditional, and fill ``data.num_classes``
    when it is not set (:func:`zoo.data.dataset_classes`: the count the dataset declares, else its largest
    label plus one) -- a one-line error when the dataset has no labels. ``labels``: the split's labels when
    the caller has read them (None: it has none), so that they are not read twice."""
    if cfg.data.get("channels") is None:
        cfg.data["channels"] = registry().dataset(cfg.data.name).channels
    if not (cfg.get("model") or {}).get("conditional"):
        return
    name = cfg.get("model_name")
    if not getattr(registry().model(name).cls, "can_condition", False):
        raise cannot_condition(name)
    if cfg.data.get("num_classes") is None:
        from .data import dataset_classes, read_split
        if labels is _READ:  # read only where the dataset does not declare its count
            labels = None if registry().dataset(cfg.data.name).num_classes else read_split(cfg.data)[1]
        k = dataset_classes(cfg.data, labels)
        if k is None:
            raise unlabelled(cfg.data)
        cfg.data["num_classes"] = k


def unlabelled(data) -> ZooError:
    """A conditional run on a dataset without labels."""
    where = f" in '{data.get('root')}'" if data.get("root") else ""
    if data.name == "folder":
        fix = "put the images in one subfolder per class (data.root/<split>/<class>/*.png)"
    elif registry().dataset(data.name).num_classes:
        fix = "its label files were not found next to the images: put them there"
    else:
        fix = "use a dataset with labels (mnist, fashion-mnist, cifar10, or a folder with one subfolder per class)"
    return ZooError(f"model.conditional=true needs class labels, and dataset '{data.name}'{where} (split "
                    f"{data.get('split', 'train')}) has none: {fix}, or drop model.conditional")


def conditional_models() -> list[str]:
    """The models that can be conditional (``can_condition``): from the `zoo list` index when it is current
    (no plugin imported), else from the registry."""
    if _REGISTRY is None and not strict():
        from . import catalog
        snap = catalog.current()
        if snap is not None and not snap["failures"]:
            return sorted(m["name"] for m in snap["models"] if m.get("can_condition"))
    return sorted(n for n, e in registry().models.items() if getattr(e.cls, "can_condition", False))


def cannot_condition(name: str) -> ZooError:
    """``model.conditional: true`` for a model without ``can_condition``."""
    can = conditional_models()
    return ZooError(f"model '{name}' cannot be conditional (model.conditional=true): models that can: "
                    f"{', '.join(can) if can else 'none installed'} (`zoo list` marks them)")

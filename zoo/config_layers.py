"""Config layers and merging: where each value of a run's config comes from.

Layers, later wins (:func:`resolve`)::

    base defaults < model defaults < user file < preset < -c file < overrides < --set

:func:`merge` lays one layer over another, checking every value against its declaration
(:mod:`zoo.config_keys`); :class:`Config` is the result, a dict with attribute access. The layers are read
here too: ``--set`` and ``--option`` arguments (:func:`parse_set`, :func:`parse_options`), YAML files
(:func:`load_yaml`) and the user file (:func:`user_layers`): ``$ZOO_CONFIG``, else
``${XDG_CONFIG_HOME:-~/.config}/zoo/config.yaml``, settings for this machine (``data.split``,
``data.holdout``, ``data.root``, ``trainer.device`` ...), written once. Its ``model.*`` settings go under
``models: {NAME: {...}}`` because they differ per model.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .config_keys import BASE, RECORDED, Key, check_declarations, defaults, key_of, leaves, read_number
from .errors import ZooError, did_you_mean

_MISSING = object()


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
            value = read_number(value)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ZooError(f"--set '{item}' conflicts with another --set for '{part}'")
        node[parts[-1]] = value
    return out


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
        out[key] = read_number(value) if isinstance(value, str) else value
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

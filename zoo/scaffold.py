"""``zoo plugins new NAME``: write a ready, installable model plugin package.

The package comes from the templates in ``zoo/templates/plugin/``: files end in
``.tmpl`` (so nothing there is imported or collected by pytest as part of zoo),
the folder ``__package__`` becomes the import package and ``gitignore`` becomes
``.gitignore``. Placeholders are ``{{key}}`` with the keys of :func:`names`.

For ``NAME = my-vae`` the result is::

    zoo-my-vae/
      pyproject.toml        distribution zoo-my-vae, entry point my-vae = zoo_my_vae.model
      README.md
      zoo_my_vae/model.py   the model (a small working VAE) and its zoo_register_models hook
      tests/test_model.py   zoo's reusable contract checks (zoo.testing)

``pip install -e zoo-my-vae`` makes ``zoo list`` show ``my-vae``.
"""
from __future__ import annotations

import importlib.resources
import importlib.util
import re
from pathlib import Path

from .errors import ZooError

NAME_RE = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
MAX_NAME = 40
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def check_name(name: str) -> None:
    """Raise a one-line :class:`ZooError` unless ``name`` makes a good model, entry-point and package name."""
    if not NAME_RE.fullmatch(name or "") or len(name) > MAX_NAME:
        raise ZooError(f"plugin name '{name}' is not valid: use lower-case letters and digits, words joined by "
                       f"'-', starting with a letter, at most {MAX_NAME} characters (e.g. my-vae)")
    if re.match(r"zoo[-_]", name):
        raise ZooError(f"plugin name '{name}': name the model, not the package -- "
                       f"`zoo plugins new {name[4:]}` writes the package zoo-{name[4:]}")


def names(name: str) -> dict[str, str]:
    """The names derived from NAME (``my-vae``): model/entry point ``my-vae``, distribution
    ``zoo-my-vae``, import package ``zoo_my_vae``, model class ``MyVae``."""
    from . import __version__
    words = re.split(r"[-_]", name)
    release = re.match(r"\d+\.\d+", __version__)
    return {
        "name": name,
        "dist": "zoo-" + "-".join(words),
        "package": "zoo_" + "_".join(words),
        "cls": "".join(w.capitalize() for w in words),
        "ident": "_".join(words),
        "zoo_requirement": f"zoo>={release.group(0)}" if release and __version__ != "0.0.0+src" else "zoo",
    }


def render(text: str, values: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(1) not in values:
            raise KeyError(f"template placeholder {m.group(0)} has no value")
        return values[m.group(1)]
    return PLACEHOLDER.sub(sub, text)


def template_files():
    """``(relative path parts, text)`` for every file of the plugin template."""
    root = importlib.resources.files("zoo") / "templates" / "plugin"

    def walk(node, parts):
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                if child.name != "__pycache__":
                    yield from walk(child, parts + (child.name,))
            elif child.name.endswith(".tmpl"):
                yield parts + (child.name[:-len(".tmpl")],), child.read_text(encoding="utf-8")
    yield from walk(root, ())


def new_plugin(name: str, directory: str | Path | None = None, *, check_registry: bool = True) -> Path:
    """Write the plugin package for model ``name`` into ``directory`` (default ``./zoo-NAME``);
    returns the directory. Refuses bad names, names zoo already knows and non-empty targets."""
    check_name(name)
    values = names(name)
    if check_registry:
        from .registry import registry
        reg = registry()
        if name in reg.models:
            raise ZooError(f"model name '{name}' is already registered by plugin '{reg.models[name].plugin}' "
                           f"(`zoo list` shows the taken names): pick another name")
        taken = {p.name: p.distribution for p in reg.plugins} | {f.plugin: "a plugin that failed to load"
                                                                  for f in reg.failures}
        if name in taken:
            raise ZooError(f"plugin name '{name}' is already used by {taken[name]} (`zoo plugins` shows the taken "
                           f"names): pick another name")
    if importlib.util.find_spec(values["package"]) is not None:
        raise ZooError(f"import name '{values['package']}' is already taken by an installed package: "
                       f"pick another plugin name")
    target = Path(directory) if directory is not None else Path.cwd() / values["dist"]
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ZooError(f"target '{target}' already exists and is not an empty directory: "
                       f"pass another --dir, or remove it first")
    files = []
    for parts, text in template_files():
        parts = tuple(values["package"] if p == "__package__" else "." + p if p == "gitignore" else p
                      for p in parts)
        files.append((target.joinpath(*parts), render(text, values)))
    for path, text in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target

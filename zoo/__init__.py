"""zoo: a plugin-based generative model zoo in PyTorch.

Python API (the CLI is a thin layer over it)::

    import zoo
    zoo.list_models()
    run = zoo.train("vae", preset="tiny", out="runs/vae")
    model = zoo.load_run("runs/vae")          # ready to sample (EMA weights if any)
    model = zoo.load("exports/vae")           # a run, a `zoo export` folder or hf://ORG/NAME[@REV]
    images = model.sample(16, torch.Generator().manual_seed(0))
    digits = zoo.load_dataset("mnist", "test")  # uint8 (N, C, H, W)

``import zoo`` is light: it does not import torch. The names below are loaded on
first use (``from zoo import ZooModel`` imports torch then), so ``zoo --help``
and a cached ``zoo list`` stay fast.
"""
from __future__ import annotations

import importlib

from .errors import ZooError

# name -> the module that defines it, imported on first access (PEP 562)
_LAZY = {
    "API_VERSION": "hookspecs",
    "hookimpl": "hookspecs",
    "Key": "config",
    "ZooModel": "contract",
    "list_models": "registry",
    "create_model": "registry",
    "model_config": "registry",
    "load_dataset": "data",
    "train": "api",
    "load_run": "api",
    "load": "sources",
}

__all__ = ["ZooError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name == "__version__":
        from importlib.metadata import PackageNotFoundError, version
        try:
            value = version("zoo")
        except PackageNotFoundError:  # running from a source tree
            value = "0.0.0+src"
    else:
        raise AttributeError(f"module 'zoo' has no attribute '{name}'")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

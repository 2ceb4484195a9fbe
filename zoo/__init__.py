"""zoo: a plugin-based generative model zoo in PyTorch.

Python API (the CLI is a thin layer over it)::

    import zoo
    zoo.list_models()
    run = zoo.train("vae", preset="tiny", out="runs/vae")
    model = zoo.load_run("runs/vae")          # ready to sample (EMA weights if any)
    images = model.sample(16, torch.Generator().manual_seed(0))
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from .config import Key
from .contract import API_VERSION, ZooModel
from .errors import ZooError
from .hookspecs import hookimpl

try:
    __version__ = _version("zoo")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+src"

__all__ = ["API_VERSION", "Key", "ZooModel", "ZooError", "hookimpl", "__version__", "list_models", "create_model",
           "model_config", "train", "load_run"]


def __getattr__(name):  # lazy: keep `import zoo` light for plugins
    if name in ("list_models", "create_model", "model_config"):
        from . import registry as _r
        return getattr(_r, name)
    if name in ("train", "load_run"):
        from . import api
        return getattr(api, name)
    raise AttributeError(name)

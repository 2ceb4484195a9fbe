"""One place that turns what a user names -- a run directory, an exported folder, or ``hf://ORG/NAME[@REV]`` --
into a config (checked before torch loads) or a model ready to sample.

An export (``zoo export``, :mod:`zoo.export`) is ``config.json`` + ``model.safetensors`` (+ a model card).
Loading one reads tensors only: the file's SHA-256 is checked against the one ``config.json`` records, the
tensors are read with safetensors (never ``torch.load``: nothing in the folder can execute), and their
names, shapes and dtypes are checked against the model built from ``config.json`` before any is copied in.
Each failure is one ``error:`` line naming the file and the fix.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from .errors import ZooError

FORMAT = "zoo-export-1"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
HF_PREFIX = "hf://"


def resolve(source) -> Path:
    """The local folder behind ``source``: the path itself, or the hub snapshot of ``hf://ORG/NAME[@REV]``
    (downloaded into, or found in, the Hugging Face cache). A missing folder is a one-line error."""
    text = str(source)
    if text.startswith(HF_PREFIX):
        return _hub_snapshot(text)
    path = Path(source)
    if not path.is_dir():
        from .errors import did_you_mean
        try:
            near = [p.name for p in path.parent.iterdir() if p.is_dir()]
        except OSError:
            near = []
        raise ZooError(f"run directory '{path}' does not exist{did_you_mean(path.name, near)} (give a run "
                       f"directory, a folder `zoo export` wrote, or hf://ORG/NAME)")
    return path


@functools.lru_cache(maxsize=16)
def _hub_snapshot(text: str) -> Path:  # one download per process, however many commands ask
    from .hub import snapshot
    return snapshot(text[len(HF_PREFIX):])


def is_export(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file() and not (Path(path) / "config.yaml").is_file()


def kind(source) -> str:
    """``run`` or ``export``; anything else is a one-line error."""
    path = resolve(source)
    if (path / "config.yaml").is_file():
        return "run"
    if (path / CONFIG).is_file():
        return "export"
    raise ZooError(f"'{source}' is not a zoo run directory (no config.yaml) nor an export (no {CONFIG}): "
                   f"give a run directory, a folder `zoo export` wrote, or hf://ORG/NAME")


def source_config(source, sets=()):
    """The config of a run or an export (``--set`` applied), read before torch: a wrong name costs nothing.
    An export whose model is not installed here is a one-line error naming the package to install."""
    from . import api
    if kind(source) == "run":
        return api.run_config(resolve(source), sets)
    from .config import Config, merge, parse_set
    from .registry import model_schema
    path = resolve(source)
    meta = read_meta(path)
    model_entry(meta, path)
    return Config(merge(export_config(path, meta), parse_set(sets), source="--set",
                        schema=model_schema(meta["model_name"])))


def export_config(path: Path, meta: dict):
    """An export's resolved config, checked against its model's declarations as a run's config.yaml is; keys
    zoo added since it was exported take their defaults (nothing it holds changes)."""
    from .config import BASE, Config, defaults, merge
    from .registry import model_schema
    return Config(merge(defaults(BASE), meta["config"], source=f"'{Path(path) / CONFIG}'", strict=False,
                        schema=model_schema(meta["model_name"])))


def load(source, *, ema: bool = True, checkpoint_name: str = "last.pt", device="cpu"):
    """The model of a run directory, an export or ``hf://ORG/NAME[@REV]``, ready to sample -- exactly the
    model the run gives (EMA weights where it has them, fitted buffers included).

    >>> model = zoo.load("hf://someone/zoo-ddpm-mnist")
    >>> images = model.sample(16, torch.Generator().manual_seed(0))   # (16, C, H, W) in [0, 1]
    """
    path = resolve(source)
    if kind(source) == "run":
        from . import api
        return api.load_run(path, ema=ema, checkpoint_name=checkpoint_name, device=device)
    if checkpoint_name != "last.pt" or not ema:
        raise ZooError(f"'{source}' is an export: it holds one set of weights (the ones `zoo export` chose), so "
                       f"--checkpoint and --no-ema do not apply")
    return load_export(path, device=device)


def load_export(path, device="cpu"):
    """Build the model from ``path/config.json`` and load ``path/model.safetensors`` into it, checked."""
    import torch  # noqa: F401 - the model needs it; safetensors' torch loader below too

    from .registry import complete_data_config
    path = Path(path)
    meta = read_meta(path)
    entry = model_entry(meta, path)
    tensors = read_weights(path, meta)
    cfg = export_config(path, meta)
    complete_data_config(cfg)
    model = entry.cls(cfg)
    check_tensors(model.state_dict(), tensors, path / WEIGHTS, meta["model_name"])
    model.load_state_dict(tensors)
    model.step = int(meta.get("step") or 0)
    return model.to(device).eval()


def read_meta(path: Path) -> dict:
    """``config.json`` of an export, parsed and checked (JSON only: nothing in it runs)."""
    file = Path(path) / CONFIG
    try:
        meta = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZooError(f"'{file}' is not a readable zoo export config ({type(e).__name__}): export the run again "
                       f"or download it again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ZooError(f"'{file}' is not a zoo export (no \"format\": \"{FORMAT}\")")
    for key in ("model_name", "config", "weights"):
        if key not in meta:
            raise ZooError(f"'{file}' lacks \"{key}\": export the run again")
    return meta


def model_entry(meta: dict, path: Path):
    """The registered model of an export; a model whose plugin is not installed is a one-line error that
    names the package (and the version that exported it) to install."""
    from .registry import registry
    reg, name = registry(), meta["model_name"]
    if name in reg.models:
        return reg.models[name]
    plugin = meta.get("plugin") or {}
    package, version = plugin.get("package"), plugin.get("version")
    if package:
        pin = f"=={version}" if version and version != "?" else ""
        raise ZooError(f"the export '{path}' needs model '{name}', provided by the package '{package}' "
                       f"(version {version}), which is not installed here: pip install '{package}{pin}'")
    return reg.model(name)  # unknown model, with a did-you-mean


def sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_weights(path: Path, meta: dict) -> dict:
    """The tensors of ``model.safetensors``, after its SHA-256 matched the recorded one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    file = Path(path) / WEIGHTS
    if not file.is_file():
        raise ZooError(f"export '{path}' has no {WEIGHTS}: export the run again or download it again")
    want = (meta.get("weights") or {}).get("sha256")
    if not want:
        raise ZooError(f"'{Path(path) / CONFIG}' records no SHA-256 of {WEIGHTS}: export the run again")
    got = sha256(file)
    if got != want:
        raise ZooError(f"'{file}' does not match the SHA-256 recorded in {CONFIG} ({got[:12]}... != "
                       f"{want[:12]}...): the file is truncated or was edited; export or download it again")
    try:
        return load_file(file, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ZooError(f"'{file}' is not a valid safetensors file ({str(e).splitlines()[0][:120]}); zoo reads "
                       f"tensors only, never pickles: export or download it again") from None


def check_tensors(expected: dict, got: dict, file: Path, name: str) -> None:
    """Names, shapes and dtypes of the file's tensors against the model's state dict: one line on a mismatch."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = [f"{k} {tuple(got[k].shape)} {got[k].dtype} (model: {tuple(v.shape)} {v.dtype})"
             for k, v in expected.items() if k in got and (got[k].shape != v.shape or got[k].dtype != v.dtype)]
    problems = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
        ([f"unexpected {', '.join(extra[:3])}"] if extra else []) + ([f"mismatched {'; '.join(wrong[:2])}"]
                                                                      if wrong else [])
    if problems:
        raise ZooError(f"'{file}' does not fit model '{name}' as {CONFIG} builds it: {' / '.join(problems)}")

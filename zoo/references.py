"""The reference -- the real images samples are compared against -- and its cache, and which extractor suits it.

:func:`reference_for_config` says which images (a run's training images, its held-out ones, a whole split,
or files); :func:`reference_stats` runs them through the extractor once and caches on disk, keyed by
dataset, data root, split, holdout, part, limit, input transform, extractor and a hash of its weights:
FID statistics over all of them, the features of a seeded subset of at most ``REF_FEATURES`` images
(for KID, precision/recall, density/coverage) and that subset's indices (``keep``, into the reference's
images in load order: zoo/memorisation.py reuses the features through them), and how many reference
images the extractor itself was trained on. :func:`default_extractor`, :func:`made_for` and
:func:`extractor_mismatch` decide which extractor suits the reference's dataset.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .errors import ZooError, did_you_mean
from .extractors import extract_features, layer
from .images import read_images

REF_FEATURES = 10_000   # reference features kept (seeded subset) for KID and precision/recall
CACHE_VERSION = 2       # 2: the kept subset's indices are stored


@dataclass
class Reference:
    """Real images to compare against; ``load`` runs only when their statistics are not cached."""
    description: str
    key: dict                                   # identifies the images in the cache key (primitives only)
    load: Callable[[], tuple[torch.Tensor, dict]]   # -> (uint8 images, {"indices", "split_size"} or {})
    geometry: tuple[int, int]                   # (channels, size) of the images
    source: dict = field(default_factory=dict)  # dataset/split/holdout/part: checked against the extractor's


def reference_for_config(cfg, spec: str | None = None) -> Reference:
    """The real images a run (config ``cfg``, or just its ``data`` section) is compared against.

    ``spec``: ``None`` -- the run's training images (its split minus the holdout, with data.limit);
    ``holdout`` -- the held-out images; a split name of the dataset (``train``, ``test``) -- that whole
    split; or a path -- a folder of images, or an .npz / .npy image array.
    """
    from .config import BASE, Config, defaults
    from .data import data_root
    from .registry import registry
    data = Config({**defaults(BASE["data"]), **dict(cfg["data"] if "data" in cfg else cfg)})
    entry = registry().dataset(data.name)
    split, holdout, limit = data.split, data.holdout or 0, data.limit
    if spec in (None, "", "default"):
        part = "train"
        what = f"{data.name} {split} split" + (f" minus the {holdout} held-out images" if holdout else "") + \
            (f", first {limit}" if limit else "") + " (the training images)"
    elif spec == "holdout":
        if not holdout:
            raise ZooError(f"--reference holdout: the data holds out no images (data.holdout=0) -- use a split "
                           f"({', '.join(entry.splits)}) or set data.holdout=N")
        part, limit = "holdout", None
        what = f"{data.name} {split} split, the {holdout} held-out images"
    elif spec in entry.splits:
        split, holdout, part, limit = spec, 0, "all", None
        what = f"{data.name} {split} split (all images)"
    elif Path(spec).expanduser().exists():
        return file_reference(spec)
    else:
        raise ZooError(f"--reference {spec!r} is neither a split of {data.name} ({', '.join(entry.splits)}), "
                       f"'holdout', nor an existing folder / .npz / .npy file{did_you_mean(spec, entry.splits)}")
    root = data_root(data)

    def load():
        from .data import holdout_split, load_images
        images = load_images(Config({**data, "split": split, "holdout": 0, "limit": None}), "all")
        n = len(images)
        train_idx, hold_idx = holdout_split(n, holdout)
        idx = {"train": train_idx, "holdout": hold_idx, "all": torch.arange(n)}[part]
        if limit:
            idx = idx[: int(limit)]
        if len(idx) == 0:
            raise ZooError(f"the reference ({what}) holds no images (check data.holdout / data.limit)")
        return images[idx], {"indices": idx, "split_size": n}

    key = {"kind": "dataset", "dataset": data.name, "root": str(root), "split": split, "holdout": holdout,
           "part": part, "limit": limit}
    return Reference(what, key, load, (entry.channels, entry.image_size),
                     {"dataset": data.name, "split": split, "holdout": holdout, "part": part})


def file_reference(path) -> Reference:
    """Reference images from a folder or an .npz / .npy file (keyed by their content)."""
    p = Path(path).expanduser().resolve()
    images = read_images(p)
    digest = hashlib.sha256(images.numpy().tobytes()).hexdigest()[:16]
    key = {"kind": "files", "path": str(p), "shape": list(images.shape), "sha256": digest}
    return Reference(f"images in {p}", key, lambda: (images, {}), (int(images.shape[1]), int(images.shape[-1])))


def declared_extractor(dataset: str | None) -> str | None:
    """The extractor a dataset declares as the one that suits it (``DatasetEntry.extractor``), or None."""
    from .registry import registry
    if not dataset:
        return None
    entry = registry().datasets.get(dataset)
    declared = getattr(entry, "extractor", None)
    return declared if isinstance(declared, str) and declared else None


def default_extractor(reference: Reference) -> str:
    """The extractor the reference's dataset declares; else ``mnist`` for 28x28 grayscale data (with a
    warning when that dataset is not MNIST: see :func:`extractor_mismatch`), ``inception`` otherwise."""
    declared = declared_extractor(reference.source.get("dataset"))
    if declared:
        from .registry import registry
        if declared not in registry().extractors:
            raise ZooError(f"dataset '{reference.source['dataset']}' declares the feature extractor '{declared}', "
                           f"which is not registered (install the plugin that provides it, or pass --extractor NAME; "
                           f"`zoo list` shows the extractors)")
        return declared
    return "mnist" if tuple(reference.geometry) == (1, 28) else "inception"


def made_for(name: str, ext, dataset: str | None) -> bool | None:
    """Whether extractor ``name`` (instance ``ext``) was made for ``dataset``: True when the dataset declares
    it or it lists the dataset in its ``made_for`` attribute; False when it is a specialised extractor
    (``made_for`` set) for other data; None when that cannot be told (a general-purpose extractor such as
    Inception, or images with no dataset behind them)."""
    if not dataset:
        return None
    if declared_extractor(dataset) == name:
        return True
    datasets = getattr(ext, "made_for", None)
    if datasets is None:
        return None
    return dataset in tuple(datasets)


def extractor_mismatch(name: str, ext, dataset: str | None) -> str | None:
    """A one-line warning when a specialised extractor scores data it was not made for, else None."""
    if made_for(name, ext, dataset) is not False:
        return None
    declared = declared_extractor(dataset)
    fix = (f"use --extractor {declared} (the one '{dataset}' declares)" if declared else
           f"'{dataset}' declares no extractor: use a general one (--extractor inception) or one made for it "
           f"(a dataset plugin names it when it registers the dataset)")
    return (f"the '{name}' feature extractor was made for {', '.join(ext.made_for)}, not for '{dataset}': its "
            f"features and classes may not fit these images, so the scores can mislead -- {fix}")


def cache_dir(path=None) -> Path:
    """Where reference statistics live: ``path``, else ``$ZOO_CACHE``, else ``~/.cache/zoo/stats``."""
    if path:
        return Path(path).expanduser()
    if os.environ.get("ZOO_CACHE"):
        return Path(os.environ["ZOO_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zoo" / "stats"


def reference_stats(reference: Reference, ext, name: str, *, cache=None, batch_size: int = 256,
                    progress: bool = False) -> dict:
    """FID statistics (mu, sigma over all reference images), a seeded subset of the reference features
    (for KID and precision/recall) and its indices ``keep``, computed once and cached (``status``:
    cached/computed)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics
    layers = sorted({layer(ext, "kid"), layer(ext, "prc")})
    key = {"version": CACHE_VERSION, "images": reference.key, "extractor": name,
           "weights": str(getattr(ext, "weights_id", "")),
           "input": [int(getattr(ext, "input_channels", 3)), getattr(ext, "input_size", None)],
           "fid_layer": layer(ext, "fid"), "layers": layers, "subset": REF_FEATURES}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    slug = "-".join(str(reference.key.get(k)) for k in ("dataset", "split", "part") if reference.key.get(k))
    path = cache_dir(cache) / f"{slug or 'files'}-{name}-{digest}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("version") == CACHE_VERSION:
                return {**blob, "status": "cached", "path": str(path)}
        except Exception:  # noqa: BLE001 - a corrupt cache entry is simply recomputed
            pass
    try:
        images, info = reference.load()
    except ZooError as e:
        raise ZooError(f"reference images ({reference.description}): {e} (or choose others with --reference)") from None
    size = getattr(ext, "input_size", None) or int(images.shape[-1])
    feats = extract_features(ext, images, size, batch_size, progress, desc="reference features")
    stats = fid_features_to_statistics(feats[layer(ext, "fid")].double())
    keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:REF_FEATURES]
    blob = {"version": CACHE_VERSION, "key": json.dumps(key, sort_keys=True), "description": reference.description,
            "n": len(images), "image_size": int(images.shape[-1]), "keep": keep,
            "mu": torch.from_numpy(stats["mu"]), "sigma": torch.from_numpy(stats["sigma"]),
            "features": {k: feats[k][keep].clone() for k in layers},
            "overlap": training_overlap(ext, reference.source, info)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(blob, tmp)
        tmp.replace(path)
    except OSError as e:
        warnings.warn(f"could not cache reference statistics in {path.parent} ({e.strerror}); set --cache-dir "
                      f"or ZOO_CACHE to a writable folder", stacklevel=2)
    return {**blob, "status": "computed", "path": str(path)}


def training_overlap(ext, source: dict, info: dict) -> int:
    """How many reference images the extractor was trained on (0 when unknown or disjoint)."""
    from .data import holdout_split
    from .extractors import indices_sha256
    trained_on = getattr(ext, "trained_on", None)
    if not trained_on or not source or "indices" not in info:
        return 0
    if (trained_on.get("dataset"), trained_on.get("split")) != (source["dataset"], source["split"]):
        return 0
    n = info["split_size"]
    trained = holdout_split(n, trained_on.get("holdout") or 0)[0] if trained_on.get("part") == "train" \
        else torch.arange(n)
    if indices_sha256(trained) != trained_on.get("indices_sha256"):
        trained = torch.arange(n)  # another version of the split: assume every image may have been seen
    return int(torch.isin(info["indices"], trained).sum())

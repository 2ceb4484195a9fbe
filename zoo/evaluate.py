"""The evaluation harness: FID, Inception Score, KID and precision/recall for any model or set of images.

One scoring path serves ``zoo eval``, ``zoo compare`` and the trainer's periodic FID::

    from zoo.evaluate import evaluate, quick_fid
    evaluate(zoo.load_run("runs/vae"))                    # 10k samples vs the run's training images
    evaluate(images_uint8, reference="holdout", data={"split": "test", "holdout": 1000})

1. Images -- sampled from a model in batches, or given (uint8, or float in [0, 1]; ``read_images`` reads
   folders and .npz/.npy files) -- are converted to what the feature extractor takes: channels
   (grayscale <-> RGB), then a centre crop that undoes zoo's 28 -> 32 padding, or a resize.
2. The feature extractor -- a torch-fidelity ``FeatureExtractorBase`` from the ``zoo_register_extractors``
   hook (``mnist``: zoo's MNIST classifier, ``inception``: torch-fidelity's Inception-v3) -- maps them to
   features (FID, KID, precision/recall) and logits (IS).
3. The reference -- real images, by default the run's training images -- goes through the same steps
   once; its FID statistics and a seeded subset of its features are cached on disk, keyed by dataset,
   data root, split, holdout, part, limit, input transform, extractor and a hash of its weights.
4. torch-fidelity's own metric functions compute the numbers; none of the maths is re-implemented here.

Besides those: ``modes`` (mode coverage of digits: the ``mnist`` classifier's histogram of predicted
classes, only for data that classifier was made for) and, with ``nll=True`` for a model, bits/dim of
held-out images (zoo/likelihood.py). docs/evaluation.md explains every number and its thresholds.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ZooError, did_you_mean
from .eval_inputs import METRICS, check_images_path, parse_metrics, run_dir_of  # noqa: F401 - part of this API

RESULT_KEYS = ("fid", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall",
               "modes", "class_kl", "mean_confidence",
               "bits_per_dim", "bits_per_dim_bound", "nll_n", "nll_seconds")
FID_FLOOR = 256          # FID wants >= max(2 x feature dimension, FID_FLOOR) images on each side (docs/evaluation.md)
MODE_MIN_SHARE = 0.02    # a class counts as a covered mode with >= 2% of the samples (a fifth of its fair 10%)
MODE_CLASSIFIER = "mnist"
REF_FEATURES = 10_000   # reference features kept (seeded subset) for KID and precision/recall
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
PRC_NEIGHBORHOOD = 3
CACHE_VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


# --- images in ------------------------------------------------------------------------------
def as_uint8_images(x, what: str = "images") -> torch.Tensor:
    """An image array -> uint8 ``(N, C, H, W)``, C = 1 or 3. Accepts ``(N, H, W)``, ``(N, C, H, W)`` and
    ``(N, H, W, C)``; uint8 / integer 0-255, or float in [0, 1]. Anything else is a one-line ZooError."""
    if isinstance(x, np.ndarray):
        if x.dtype == object or x.dtype.kind not in "biuf":
            raise ZooError(f"{what}: array of dtype {x.dtype} is not an image array (use uint8 0-255 or float 0-1)")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not torch.is_tensor(x):
        raise ZooError(f"{what}: expected an image array or tensor, got {type(x).__name__}")
    shape = tuple(x.shape)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise ZooError(f"{what} have shape {shape}; expected (N, H, W), (N, C, H, W) or (N, H, W, C) with C = 1 or 3")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3, 4):
        x = x.permute(0, 3, 1, 2)[:, :3]   # channels-last (an alpha channel is dropped)
    if x.shape[1] not in (1, 3):
        raise ZooError(f"{what} have shape {shape}; expected 1 (grayscale) or 3 (RGB) channels")
    if x.shape[0] == 0:
        raise ZooError(f"{what} hold no images (shape {shape})")
    if min(x.shape[-2:]) < 8:
        raise ZooError(f"{what} have shape {shape}: images of {x.shape[-2]}x{x.shape[-1]} pixels are too small "
                       f"(expected e.g. (N, 28, 28) or (N, 3, 32, 32))")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if x.dtype == torch.bool or x.is_complex():
        raise ZooError(f"{what}: dtype {x.dtype} is not an image dtype (use uint8 0-255 or float 0-1)")
    if x.is_floating_point():
        x = x.float()
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ZooError(f"{what} contain {bad} NaN/inf values -- the images are broken (check the model's output)")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ZooError(f"float {what} must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}] -- map [-1, 1] "
                           f"images with (x + 1) / 2, divide 0-255 floats by 255, or pass uint8")
        return (x.clamp(0, 1) * 255).round_().to(torch.uint8).contiguous()
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > 255:
        raise ZooError(f"integer {what} must be in 0-255, got values in [{lo}, {hi}]")
    return x.to(torch.uint8).contiguous()


def read_images(path) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` from a folder of images (PNG/JPEG/..., searched recursively, sorted by name,
    all the same size) or an ``.npz`` (key ``images``, or its only array) / ``.npy`` file."""
    p = check_images_path(path)
    if p.is_dir():
        return _read_folder(p)
    try:
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            keys = list(loaded.files)
            if not keys:
                raise ZooError(f"'{path}' holds no arrays (save the images with np.savez(path, images=array))")
            if "images" not in keys and len(keys) > 1:
                raise ZooError(f"'{path}' holds arrays {', '.join(keys)}: name the images 'images' "
                               f"(np.savez(path, images=array))")
            array = loaded["images" if "images" in keys else keys[0]]
        else:
            array = loaded
    except ZooError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated file, pickled objects, not NumPy at all
        raise ZooError(f"'{path}' could not be read as a NumPy array ({type(e).__name__}: "
                       f"{str(e).strip().splitlines()[0][:120] if str(e).strip() else ''})") from None
    return as_uint8_images(array, what=f"'{path}'")


def _read_folder(folder: Path) -> torch.Tensor:
    from PIL import Image
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise ZooError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in folder '{folder}' "
                       f"(write some with: zoo sample RUN -n 10000 --out FOLDER)")
    arrays, first = [], None
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
                a = np.asarray(im)
        except Exception as e:  # noqa: BLE001
            raise ZooError(f"'{f}' is not a readable image ({type(e).__name__})") from None
        if first is None:
            first = (f, a.shape[:2])
        elif a.shape[:2] != first[1]:
            raise ZooError(f"images in '{folder}' differ in size: {first[0].name} is {first[1][1]}x{first[1][0]}, "
                           f"{f.name} is {a.shape[1]}x{a.shape[0]} (all must be the same size)")
        arrays.append(a)
    if any(a.ndim == 3 for a in arrays):
        arrays = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in arrays]
    return as_uint8_images(np.stack(arrays), what=f"images in '{folder}'")


def to_extractor_input(x: torch.Tensor, channels: int, size: int | None) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> uint8 ``(B, channels, size, size)``: grayscale <-> RGB, then a centre crop
    when the images are a few pixels larger (undoing zoo's padding, e.g. 32 -> 28), else a resize."""
    if x.shape[1] != channels:
        if channels == 3:
            x = x.expand(-1, 3, -1, -1)
        else:
            luma = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
            x = (x.float() * luma).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    h, w = x.shape[-2:]
    if size is not None and (h, w) != (size, size):
        if h == w and size < h <= size + size // 4 and (h - size) % 2 == 0:
            m = (h - size) // 2
            x = x[..., m:m + size, m:m + size]
        else:
            x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            x = x.round_().clamp_(0, 255).to(torch.uint8)
    return x.contiguous()


# --- the reference (real images) -------------------------------------------------------------
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


# --- feature extractors -----------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def load_extractor(name: str, weights: str | None = None, device: str = "cpu"):
    """The registered extractor ``name`` (a torch-fidelity FeatureExtractorBase) on ``device``, in eval
    mode; kept in memory, so the trainer's periodic FID does not reload it."""
    from torch_fidelity import FeatureExtractorBase
    from .registry import registry
    entry = registry().extractor(name)
    try:
        ext = entry.factory(**({"weights": weights} if weights else {}))
    except ZooError:
        raise
    except Exception as e:  # noqa: BLE001 - a broken plugin extractor is one line
        raise ZooError(f"feature extractor '{name}' (plugin {entry.plugin}) failed to load: {type(e).__name__}: "
                       f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}") from None
    if not isinstance(ext, FeatureExtractorBase):
        raise ZooError(f"feature extractor '{name}' (plugin {entry.plugin}) returned {type(ext).__name__}, not a "
                       f"torch_fidelity.FeatureExtractorBase")
    return ext.to(device).eval().requires_grad_(False)


def layer(ext, metric: str) -> str:
    """The extractor's feature layer for ``metric`` (torch-fidelity names: isc, fid, kid, prc)."""
    name = type(ext).get_default_feature_layer_for_metric(metric)
    if name not in ext.get_requested_features_list():
        raise ZooError(f"feature extractor {ext.get_name()} does not compute layer '{name}' needed for {metric}")
    return name


def _device_of(ext) -> torch.device:
    for t in list(ext.parameters()) + list(ext.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def extract_features(ext, images: torch.Tensor, size: int | None, batch_size: int = 256, progress: bool = False,
                     desc: str = "features") -> dict[str, torch.Tensor]:
    """Every layer ``ext`` computes, for uint8 ``images``, as float32 CPU tensors ``(N, D)``."""
    from tqdm.auto import tqdm
    device = _device_of(ext)
    channels = int(getattr(ext, "input_channels", 3))
    out: dict[str, list] = {k: [] for k in ext.get_requested_features_list()}
    with tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False) as bar, \
            torch.autocast(device.type, enabled=False):
        for i in range(0, len(images), batch_size):
            x = to_extractor_input(images[i:i + batch_size], channels, size).to(device, non_blocking=True)
            for k, v in ext.convert_features_tuple_to_dict(ext(x)).items():
                out[k].append(v.float().cpu())
            bar.update(len(x))
    return {k: torch.cat(v) for k, v in out.items()}


def reference_stats(reference: Reference, ext, name: str, *, cache=None, batch_size: int = 256,
                    progress: bool = False) -> dict:
    """FID statistics (mu, sigma over all reference images) and a seeded subset of the reference features
    (for KID and precision/recall), computed once and cached (``status``: cached/computed)."""
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
            "n": len(images), "image_size": int(images.shape[-1]),
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


# --- metrics ------------------------------------------------------------------------------------
def mode_coverage(images: torch.Tensor, dataset: str | None, name: str, ext, feats: dict, weights: str | None = None,
                  batch_size: int = 256, progress: bool = False) -> dict:
    """Mode coverage of digit samples: the ``mnist`` classifier's histogram of predicted classes.

    ``modes``: classes predicted for at least ``MODE_MIN_SHARE`` (2%) of the images; ``class_kl``:
    KL(histogram || uniform) in nats (0 for balanced classes, log 10 = 2.303 for one class);
    ``mean_confidence``: the mean top softmax probability. Only where the classifier was made for the
    data (MNIST, or a dataset that declares the ``mnist`` extractor); otherwise these are None and
    ``modes_note`` says why. ``ext``/``feats``: the extractor in use and its features (reused when it
    is the classifier itself)."""
    from .registry import registry
    skipped = {"modes": None, "class_kl": None, "mean_confidence": None}
    if MODE_CLASSIFIER not in registry().extractors:
        return {**skipped, "modes_note": f"no '{MODE_CLASSIFIER}' extractor is registered to classify the samples"}
    clf = ext if name == MODE_CLASSIFIER else load_extractor(MODE_CLASSIFIER, weights, str(_device_of(ext)))
    suits = made_for(MODE_CLASSIFIER, clf, dataset)
    if not suits:
        why = (f"the reference images name no dataset, so zoo cannot tell whether the '{MODE_CLASSIFIER}' "
               f"classifier suits them" if suits is None else
               f"the '{MODE_CLASSIFIER}' classifier was made for {', '.join(getattr(clf, 'made_for', ()) or ())}, "
               f"not for '{dataset}'")
        return {**skipped, "modes_note": f"mode coverage not measured: {why}"}
    logits_layer = layer(clf, "isc")
    if clf is not ext or logits_layer not in feats:
        feats = extract_features(clf, images, getattr(clf, "input_size", None), batch_size, progress,
                                 desc="classifying samples")
    probs = feats[logits_layer].double().softmax(1)
    classes = probs.shape[1]
    hist = torch.bincount(probs.argmax(1), minlength=classes).double() / len(probs)
    seen = hist[hist > 0]
    return {"modes": int((hist >= MODE_MIN_SHARE).sum()), "class_kl": float((seen * (seen * classes).log()).sum()),
            "mean_confidence": float(probs.max(1).values.mean()), "modes_histogram": [round(float(h), 4) for h in hist],
            "modes_min_share": MODE_MIN_SHARE, "modes_classifier": MODE_CLASSIFIER}


def pick_device(device=None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def evaluate_images(images, reference: Reference, *, extractor: str | None = None, metrics=METRICS, seed: int = 0,
                    batch_size: int = 256, device=None, cache_dir=None, extractor_weights: str | None = None,
                    progress: bool = False) -> dict:
    """Score ``images`` (uint8, or float in [0, 1]) against ``reference``. Returns a dict with ``fid``,
    ``is_mean``, ``is_std``, ``kid_mean``, ``kid_std``, ``precision``, ``recall`` (None where not
    requested), ``extractor``, ``n`` and how they were computed."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric
    t0 = time.perf_counter()
    metrics = parse_metrics(metrics)
    images = as_uint8_images(images)
    name = extractor or default_extractor(reference)
    ext = load_extractor(name, extractor_weights, str(pick_device(device)))
    ref = reference_stats(reference, ext, name, cache=cache_dir, batch_size=batch_size, progress=progress)
    feats = extract_features(ext, images, getattr(ext, "input_size", None) or ref["image_size"], batch_size,
                             progress, desc="sample features")
    n = len(images)
    out: dict = {k: None for k in RESULT_KEYS}
    notes: dict = {}
    found = []
    dataset = reference.source.get("dataset")
    mismatch = extractor_mismatch(name, ext, dataset)
    if mismatch:
        found.append(mismatch)
    if "fid" in metrics:
        mine = fid_features_to_statistics(feats[layer(ext, "fid")].double())
        theirs = {"mu": ref["mu"].numpy(), "sigma": ref["sigma"].numpy()}
        out["fid"] = float(fid_statistics_to_metric(mine, theirs, False)[KEY_METRIC_FID])
        dim = int(feats[layer(ext, "fid")].shape[1])
        notes["fid_min_images"] = need = max(2 * dim, FID_FLOOR)
        if min(n, int(ref["n"])) < need:
            side = f"{n} images" if n < need else f"a reference of {ref['n']} images"
            found.append(f"FID from {side} is not meaningful on its own: with {dim}-d '{name}' features it needs "
                         f"at least {need} on each side (2 x {dim}, at least {FID_FLOOR}) -- below that the feature "
                         f"covariance is barely estimated and FID is biased high; compare only runs scored with "
                         f"the same number of images (use -n {need} or more)")
    if "modes" in metrics:
        notes.update(mode_coverage(images, dataset, name, ext, feats, extractor_weights if name == MODE_CLASSIFIER
                                   else None, batch_size, progress))
        for k in ("modes", "class_kl", "mean_confidence"):
            out[k] = notes.pop(k)
    if "is" in metrics:
        notes["is_splits"] = splits = max(1, min(10, n // 1000))  # >= 1000 images per split, 10 at most
        r = isc_features_to_metric(feats[layer(ext, "isc")], splits=splits, shuffle=True, rng_seed=seed)
        out["is_mean"], out["is_std"] = float(r[KEY_METRIC_ISC_MEAN]), float(r[KEY_METRIC_ISC_STD])
    if "kid" in metrics:
        real = ref["features"][layer(ext, "kid")]
        notes["kid_subset_size"] = m = min(KID_SUBSET_SIZE, n, len(real))
        if m < 2:
            raise ZooError(f"KID needs at least 2 images on each side, got {n} samples and {len(real)} reference")
        r = kid_features_to_metric(feats[layer(ext, "kid")], real, kid_subsets=KID_SUBSETS, kid_subset_size=m,
                                   rng_seed=seed, verbose=False)
        out["kid_mean"], out["kid_std"] = float(r[KEY_METRIC_KID_MEAN]), float(r[KEY_METRIC_KID_STD])
        notes["kid_subsets"] = KID_SUBSETS
        # every subset is the same when it takes all images on both sides: then the spread means nothing
        notes["kid_subsets_differ"] = m < n or m < len(real)
    if "prc" in metrics:
        real = ref["features"][layer(ext, "prc")]
        notes["prc_samples"] = m = min(n, len(real))  # equal sizes on both sides, as in Kynkaanniemi et al.
        if m <= PRC_NEIGHBORHOOD + 1:
            raise ZooError(f"precision/recall needs more than {PRC_NEIGHBORHOOD + 1} images, got {m}")
        r = prc_features_to_metric(feats[layer(ext, "prc")][:m], real[:m], prc_neighborhood=PRC_NEIGHBORHOOD,
                                   prc_batch_size=2000, save_cpu_ram=True, verbose=False)
        out["precision"], out["recall"] = float(r[KEY_METRIC_PRECISION]), float(r[KEY_METRIC_RECALL])
    if ref.get("overlap"):
        t = ext.trained_on
        found.append(f"the '{name}' feature extractor was trained on {ref['overlap']} of the {ref['n']} reference "
                     f"images [{ref['description']}; it trained on {t.get('dataset')} {t.get('split')} split, "
                     f"holdout {t.get('holdout')}]: its features fit them better than unseen images, so scores are "
                     f"optimistic -- compare against unseen images (--reference holdout) or retrain it on other "
                     f"images (zoo eval-net train)")
    for w in found:
        warnings.warn(w, stacklevel=2)
    out.update({"extractor": name, "extractor_weights": str(getattr(ext, "weights_id", "")) or None, "n": n,
                "metrics": list(metrics), "reference": ref["description"], "n_reference": int(ref["n"]),
                "reference_stats": ref["status"], "seed": seed, **notes, "warnings": found,
                "seconds_scoring": round(time.perf_counter() - t0, 3)})
    return out


def evaluate(images_or_model, reference=None, *, extractor: str | None = None, metrics=METRICS, n: int | None = None,
             seed: int = 0, batch_size: int = 256, device=None, cache_dir=None, data=None, sample_options=None,
             extractor_weights: str | None = None, progress: bool = False, nll: bool = False, nll_n: int | None = None,
             nll_options=None, config=None) -> dict:
    """Score a model (a ZooModel: ``n`` samples, default 10000, drawn with ``seed``) or an image array.

    ``reference``: a :class:`Reference`, or a spec for :func:`reference_for_config` (None = the training
    images; ``holdout``; a split name; a folder / .npz / .npy path). For a model the data settings are its
    config's; for images they are ``data`` (a ``data`` config section, default: MNIST's train split).
    ``extractor``: a registered extractor name (default: the one the dataset declares, else ``mnist`` for
    28x28 grayscale data, else ``inception``). ``sample_options``: the model's declared sampling options,
    checked before any work. ``metrics`` may be empty for a model when ``nll`` is set.
    ``nll``: also measure the model's likelihood (bits/dim of held-out images; ``nll_n`` of them,
    ``nll_options`` for its ``log_likelihood``; see :func:`zoo.likelihood.evaluate_likelihood`).
    ``config``: the run's config with changed data settings (default: the model's own), for the
    reference and the held-out images. Returns the dict of :func:`evaluate_images` plus sampling and likelihood details.
    """
    from .config import Config
    t0 = time.perf_counter()
    x = images_or_model
    extra: dict = {}
    is_model = isinstance(x, torch.nn.Module) and hasattr(x, "sample")
    if not is_model and nll:
        raise ZooError("--nll needs a model to ask for log p(x) (zoo eval RUN --nll), not image files")
    metrics = parse_metrics(metrics, allow_empty=is_model and nll)
    if is_model:
        from .contract import check_likelihood_options, check_sample_options
        from .images import sample_images
        cfg = config if config is not None else x.cfg
        sample_options = check_sample_options(x, dict(sample_options or {}))
        nll_options = check_likelihood_options(x, dict(nll_options or {})) if nll else {}
        result: dict = {k: None for k in RESULT_KEYS}
        likelihood: dict = {"warnings": []}
        if nll:   # first: it checks the run's data and the model's answer before the long sampling
            from .likelihood import evaluate_likelihood
            likelihood = evaluate_likelihood(x, cfg, n=nll_n, seed=seed, batch_size=batch_size,
                                             options=nll_options, progress=progress)
        if metrics:
            ref = reference if isinstance(reference, Reference) else reference_for_config(cfg, reference)
            n = 10_000 if n is None else int(n)
            t = time.perf_counter()
            images = sample_images(x, n, seed=seed, batch_size=batch_size, progress=progress, **sample_options)
            extra = {"seconds_sampling": round(time.perf_counter() - t, 3)}
            result.update(evaluate_images(images, ref, extractor=extractor, metrics=metrics, seed=seed,
                                          batch_size=batch_size, device=device if device is not None else x.device,
                                          cache_dir=cache_dir, extractor_weights=extractor_weights,
                                          progress=progress))
        else:
            result.update(metrics=[], n=0, seed=seed, warnings=[])
        result.update({k: v for k, v in likelihood.items() if k != "warnings"},
                      warnings=likelihood["warnings"] + result["warnings"])
        result.update(extra, model=cfg.get("model_name"), step=getattr(x, "step", None),
                      sample_options=sample_options, seconds=round(time.perf_counter() - t0, 3))
        return result
    images = as_uint8_images(x)
    if n is not None:
        if n > len(images):
            raise ZooError(f"-n {n} but only {len(images)} images were given")
        images = images[:n]
    ref = reference if isinstance(reference, Reference) else \
        reference_for_config(Config({"data": dict(data or {})}), reference)
    result = evaluate_images(images, ref, extractor=extractor, metrics=metrics, seed=seed, batch_size=batch_size,
                             device=device, cache_dir=cache_dir, extractor_weights=extractor_weights,
                             progress=progress)
    result.update(seconds=round(time.perf_counter() - t0, 3))
    return result


def quick_fid(model, cfg=None, n: int = 1000, seed: int = 0) -> float:
    """FID of ``n`` samples of ``model`` against the cached statistics of its training images, with the
    default extractor -- the trainer's periodic FID (``trainer.eval_every`` / ``trainer.eval_n``)."""
    cfg = cfg if cfg is not None else model.cfg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the extractor-overlap note is for reports, not every eval step
        return float(evaluate(model, reference_for_config(cfg), metrics=("fid",), n=n, seed=seed)["fid"])

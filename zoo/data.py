"""Data: where files live, reading IDX files, holdouts, and the image pipeline.

Datasets themselves are registered by plugins (``plugins/datasets.py`` for the
built-ins) through the ``zoo_register_datasets`` hook. A dataset loader returns
the whole split as a uint8 tensor ``(N, C, H, W)`` (plus labels or None); zoo
keeps it in memory -- on the GPU when training there -- and maps each batch to
the size and range the model declares with :func:`to_model_input`.
"""
from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .env import env_flag
from .errors import ZooError

HOLDOUT_SEED = 20240607  # fixed: the same images are held out whatever the run's seed


def data_root(cfg_data) -> Path:
    """``data.root``, else ``$ZOO_DATA``, else ``~/.cache/zoo/data`` ($XDG_CACHE_HOME/zoo/data).

    An explicit root (data.root, $ZOO_DATA) must exist; the default one is created by the first download."""
    explicit = cfg_data.get("root") if cfg_data else None
    if explicit:
        root, how = Path(explicit).expanduser(), "data.root"
    elif os.environ.get("ZOO_DATA"):
        root, how = Path(os.environ["ZOO_DATA"]).expanduser(), "ZOO_DATA"
    else:
        return default_root()
    if not root.is_dir():
        raise ZooError(f"data root '{root}' (from {how}) does not exist -- point {how} at the folder holding "
                       f"the dataset files, or unset it to download into {default_root()}")
    return root


def default_root() -> Path:
    """Where datasets are downloaded when neither data.root nor $ZOO_DATA is set."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zoo" / "data"


def offline() -> bool:
    """``ZOO_OFFLINE=1``: never download (``0``, ``no``, ``false``, ``off`` or empty: downloads allowed)."""
    return env_flag("ZOO_OFFLINE")


DOWNLOAD_TIMEOUT_S = 60


class DownloadError(ZooError):
    """Every URL tried for a file, each with why it failed (one line)."""


def fetch(urls, folder: Path, filename: str, md5: str | None) -> Path:
    """Download ``folder/filename`` from the first of ``urls`` that serves it, with torchvision's
    ``download_url`` (its progress bar, the MD5 checked). Written under a ``.part`` name and renamed when
    complete and checked, so an interrupted or corrupt download never looks like data. A ``DownloadError``
    naming each URL and why it failed when none serves it."""
    import socket

    from torchvision.datasets.utils import download_url
    folder, failures = Path(folder), []
    part = folder / f"{filename}.{os.getpid()}.part"  # one per process: DDP ranks may download at once
    timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a stalled connection fails with a reason, never hangs
    try:
        for url in urls:
            print(f"downloading {url} to {folder}", file=sys.stderr, flush=True)
            try:
                download_url(url, str(folder), part.name, md5)
            except Exception as e:  # noqa: BLE001 - HTTP errors, no network, checksum, disk: one reason each
                failures.append(f"{url}: {download_reason(e, md5)}")
                continue
            os.replace(part, folder / filename)
            return folder / filename
    finally:
        socket.setdefaulttimeout(timeout)
        part.unlink(missing_ok=True)
    raise DownloadError("; ".join(failures))


def download_reason(e: BaseException, md5: str | None = None) -> str:
    """Why a download failed, in a few words ("HTTP Error 404: Not Found", "no connection: ...")."""
    import urllib.error
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP Error {e.code}: {e.reason}"
    if isinstance(e, urllib.error.URLError):
        reason = getattr(e.reason, "strerror", None) or str(e.reason)
        return f"no connection ({reason})"
    if isinstance(e, RuntimeError) and "corrupted" in str(e):
        return f"the file's MD5 checksum is not the expected {md5} (corrupted or changed upstream)"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


# --- IDX files (MNIST, Fashion-MNIST) ---------------------------------------------------
_IDX_DTYPES = {0x08: torch.uint8, 0x09: torch.int8, 0x0B: torch.int16, 0x0C: torch.int32,
               0x0D: torch.float32, 0x0E: torch.float64}


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (optionally gzipped) into a tensor."""
    raw = gzip.open(path, "rb").read() if str(path).endswith(".gz") else Path(path).read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ZooError(f"'{path}' is not an IDX file (bad magic number)")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = 1
    for s in shape:
        count *= s
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(raw) - offset != count * itemsize:
        raise ZooError(f"'{path}' is truncated: header says {shape}, file holds {len(raw) - offset} bytes of data")
    t = torch.frombuffer(bytearray(raw[offset:]), dtype=dtype)
    if itemsize > 1:
        t = t.view(torch.uint8).view(-1, itemsize).flip(1).contiguous().view(dtype).view(-1)  # big-endian
    return t.reshape(shape)


def find_file(dirs, stem: str) -> Path | None:
    for d in dirs:
        for name in (stem, stem + ".gz"):
            p = Path(d) / name
            if p.is_file():
                return p
    return None


def load_idx_split(root: Path, split: str, files: dict, subdir: str, download_fn=None, download: bool = True):
    """Images (N, 1, H, W) uint8 and labels for one split of an IDX data set.

    ``files`` maps split -> (images stem, labels stem). Only that split's files
    are read. Looks in ``root``, ``root/<subdir>/raw`` and ``root/<subdir>``.
    """
    if split not in files:
        raise ZooError(f"unknown split '{split}' (this dataset has: {', '.join(files)}; set data.split)")
    img_stem, lbl_stem = files[split]
    dirs = [root, root / subdir / "raw", root / subdir]
    img = find_file(dirs, img_stem)
    why = ""
    if img is None and download and download_fn is not None and not offline():
        try:
            download_fn(root, split)
        except Exception as e:  # noqa: BLE001 - any download failure becomes one clear line
            why = f"; the download failed: {e if isinstance(e, DownloadError) else download_reason(e)}"
        img = find_file(dirs, img_stem)
    elif img is None:
        why = "; download is off (ZOO_OFFLINE or data.download=false)"
    if img is None:
        where = ", ".join(str(d) for d in dirs)
        other = next((s for s in files if s != split), split)
        raise ZooError(f"{subdir} {split} split not found: looked for {img_stem}[.gz] in {where}{why} -- "
                       f"put the IDX files there, point zoo at them with --set data.root=DIR or ZOO_DATA=DIR, or "
                       f"train on another split: --set data.split={other} --set data.holdout=1000 (1000 of its "
                       f"images held out for evaluation); write such settings for this machine once in the user "
                       f"file ($ZOO_CONFIG, else ~/.config/zoo/config.yaml): data: {{split: {other}, holdout: 1000}}")
    images = read_idx(img)
    lbl = find_file(dirs, lbl_stem)
    labels = read_idx(lbl).long() if lbl is not None else None
    if labels is not None and len(labels) != len(images):
        labels = None
    return images.unsqueeze(1).contiguous(), labels


# --- splits and the pipeline --------------------------------------------------------------
def holdout_split(n: int, holdout: int | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, holdout) of a fixed, seeded split of ``n`` images."""
    k = int(round(holdout * n)) if isinstance(holdout, float) and holdout < 1 else int(holdout or 0)
    if not 0 <= k < n:
        raise ZooError(f"data.holdout={holdout} must be between 0 and {n - 1} images (or a fraction below 1)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    return perm[k:].sort().values, perm[:k].sort().values


def load_images(cfg_data, part: str = "train", with_labels: bool = False):
    """The configured split as uint8 ``(N, C, H, W)`` on the CPU (with ``with_labels``: and its labels,
    ``(N,)`` int64 or None, cut by the same holdout and ``data.limit``).

    ``part``: ``train`` (the split minus the holdout), ``holdout`` or ``all``.
    """
    images, labels = read_split(cfg_data)
    images, labels = select_part(images, labels, cfg_data, part)
    return (images, labels) if with_labels else images


def read_split(cfg_data):
    """The configured split in full: ``(images, labels or None)``, as its dataset's loader returns it."""
    from .registry import registry
    entry = registry().dataset(cfg_data.name)
    return _read_split(entry, data_root(cfg_data), cfg_data.get("split", "train"),
                       bool(cfg_data.get("download", True)), "set data.split")


def select_part(images, labels, cfg_data, part: str = "train"):
    """``part`` (``train``, ``holdout`` or ``all``) of a split read by :func:`read_split`, then ``data.limit``:
    the labels are cut exactly as the images."""
    if part != "all":
        train_idx, hold_idx = holdout_split(len(images), cfg_data.get("holdout", 0))
        idx = train_idx if part == "train" else hold_idx
        images = images[idx]
        labels = labels[idx] if labels is not None else None
    limit = cfg_data.get("limit")
    if limit:
        images = images[: int(limit)]
        labels = labels[: int(limit)] if labels is not None else None
    if len(images) == 0:
        raise ZooError(f"dataset '{cfg_data.name}' split '{cfg_data.get('split', 'train')}' part '{part}' is "
                       f"empty (check data.holdout/limit)")
    return images, labels


def dataset_classes(cfg_data, labels) -> int | None:
    """The number of classes of the configured dataset: the count its registration declares (``num_classes=``,
    mnist: 10), else the largest of ``labels`` (its split's labels, :func:`read_split`) plus one -- a class
    index, not a count of the classes present, so a class missing from the split keeps its index. None: no
    labels."""
    from .registry import registry
    declared = registry().dataset(cfg_data.name).num_classes
    if declared:
        return declared
    labels = class_labels(cfg_data.name, labels)
    return int(labels.max()) + 1 if labels is not None and len(labels) else None


def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None, *,
                 download: bool = True, with_labels: bool = False):
    """The whole ``split`` of the registered dataset ``name`` as uint8 ``(N, C, H, W)`` on the CPU.

    ``root`` is the data root handed to the dataset's loader: ``None`` means ``$ZOO_DATA``, else
    ``~/.cache/zoo/data`` (as ``data.root`` does for training). ``download=False`` (or
    ``ZOO_OFFLINE=1``) never downloads. ``with_labels=True`` returns ``(images, labels)``, labels a
    ``(N,)`` int64 tensor or ``None`` when the dataset has none. No holdout and no resizing: the images
    exactly as the dataset stores them. A stable part of zoo's plugin API -- build a derived dataset on
    it (docs/plugins.md#deriving-a-dataset-from-another-one)::

        @hookimpl
        def zoo_register_datasets(register):
            def inverted(root, split, download):
                return 255 - zoo.load_dataset("mnist", split, root, download=download)
            register("inverted-mnist", inverted, channels=1, image_size=28)
    """
    from .registry import registry
    entry = registry().dataset(name)
    if root is not None and not Path(root).expanduser().is_dir():
        raise ZooError(f"load_dataset('{name}', '{split}', root='{root}'): that folder does not exist -- pass "
                       f"the folder holding the dataset files, or root=None for $ZOO_DATA / ~/.cache/zoo/data")
    images, labels = _read_split(entry, data_root({"root": root}), split, download, "pass another split")
    return (images, labels) if with_labels else images


def _read_split(entry, root: Path, split: str, download: bool, fix: str):
    """Call ``entry``'s loader for ``split`` and check what it returns: (uint8 images, labels or None)."""
    if split not in entry.splits:
        raise ZooError(f"dataset '{entry.name}' has no split '{split}' (splits: {', '.join(entry.splits)}; "
                       f"{fix})")
    out = entry.loader(Path(root), split, bool(download))
    images, labels = out if isinstance(out, tuple) else (out, None)
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ZooError(f"dataset '{entry.name}' loader returned {tuple(getattr(images, 'shape', ()))} "
                       f"{getattr(images, 'dtype', type(images).__name__)}, expected uint8 (N, C, H, W)")
    return images, _as_indices(labels, len(images))


def _as_indices(labels, n: int):
    """A loader's labels as int64 ``(n,)`` when they are ``n`` integer class indices >= 0; anything else as it
    is (an unconditional run never reads them; :func:`class_labels` says what is wrong for a conditional one)."""
    try:
        t = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        return labels
    integer = not (t.is_floating_point() or t.is_complex())
    return t.long() if integer and t.dim() == 1 and len(t) == n and (n == 0 or int(t.min()) >= 0) else labels


def class_labels(name: str, labels, n: int | None = None):
    """``labels`` (from :func:`read_split`) when they are class indices -- int64 ``(n,)``, >= 0 -- or None;
    else a one-line error naming the dataset."""
    if labels is None or (torch.is_tensor(labels) and labels.dtype == torch.int64 and labels.dim() == 1
                          and (n is None or len(labels) == n) and (not len(labels) or int(labels.min()) >= 0)):
        return labels
    raise ZooError(f"dataset '{name}' loader returned labels that are not {f'{n} ' if n else ''}integer class "
                   f"indices >= 0 (one per image): return (images, labels) with labels an int64 (N,) tensor, or "
                   f"images only")


def to_model_input(x: torch.Tensor, image_size: int, channels: int, data_range=(-1.0, 1.0),
                   resize: str = "pad") -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> float ``(B, channels, image_size, image_size)`` in ``data_range``."""
    x = x.float().div_(255.0)
    if x.shape[1] != channels:
        if channels == 1:
            x = x.mean(1, keepdim=True)
        elif x.shape[1] == 1:
            x = x.expand(-1, channels, -1, -1)
        else:
            raise ZooError(f"cannot map {x.shape[1]}-channel images to {channels} channels")
    h, w = x.shape[-2:]
    if (h, w) != (image_size, image_size):
        if resize == "pad" and image_size >= h and image_size >= w:
            top, left = (image_size - h) // 2, (image_size - w) // 2
            x = F.pad(x, (left, image_size - w - left, top, image_size - h - top))
        else:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                              align_corners=False).clamp_(0, 1)
    lo, hi = data_range
    return x.mul_(hi - lo).add_(lo) if (lo, hi) != (0.0, 1.0) else x


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float images -> uint8."""
    return (x.clamp(0, 1) * 255).round_().to(torch.uint8)

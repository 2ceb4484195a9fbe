"""Images out of a model -- sampling in batches, grids, .npz arrays and PNG folders -- and images in:
image arrays and files checked and read as uint8 (``as_uint8_images``, ``read_images``), and converted to
what a feature extractor takes (``to_extractor_input``).

Shared by the trainer (sample grids), ``zoo sample``, the evaluation harness and ``zoo compare``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .device import autocast, resolve_precision
from .errors import ZooError
from .eval_inputs import check_images_path, run_dir_of  # noqa: F401 - run_dir_of: part of this module's API
from .paths import check_writable, nearest_existing, unwritable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> None:
    """Save [0, 1] images as one grid (torchvision's ``make_grid``) of ``nrow`` images a row (default:
    roughly square)."""
    from torchvision.utils import make_grid, save_image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = nrow or max(1, int(math.ceil(math.sqrt(len(images)))))
    save_image(make_grid(images.float().cpu(), nrow=nrow, padding=2, pad_value=1.0), path)


def sample_images(model, n: int, seed: int = 0, batch_size: int = 500, progress: bool = False, labels=None,
                  sample_options: dict | None = None, **options) -> torch.Tensor:
    """``n`` images in [0, 1] from ``model`` in batches, on the model's device; same seed, same images.
    ``progress``: a bar on a terminal, else a line on stderr every 30 s (:class:`zoo.progress.Heartbeat`).
    ``labels``: for a conditional run, as :meth:`zoo.ZooModel.sample_labels` takes them (None: every class
    in turn over all ``n`` images); see :func:`sample_labelled`. The model's sampling options come as
    ``**options`` or as ``sample_options`` (a dict, which may hold names of this function's own, such as the
    model's ``batch_size``)."""
    return sample_labelled(model, n, seed, batch_size, progress, labels, sample_options, **options)[0]


def sample_labelled(model, n: int, seed: int = 0, batch_size: int = 500, progress: bool = False, labels=None,
                    sample_options: dict | None = None, **options) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(images, labels)``: :func:`sample_images`, and the ``(n,)`` int64 CPU labels the images were asked
    for -- for a conditional run (``model.num_classes`` set) ``labels`` checked by the model
    (``None``: balanced, image i asks for class i % K, across batches), else None (the model is called
    without ``labels=``, as before; labels given to an unconditional run are a one-line error)."""
    options = {**(sample_options or {}), **options}
    from .progress import Heartbeat
    device = model.device
    y = None if labels is None and getattr(model, "num_classes", None) is None else \
        model.sample_labels(n, labels, device=torch.device("cpu"))
    g = torch.Generator(device=device).manual_seed(int(seed))
    amp = resolve_precision("auto", device)
    out = []
    with torch.no_grad(), Heartbeat(n, "sampling", "img", show=progress) as bar:
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            bar.doing(b)
            asked = {} if y is None else {"labels": y[start:start + b].to(device)}
            with autocast(device, amp):
                x = model.sample(b, g, **asked, **options)
            out.append(x.float().clamp(0, 1).cpu())
            bar.update(b)
    return torch.cat(out), y


def check_out(out: str | Path) -> None:
    """Fail before any sampling when ``out`` is not a .png, a .npz or a folder, or cannot be written."""
    out = Path(out)
    if out.suffix and out.suffix.lower() not in (".png", ".npz"):
        raise ZooError(f"--out '{out}': use a .png (grid), a .npz (uint8 array) or a folder (one PNG per image)")
    check_writable(out, "--out", folder=out.parent if out.suffix else out)


def write_images(images: torch.Tensor, out: str | Path, nrow: int | None = None, labels=None) -> Path:
    """Save [0, 1] images: a grid for ``*.png`` (``nrow`` images a row; default: square), a uint8
    ``(N, H, W, C)`` array (key ``images``; with ``labels``, the class each image was asked for, also key
    ``labels``, which ``zoo eval --images`` reads) for ``*.npz``, else one PNG per image in the folder ``out``."""
    from torchvision.utils import save_image
    from .data import to_uint8
    out = Path(out)
    check_out(out)
    try:
        if out.suffix.lower() == ".png":
            save_grid(images, out, nrow)
        elif out.suffix.lower() == ".npz":
            import numpy as np
            out.parent.mkdir(parents=True, exist_ok=True)
            extra = {} if labels is None else {"labels": torch.as_tensor(labels).to(torch.int64).cpu().numpy()}
            np.savez_compressed(out, images=to_uint8(images).permute(0, 2, 3, 1).numpy(), **extra)
        else:
            out.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(images):
                save_image(img, out / f"{i:06d}.png")
    except OSError as e:
        raise unwritable(out, "--out", e, nearest_existing(out.parent if out.suffix else out)) from None
    return out


# --- images in (evaluation) ------------------------------------------------------------------------------
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


def read_labels(path) -> torch.Tensor | None:
    """The ``labels`` array of an ``.npz`` of images (the class each image was asked for, as
    ``write_images(images, "x.npz", labels=y)`` writes it) as int64, or None when there is none."""
    p = Path(path).expanduser()
    if p.suffix.lower() != ".npz" or not p.is_file():
        return None
    with np.load(p, allow_pickle=False) as loaded:
        if "labels" not in loaded.files or "images" not in loaded.files:
            return None
        labels = loaded["labels"]
    if labels.dtype.kind not in "iu":
        raise ZooError(f"'{path}': its labels are {labels.dtype}, not integer class labels")
    return torch.from_numpy(labels.astype(np.int64)).reshape(-1)


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

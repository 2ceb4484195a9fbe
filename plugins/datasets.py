"""Built-in datasets: MNIST, Fashion-MNIST, CIFAR-10 and a folder of images.

Registered through the ``zoo_register_datasets`` hook, exactly as a third-party
plugin would. Each loader reads only the requested split's files.
"""
from __future__ import annotations

from pathlib import Path

import torch

from zoo import ZooError, hookimpl
from zoo.data import load_idx_split, offline

MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _torchvision_download(cls):
    def download(root: Path, split: str) -> None:
        cls(str(root), train=(split == "train"), download=True)
    return download


def mnist(root: Path, split: str, download: bool):
    from torchvision.datasets import MNIST
    return load_idx_split(root, split, MNIST_FILES, "MNIST", _torchvision_download(MNIST), download)


def fashion_mnist(root: Path, split: str, download: bool):
    from torchvision.datasets import FashionMNIST
    debian = Path("/usr/share/datasets/fashion-mnist")
    if not any((Path(d) / f"{MNIST_FILES[split][0]}{ext}").is_file()
               for d in (root, root / "FashionMNIST" / "raw") for ext in ("", ".gz")) and debian.is_dir():
        root = debian  # Debian's dataset-fashion-mnist package
    return load_idx_split(root, split, MNIST_FILES, "FashionMNIST", _torchvision_download(FashionMNIST), download)


def cifar10(root: Path, split: str, download: bool):
    from torchvision.datasets import CIFAR10
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir() and (not download or offline()):
        raise ZooError(f"CIFAR-10 not found: looked for {folder} (download is off) -- put the python-version "
                       f"batches there, or point zoo at them with --set data.root=DIR or ZOO_DATA=DIR")
    try:
        ds = CIFAR10(str(root), train=(split == "train"), download=download and not offline())
    except Exception as e:  # noqa: BLE001
        raise ZooError(f"CIFAR-10 {split} split not found in {folder} ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''}) -- point zoo at local copies with "
                       f"--set data.root=DIR or ZOO_DATA=DIR") from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(ds.targets)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif"}


def folder(root: Path, split: str, download: bool):
    """Every image below ``root/<split>`` (or ``root`` when that does not exist),
    as RGB, center-cropped and resized to the first image's size."""
    from PIL import Image
    from torchvision.transforms.functional import center_crop, pil_to_tensor, resize
    base = root / split if (root / split).is_dir() else root
    paths = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ZooError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found below '{base}' -- "
                       f"set data.root to a folder of images")
    out, size = [], None
    for p in paths:
        t = pil_to_tensor(Image.open(p).convert("RGB"))
        if size is None:
            size = min(t.shape[-2:])
        s = min(t.shape[-2:])
        out.append(resize(center_crop(t, [s, s]), [size, size], antialias=True))
    return torch.stack(out), None


@hookimpl
def zoo_register_datasets(register):
    register("mnist", mnist, channels=1, image_size=28, description="MNIST handwritten digits, 28x28 grayscale",
             extractor="mnist")  # zoo's MNIST classifier was trained on these digits
    register("fashion-mnist", fashion_mnist, channels=1, image_size=28,
             description="Fashion-MNIST clothing, 28x28 grayscale (Debian: dataset-fashion-mnist)")
    register("cifar10", cifar10, channels=3, image_size=32, description="CIFAR-10 natural images, 32x32 RGB")
    register("folder", folder, channels=3, image_size=64, splits=("train", "test", "all"),
             description="every image below data.root (or data.root/<split>), RGB")

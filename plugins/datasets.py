"""Built-in datasets: MNIST, Fashion-MNIST, CIFAR-10 and a folder of images.

Registered through the ``zoo_register_datasets`` hook, exactly as a third-party
plugin would. Each loader reads only the requested split's files, and downloads only those when they
are missing.
"""
from __future__ import annotations

from pathlib import Path

import torch

from zoo import ZooError, hookimpl
from zoo.data import download_reason, fetch, load_idx_split, offline

MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist package


def _torchvision_download(cls):
    """Download one split's IDX files from torchvision's mirrors for ``cls`` (MNIST, FashionMNIST), their MD5s
    checked, into ``root/<cls name>/raw`` where torchvision keeps them. Only that split: where the training
    images are out of reach, the test split still downloads."""
    def download(root: Path, split: str) -> None:
        md5 = dict(cls.resources)
        for stem in MNIST_FILES[split]:
            name = f"{stem}.gz"
            fetch([f"{mirror}{name}" for mirror in cls.mirrors], root / cls.__name__ / "raw", name, md5[name])
    return download


def mnist(root: Path, split: str, download: bool):
    from torchvision.datasets import MNIST
    return load_idx_split(root, split, MNIST_FILES, "MNIST", _torchvision_download(MNIST), download)


def fashion_mnist(root: Path, split: str, download: bool):
    from torchvision.datasets import FashionMNIST
    if not any((Path(d) / f"{MNIST_FILES[split][0]}{ext}").is_file()
               for d in (root, root / "FashionMNIST" / "raw") for ext in ("", ".gz")) \
            and DEBIAN_FASHION_MNIST.is_dir():
        root = DEBIAN_FASHION_MNIST  # local files before a download
    return load_idx_split(root, split, MNIST_FILES, "FashionMNIST", _torchvision_download(FashionMNIST), download)


def cifar10(root: Path, split: str, download: bool):
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import extract_archive
    folder = root / CIFAR10.base_folder
    fix = "put the python-version batches there, or point zoo at them with --set data.root=DIR or ZOO_DATA=DIR"
    if not folder.is_dir():
        if not download or offline():
            raise ZooError(f"CIFAR-10 not found: looked for {folder} (download is off: ZOO_OFFLINE or "
                           f"data.download=false) -- {fix}")
        try:
            extract_archive(str(fetch([CIFAR10.url], root, CIFAR10.filename, CIFAR10.tgz_md5)), str(root))
        except ZooError as e:
            raise ZooError(f"CIFAR-10 not found in {folder}, and the download failed: {e} -- {fix}") from None
    try:
        ds = CIFAR10(str(root), train=(split == "train"), download=False)
    except Exception as e:  # noqa: BLE001
        raise ZooError(f"CIFAR-10 {split} split not readable in {folder} ({download_reason(e)}) -- {fix}") from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(ds.targets)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif"}


def folder(root: Path, split: str, download: bool):
    """Every image below ``root/<split>`` (or ``root`` when that does not exist),
    as RGB, center-cropped and resized to the first image's size. With one subfolder per class and no
    image directly in the folder (torchvision's ImageFolder layout), the labels too: class index by sorted
    subfolder name (``cat/``, ``dog/`` -> 0, 1); a flat folder has none."""
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
    return torch.stack(out), folder_labels(base, paths)


def folder_labels(base: Path, paths: list[Path]) -> torch.Tensor | None:
    """ImageFolder's labels for ``paths`` below ``base``: the index of each one's class folder (the first
    folder below ``base``) among the sorted class folders; None when an image lies directly in ``base``."""
    classes = [p.relative_to(base).parts[0] if len(p.relative_to(base).parts) > 1 else None for p in paths]
    if None in classes:
        return None
    index = {name: i for i, name in enumerate(sorted(set(classes)))}
    return torch.tensor([index[c] for c in classes], dtype=torch.int64)


@hookimpl
def zoo_register_datasets(register):
    register("mnist", mnist, channels=1, image_size=28, description="MNIST handwritten digits, 28x28 grayscale",
             extractor="mnist", num_classes=10)  # zoo's MNIST classifier was trained on these digits
    register("fashion-mnist", fashion_mnist, channels=1, image_size=28,
             description="Fashion-MNIST clothing, 28x28 grayscale (Debian: dataset-fashion-mnist)", num_classes=10)
    register("cifar10", cifar10, channels=3, image_size=32, description="CIFAR-10 natural images, 32x32 RGB",
             num_classes=10)
    register("folder", folder, channels=3, image_size=64, splits=("train", "test", "all"),
             description="every image below data.root (or data.root/<split>), RGB; one subfolder per class "
                         "gives labels")

"""The built-in feature extractors of the evaluation harness: zoo's MNIST classifier and Inception-v3.

Both are torch-fidelity feature extractors (:class:`torch_fidelity.FeatureExtractorBase`); the MNIST
one is registered with torch-fidelity's own registry as ``zoo-mnist``, so
``torch_fidelity.calculate_metrics(..., feature_extractor="zoo-mnist")`` works as well. zoo exposes them
as the extractors ``mnist`` and ``inception`` through the ``zoo_register_extractors`` hook in
``plugins/extractors.py``; a third-party extractor is registered the same way. ``load_extractor`` builds a
registered one, ``layer`` names its layer for a metric, ``extract_features`` runs it over uint8 images.

Besides torch-fidelity's interface the harness (``zoo/evaluate.py``) reads five optional attributes
of an extractor instance:

``input_channels``  1 or 3 -- images are converted to this many channels (uint8) before ``forward``
``input_size``      the side images are cropped/resized to; ``None`` keeps the reference's size
``weights_id``      a short hash of the weights, part of the reference-statistics cache key
``trained_on``      which images trained the weights (dataset, split, holdout, indices hash), or None
``made_for``        the dataset names a specialised extractor was made for (``("mnist",)``); ``zoo eval``
                    warns when it scores other data (unless that dataset declares it). None or absent:
                    general-purpose (Inception), never warned about
"""
from __future__ import annotations

import functools
import hashlib
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from .errors import ZooError

MNIST_WEIGHTS = Path(__file__).parent / "assets" / "mnist_cnn.pt"
MNIST_ARCH = "zoo-mnist-cnn-v1"
INCEPTION_FILE = URL_INCEPTION_V3.rsplit("/", 1)[1]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def indices_sha256(indices: torch.Tensor) -> str:
    """Hash of a set of image indices (int64, sorted), recorded with the weights they trained."""
    return hashlib.sha256(indices.to(torch.int64).sort().values.numpy().tobytes()).hexdigest()


# --- the MNIST classifier ----------------------------------------------------------------
class MnistCNN(nn.Module):
    """A small LeNet/VGG-style classifier for 28x28 digits: uint8 ``(B, 1, 28, 28)`` in, 128-d features
    and 10 logits out. Three 3x3 conv layers (28 -> 14 -> 7), then the 128-d feature layer that
    FID/KID/precision-recall use; its softmax feeds the Inception Score. ~2.3M multiply-adds per image,
    so scoring 10k images takes seconds on a CPU."""

    def __init__(self, width: int = 16, features: int = 128):
        super().__init__()

        def conv(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        w = width
        self.body = nn.Sequential(*conv(1, w), nn.MaxPool2d(2), *conv(w, 2 * w), nn.MaxPool2d(2),
                                  *conv(2 * w, 4 * w), nn.Flatten())
        self.features = nn.Sequential(nn.Linear(4 * w * 7 * 7, features), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(features, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (x.float() / 255.0 - 0.1307) / 0.3081  # MNIST mean/std
        f = self.features(self.body(x))
        return f, self.head(self.dropout(f))


def load_mnist_weights(path: str | Path | None = None) -> tuple[MnistCNN, dict]:
    """The classifier and its metadata from a file written by ``zoo eval-net train``."""
    path = Path(path) if path is not None else MNIST_WEIGHTS
    if not path.is_file():
        raise ZooError(f"MNIST classifier weights '{path}' not found -- pass a file written by "
                       f"`zoo eval-net train --out PATH` (or reinstall zoo for the shipped zoo/assets/mnist_cnn.pt)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta = dict(blob["meta"])
        if meta.get("arch") != MNIST_ARCH:
            raise ValueError(f"arch {meta.get('arch')!r} is not {MNIST_ARCH!r}")
        net = MnistCNN(**meta["net"])
        net.load_state_dict(blob["state_dict"])
    except Exception as e:  # noqa: BLE001 - any malformed file is one clear line
        raise ZooError(f"'{path}' is not MNIST classifier weights from `zoo eval-net train` "
                       f"({type(e).__name__}: {str(e).strip().splitlines()[0][:150] if str(e).strip() else ''})"
                       ) from None
    return net.eval(), meta


class MnistFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor around :class:`MnistCNN`: ``features`` (128-d, for FID, KID and
    precision/recall) and ``logits`` (10 classes, for the Inception Score). Input: uint8
    ``(B, 1, 28, 28)`` (3 equal channels are accepted and averaged)."""

    input_channels = 1
    input_size = 28
    made_for = ("mnist",)

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        path = Path(feature_extractor_weights_path) if feature_extractor_weights_path else MNIST_WEIGHTS
        self.net, self.meta = load_mnist_weights(path)
        self.feature_scale = float(self.meta.get("feature_scale", 1.0))
        self.weights_path = str(path)
        self.weights_id = file_sha256(path)[:16]
        self.trained_on = {k: self.meta.get(k) for k in ("dataset", "split", "holdout", "part", "n_train",
                                                          "indices_sha256")}
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list():
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return True

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)

    def forward(self, x):
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting image as torch.Tensor with dtype=torch.uint8")
        vassert(x.dim() == 4 and x.shape[1] in (1, 3) and tuple(x.shape[2:]) == (28, 28),
                f"Input is not Bx1x28x28: {tuple(x.shape)}")
        if x.shape[1] == 3:
            x = x.float().mean(1, keepdim=True)
        feats, logits = self.net(x)
        out = {"features": feats.float() * self.feature_scale, "logits": logits.float()}
        return tuple(out[k] for k in self.features_list)


if "zoo-mnist" not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor("zoo-mnist", MnistFeatureExtractor)


def mnist_extractor(weights: str | None = None) -> MnistFeatureExtractor:
    """Factory behind ``--extractor mnist`` (``weights``: a file from ``zoo eval-net train``)."""
    return MnistFeatureExtractor("zoo-mnist", ["features", "logits"], feature_extractor_weights_path=weights)


# --- Inception-v3 (torch-fidelity's port of the TF FID network) -----------------------------
def inception_weights_path(weights: str | None = None) -> Path:
    """A local file holding torch-fidelity's Inception weights: ``weights``, else torch's hub cache
    (downloaded there unless offline). Raises one clear ZooError when there is none."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ZooError(f"--inception-weights '{weights}' does not exist (pass the file {INCEPTION_FILE} "
                           f"from {URL_INCEPTION_V3})")
        return path
    from .data import offline
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached
    need = (f"the Inception extractor needs {INCEPTION_FILE} (torch-fidelity's inception-v3-compat, "
            f"{URL_INCEPTION_V3}) in {cached.parent}")
    fix = (f"download it on a machine with network and pass --inception-weights PATH (or copy it to "
           f"{cached.parent}), or use --extractor mnist")
    if offline():
        raise ZooError(f"{need}, and downloads are off (ZOO_OFFLINE=1) -- {fix}")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(URL_INCEPTION_V3, str(cached), progress=False)
    except Exception as e:  # noqa: BLE001 - no network, proxy, disk full: one line
        cached.unlink(missing_ok=True)
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        raise ZooError(f"{need}, and the download failed ({type(e).__name__}: {reason}) -- {fix}") from None
    return cached


def inception_extractor(weights: str | None = None) -> FeatureExtractorInceptionV3:
    """Factory behind ``--extractor inception``: torch-fidelity's ``inception-v3-compat`` (the network
    behind published FID/IS numbers), 2048-d pool features and unbiased logits for IS."""
    path = inception_weights_path(weights)
    try:  # check the file safely first: torch-fidelity itself loads it with weights_only=False
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "fc.weight" not in state:
            raise ValueError("no 'fc.weight' entry")
        ext = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                          feature_extractor_weights_path=str(path))
    except Exception as e:  # noqa: BLE001
        raise ZooError(f"'{path}' is not torch-fidelity's Inception weights {INCEPTION_FILE} "
                       f"({type(e).__name__}: {str(e).strip().splitlines()[0][:150] if str(e).strip() else ''}) "
                       f"-- pass the file from {URL_INCEPTION_V3} with --inception-weights PATH") from None
    ext.input_channels, ext.input_size = 3, None
    ext.weights_id = file_sha256(path)[:16]
    ext.trained_on = None
    return ext


# --- training the MNIST classifier (`zoo eval-net train`) -------------------------------------
def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Small random affine jitter of a float batch: rotation +-10 deg, scale 0.9-1.1, shear +-0.1,
    shift +-2 px -- digits stay digits."""
    b = x.shape[0]

    def u(lo, hi):
        return torch.rand(b, generator=generator) * (hi - lo) + lo

    angle, scale, shear = u(-10, 10) * math.pi / 180, u(0.9, 1.1), u(-0.1, 0.1)
    tx, ty = u(-2, 2) * 2 / x.shape[-1], u(-2, 2) * 2 / x.shape[-2]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    net.eval()
    device = next(net.parameters()).device
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = net(images[i:i + batch_size].to(device))[1]
        correct += int((logits.argmax(1).cpu() == labels[i:i + batch_size]).sum())
    return correct / len(images)


@torch.no_grad()
def feature_scale(net: MnistCNN, images: torch.Tensor, batch_size: int = 1000) -> float:
    """The factor that gives the 128-d features a mean square of 1 on ``images`` (the training images), so
    their scale is like Inception's and KID's polynomial kernel stays in its usual range."""
    net.eval()
    device = next(net.parameters()).device
    total = sum(float(net(images[i:i + batch_size].to(device))[0].double().pow(2).sum())
                for i in range(0, len(images), batch_size))
    return round(1.0 / math.sqrt(total / (len(images) * net.head.in_features)), 6)


def training_data(data: str = "auto", root: str | None = None, echo=print) -> dict:
    """Train/validation images for the classifier. ``train``: MNIST's 60k training split, validated on
    the 10k test split. ``test-holdout``: the seeded 9k slice of the test split (``data.split=test``,
    ``data.holdout=1000``, part ``train``), validated on the held-out 1k. ``auto``: ``train`` where the
    training split exists, else ``test-holdout`` (and says so)."""
    from .config import Config
    from .data import holdout_split, load_images
    base = {"name": "mnist", "root": root, "download": True, "limit": None}
    if data not in ("auto", "train", "test-holdout"):
        raise ZooError(f"--data {data!r} is not one of auto, train, test-holdout")
    if data in ("auto", "train"):
        try:
            x, y = load_images(Config({**base, "split": "train", "holdout": 0}), "all", with_labels=True)
            vx, vy = load_images(Config({**base, "split": "test", "holdout": 0}), "all", with_labels=True)
            return {"x": x, "y": y, "vx": vx, "vy": vy, "split": "train", "holdout": 0, "part": "all",
                    "indices": torch.arange(len(x)), "validation": "mnist test split (10000 images)"}
        except ZooError:
            if data == "train":
                raise
            echo("MNIST's training split was not found under the data root: training on the seeded "
                 "9,000-image slice of the test split (data.split=test, data.holdout=1000), validating on the "
                 "1,000 held-out images")
    cfg = Config({**base, "split": "test", "holdout": 1000})
    x, y = load_images(cfg, "train", with_labels=True)
    vx, vy = load_images(cfg, "holdout", with_labels=True)
    if y is None or vy is None:
        raise ZooError("MNIST labels (t10k-labels-idx1-ubyte) not found next to the images -- the classifier "
                       "needs them")
    n_split = len(x) + len(vx)
    return {"x": x, "y": y, "vx": vx, "vy": vy, "split": "test", "holdout": 1000, "part": "train",
            "indices": holdout_split(n_split, 1000)[0],
            "validation": "mnist test split, the 1000 held-out images (data.holdout=1000)"}


def train_mnist_classifier(out: str | Path, *, data: str = "auto", root: str | None = None, steps: int = 2000,
                           batch_size: int = 128, lr: float = 3e-3, seed: int = 0, device: str = "cpu",
                           echo=print, progress: bool = False, command: str = "") -> dict:
    """Train :class:`MnistCNN` (deterministic for a seed on a given machine and thread count) and write
    ``out``: ``{"state_dict": ..., "meta": {...}}`` (primitives only, loads with ``weights_only=True``).
    Returns the metadata (validation accuracy included)."""
    from tqdm.auto import tqdm
    from . import __version__
    d = training_data(data, root, echo)
    if d["y"] is None:
        raise ZooError("MNIST labels not found next to the images -- the classifier needs them")
    torch.manual_seed(seed)
    dev = torch.device(device)
    net = MnistCNN().to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(seed)
    x, y, n = d["x"], d["y"], len(d["x"])
    order, pos = torch.randperm(n, generator=g), 0
    t0 = time.perf_counter()
    net.train()
    for _ in tqdm(range(steps), desc="training mnist classifier", unit="step", disable=not progress):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        xb = augment(x[idx].float(), g).round_().clamp_(0, 255).to(torch.uint8)
        logits = net(xb.to(dev))[1]
        loss = F.cross_entropy(logits, y[idx].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    acc = accuracy(net, d["vx"], d["vy"])
    scale = feature_scale(net, x)
    meta = {"arch": MNIST_ARCH, "net": {"width": 16, "features": 128},
            "dataset": "mnist", "split": d["split"], "holdout": d["holdout"], "part": d["part"],
            "n_train": n, "indices_sha256": indices_sha256(d["indices"]),
            "validation": d["validation"], "val_accuracy": round(acc, 5), "feature_scale": scale,
            "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr, "train_seconds": round(seconds, 1),
            "device": str(dev), "threads": torch.get_num_threads(), "torch": str(torch.__version__),
            "zoo": str(__version__),
            "date": time.strftime("%Y-%m-%d"), "command": command}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    tmp = out.with_name(out.name + ".tmp")
    torch.save({"state_dict": state, "meta": meta}, tmp)
    tmp.replace(out)
    return meta


# --- loading a registered extractor, and features of images ------------------------------------------
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


def device_of(ext) -> torch.device:
    for t in list(ext.parameters()) + list(ext.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def extract_features(ext, images: torch.Tensor, size: int | None, batch_size: int = 256, progress: bool = False,
                     desc: str = "features") -> dict[str, torch.Tensor]:
    """Every layer ``ext`` computes, for uint8 ``images``, as float32 CPU tensors ``(N, D)``."""
    from .images import to_extractor_input
    from .progress import Heartbeat
    device = device_of(ext)
    channels = int(getattr(ext, "input_channels", 3))
    out: dict[str, list] = {k: [] for k in ext.get_requested_features_list()}
    with Heartbeat(len(images), desc, "img", show=progress) as bar, \
            torch.autocast(device.type, enabled=False):
        for i in range(0, len(images), batch_size):
            x = to_extractor_input(images[i:i + batch_size], channels, size).to(device, non_blocking=True)
            for k, v in ext.convert_features_tuple_to_dict(ext(x)).items():
                out[k].append(v.float().cpu())
            bar.update(len(x))
    return {k: torch.cat(v) for k, v in out.items()}

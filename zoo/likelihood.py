"""Likelihood in bits per dimension: the ``--nll`` part of the evaluation harness.

A model that implements :meth:`zoo.ZooModel.log_likelihood` (log P of each 8-bit image, in nats, exact
or a lower bound) is scored on held-out real images::

    bits_per_dim = -mean_i(nats_i) / (D ln 2),   D = the dataset's native C*H*W (before any padding)

so a model that spreads its probability uniformly over the 256 levels of every pixel scores exactly 8.
The images are fed exactly as training feeds them (model range, native size or zero-padded); a padded
model's log P covers its padding pixels too, which only lowers the bound, and D stays the native count
so bits/dim compare across models that pad and models that do not. Runs that resize or change the
number of channels are refused: their inputs are no longer the dataset's 8-bit images.

Which images: the run's held-out images (``data.holdout``) when it has them; else the dataset's test
split when the run trains on another split; else its training images, with a warning (optimistic).
"""
from __future__ import annotations

import math
import time
import warnings as _warnings

import torch

from .errors import ZooError
from .progress import Heartbeat

NLL_KEYS = ("bits_per_dim", "bits_per_dim_bound", "bits_per_dim_bounds", "nll_n", "nll_seconds", "nll_images")


def bits_per_dim(nats: torch.Tensor, dims: int) -> float:
    """-mean(nats) / (dims ln 2): the negative log-likelihood per dimension, in bits."""
    return float(-nats.double().mean() / (dims * math.log(2)))


def likelihood_images(cfg) -> tuple[torch.Tensor, str, str | None]:
    """The real images a run's likelihood is measured on (uint8), what they are, and a warning (or None)
    when they are not held out from training: the run's ``data.holdout`` images; else the dataset's test
    split when the run trains on another; else its training images."""
    from .config import Config
    from .data import load_images
    from .registry import registry
    data = Config(dict(cfg["data"]))   # a run's resolved data section
    entry = registry().dataset(data.name)
    split, limit = data.get("split", "train"), data.get("limit")
    if data.get("holdout"):
        images = load_images(Config({**data, "limit": None}), "holdout")
        return images, f"{data.name} {split} split, the {len(images)} held-out images", None
    if split != "test" and "test" in entry.splits:
        return load_images(Config({**data, "split": "test", "holdout": 0, "limit": None}), "all"), \
            f"{data.name} test split (the run trains on its {split} split)", None
    what = f"{data.name} {split} split{f', first {limit}' if limit else ''} (the training images)"
    return load_images(data, "train"), what, (
        f"likelihood measured on the training images ({what}): the run holds none out, so bits/dim is "
        f"optimistic -- train with data.holdout=N to measure it on unseen images")


def check_native_input(model, images: torch.Tensor) -> None:
    """Refuse runs whose model input is not the dataset's 8-bit images (resized, or channels changed)."""
    c, h, w = (int(s) for s in images.shape[1:])
    channels, size, _ = model.image_shape
    resize = model.cfg["data"].get("resize", "pad")
    if channels != c:
        raise ZooError(f"--nll: the run maps {c}-channel images to {channels} channels, so its inputs are not the "
                       f"dataset's 8-bit images and bits/dim would not be a likelihood of them")
    if (h, w) != (size, size) and not (resize == "pad" and size >= h and size >= w):
        raise ZooError(f"--nll: the run resizes {h}x{w} images to {size}x{size}, so its inputs are not the "
                       f"dataset's 8-bit images and bits/dim would not be a likelihood of them (train at "
                       f"data.image_size={max(h, w)} or pad with data.resize=pad)")


def evaluate_likelihood(model, cfg=None, *, n: int | None = None, seed: int = 0, batch_size: int = 256,
                        options=None, progress: bool = False) -> dict:
    """``bits_per_dim`` of the run's held-out images under ``model`` (see the module docstring).

    Returns ``bits_per_dim`` (float, or None when the model has no ``log_likelihood``),
    ``bits_per_dim_bound`` (``exact`` / ``elbo`` / ``iwae-K`` / ``vlb``), ``bits_per_dim_bounds`` (every
    bound the model reported, by name), ``nll_n`` (images), ``nll_seconds``, ``nll_images`` (which
    images), ``nll_dims`` (D), ``nll_options`` and ``warnings``. ``n``: use the first n images
    (default: all of them); ``options``: the model's ``likelihood_options``; ``progress``: a bar on a
    terminal, else a line on stderr every 30 s, with the ETA (:class:`zoo.progress.Heartbeat`).
    """
    from .contract import check_likelihood_options, has_log_likelihood
    from .data import to_model_input
    cfg = cfg if cfg is not None else model.cfg
    name = cfg.get("model_name") or type(model).__name__
    out = {k: None for k in NLL_KEYS}
    out.update(nll_options=dict(options or {}), warnings=[])
    if not has_log_likelihood(model):
        out["nll_note"] = f"model '{name}' defines no likelihood (it does not implement log_likelihood)"
        return out
    options = check_likelihood_options(model, options or {})
    images, described, warning = likelihood_images(cfg)
    if n is not None:
        if int(n) < 1:
            raise ZooError(f"--nll-n {n}: give at least 1 image")
        images = images[: int(n)]
    check_native_input(model, images)
    dims = int(images[0].numel())
    device = model.device
    g = torch.Generator(device=device).manual_seed(int(seed))
    channels, size, _ = model.image_shape
    was_training = model.training
    model.eval()
    nats, also, bound = [], {}, None
    t0 = time.perf_counter()
    try:
        with torch.no_grad(), Heartbeat(len(images), "log-likelihood", "img", show=progress) as bar:
            for i in range(0, len(images), batch_size):
                x = to_model_input(images[i:i + batch_size], size, channels, model.data_range, "pad").to(device)
                bar.doing(len(x))
                r = model.log_likelihood(x, generator=g, **options)
                got, bound = _check_result(r, len(x), name, bound)
                nats.append(got)
                for k, v in (r.get("also") or {}).items():
                    also.setdefault(str(k), []).append(_nats(v, len(x), name, f"also[{k!r}]"))
                bar.update(len(x))
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - t0
    nats = torch.cat(nats)
    if not bool(torch.isfinite(nats).all()):
        raise ZooError(f"model '{name}': log_likelihood returned non-finite values for "
                       f"{int((~torch.isfinite(nats)).sum())} of {len(nats)} images")
    warnings = [warning] if warning else []
    positive = int((nats > 1e-3).sum())
    if positive:
        warnings.append(f"model '{name}': log_likelihood gave {positive} of {len(nats)} images a log-probability "
                        f"above 0, impossible for a discrete image (P <= 1) -- a continuous density needs "
                        f"dequantising (zoo.contract.uniform_dequantize)")
    for w in warnings:
        _warnings.warn(w, stacklevel=2)
    bounds = {bound: bits_per_dim(nats, dims)}
    bounds.update({k: bits_per_dim(torch.cat(v), dims) for k, v in also.items() if k != bound})
    out.update(bits_per_dim=bounds[bound], bits_per_dim_bound=bound, bits_per_dim_bounds=bounds,
               nll_n=len(nats), nll_seconds=round(seconds, 3), nll_images=described, nll_dims=dims,
               nll_options=options, warnings=warnings)
    return out


def _nats(v, b: int, name: str, what: str) -> torch.Tensor:
    if not torch.is_tensor(v) or tuple(v.shape) != (b,):
        shape = tuple(v.shape) if torch.is_tensor(v) else type(v).__name__
        raise ZooError(f"model '{name}': log_likelihood must return {what} as a ({b},) tensor of nats, got {shape}")
    return v.detach().double().cpu()


def _check_result(r, b: int, name: str, previous: str | None) -> tuple[torch.Tensor, str]:
    if not isinstance(r, dict) or "nats" not in r or "bound" not in r:
        raise ZooError(f"model '{name}': log_likelihood must return a dict with 'nats' and 'bound', "
                       f"got {type(r).__name__}")
    bound = str(r["bound"])
    if previous is not None and bound != previous:
        raise ZooError(f"model '{name}': log_likelihood changed its bound from {previous!r} to {bound!r} "
                       "between batches")
    return _nats(r["nats"], b, name, "'nats'"), bound

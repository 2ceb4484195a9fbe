"""The memorisation check of `zoo compare`: which training image is nearest to each sample?

A generative model that copies its training images scores well on FID. Looking at a few samples next to
their nearest training images -- nearest in the feature extractor's space, the one precision/recall use --
shows copies at a glance; the distances, set against the typical distance between neighbouring training
images, say it in numbers. The reference features the evaluation harness caches are reused when they
hold every training image.
"""
from __future__ import annotations

import json
import math

import torch

_TRAIN_FEATURES: dict = {}   # (reference key, extractor) -> features of every training image (one compare run)


def nearest_training_images(images: torch.Tensor, cfg, *, extractor: str | None = None, device=None,
                            use_cache: bool = True) -> dict:
    """For each image (float in [0, 1] or uint8), its nearest training image of run config ``cfg`` in the
    extractor's feature space (the layer precision/recall uses; L2 distance).

    Returns ``indices`` (into the training images, in the order the reference loads them), ``distances``,
    ``typical_distance`` (median distance from a training image to its nearest *other* training image:
    a copy of a training image sits far below it), ``searched`` (how many training images), and the
    images themselves (``images``, ``neighbours``: uint8, the training images' geometry). The reference
    features the harness caches are reused when they hold every training image (checked against a few
    recomputed ones); otherwise, or with ``use_cache=False``, every training image's features are
    extracted once per process.
    """
    from .evaluate import pick_device
    from .extractors import extract_features, layer, load_extractor
    from .images import as_uint8_images, to_extractor_input
    from .references import default_extractor, reference_for_config
    ref = reference_for_config(cfg)
    name = extractor or default_extractor(ref)
    ext = load_extractor(name, None, str(pick_device(device)))
    feature_layer = layer(ext, "prc")
    train_images, _ = ref.load()
    size = getattr(ext, "input_size", None) or int(train_images.shape[-1])
    key = (json.dumps(ref.key, sort_keys=True), name, use_cache)
    if key not in _TRAIN_FEATURES:
        feats = _cached_training_features(ref, ext, name, train_images, size, feature_layer) if use_cache else None
        if feats is None:
            feats = extract_features(ext, train_images, size)[feature_layer]
        _TRAIN_FEATURES.clear()  # one training set at a time: bounded memory
        _TRAIN_FEATURES[key] = feats
    feats = _TRAIN_FEATURES[key]
    queries = as_uint8_images(images)
    mine = extract_features(ext, queries, size)[feature_layer]
    dist = torch.cdist(mine.double(), feats.double())
    d, idx = dist.min(1)
    probe = torch.randperm(len(feats), generator=torch.Generator().manual_seed(0))[:256]
    among = torch.cdist(feats[probe].double(), feats.double())
    among[torch.arange(len(probe)), probe] = math.inf
    typical = float(among.min(1).values.median())
    c, h = int(train_images.shape[1]), int(train_images.shape[-1])
    return {"indices": idx.tolist(), "distances": [round(float(v), 4) for v in d], "typical_distance": typical,
            "searched": len(feats), "extractor": name, "images": to_extractor_input(queries, c, h),
            "neighbours": train_images[idx]}


def _cached_training_features(ref, ext, name, train_images, size, feature_layer):
    """The harness's cached reference features, put back in the training images' order through the kept
    subset's indices the cache stores, when they cover every image and a few recomputed ones match; else None."""
    from .extractors import extract_features
    from .references import reference_stats
    stats = reference_stats(ref, ext, name)
    cached = (stats.get("features") or {}).get(feature_layer)
    order = stats.get("keep")
    n = len(train_images)
    if cached is None or order is None or int(stats.get("n", -1)) != n or len(cached) != n or len(order) != n:
        return None
    check = extract_features(ext, train_images[order[:4]], size)[feature_layer]
    if not torch.allclose(check, cached[:4], rtol=1e-3, atol=1e-4):
        return None
    feats = torch.empty_like(cached)
    feats[order] = cached
    return feats

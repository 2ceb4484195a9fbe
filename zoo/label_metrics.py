"""Metrics that judge conditioning: label accuracy and intra-class FID (registered in zoo/metrics.py).

Both need the class each sample was asked for (``needs`` holds ``labels``: the harness passes a conditional
run's requested labels; for other samples these metrics do not apply and are omitted) and real images with
their true labels: the run's held-out images (:func:`labelled_real`).

* ``label_accuracy``: the share of samples that the dataset's classifier (the ``mnist`` extractor's logits,
  where it suits the data, as for mode coverage) assigns to the requested class. The same classifier on the
  held-out images with their true labels gives ``label_accuracy_real``, the ceiling it is read against.
* ``intra_fid``: FID of each class's samples against that class's held-out images, in the evaluation's
  extractor's FID layer, averaged over the classes (``intra_fid_per_class`` keeps each one). With about
  100 held-out images per class (1,000 held-out digits) it is noisy and biased high: compare it only
  between runs scored with the same n and the same held-out images.

Imports no torch at import time; the held-out images' features are computed once per process and extractor.
"""
from __future__ import annotations

import json

__all__ = ["intra_fid", "intra_fid_rows", "label_accuracy", "label_rows", "labelled_real"]

_MEMO: dict = {}   # the labelled real images and their features, per data settings and extractor (one process)


def labelled_real(cfg) -> tuple:
    """``(images uint8, labels int64, what they are, warning or None)``: the run's held-out images
    (``data.holdout``); else the dataset's test split when the run trains on another; else its training
    images (with a warning: optimistic). ``cfg``: a run's config or its ``data`` section."""
    from .config import BASE, Config, defaults
    from .data import load_images
    from .errors import ZooError
    from .registry import registry
    data = Config({**defaults(BASE["data"]), **dict(cfg["data"] if "data" in cfg else cfg)})
    key = ("images", _key(data))
    if key in _MEMO:
        return _MEMO[key]
    split, warning = data.get("split", "train"), None
    if data.get("holdout"):
        images, labels = load_images(Config({**data, "limit": None}), "holdout", with_labels=True)
        what = f"the {len(images)} held-out images of {data.name} {split}"
    elif split != "test" and "test" in registry().dataset(data.name).splits:
        images, labels = load_images(Config({**data, "split": "test", "holdout": 0, "limit": None}), "all",
                                     with_labels=True)
        what = f"{data.name} test split (the run trains on its {split} split)"
    else:
        images, labels = load_images(data, "train", with_labels=True)
        what = f"the {len(images)} training images of {data.name} {split}"
        warning = (f"conditioning judged against the training images ({what}): the run holds none out, so "
                   f"label accuracy's ceiling and intra-class FID are optimistic -- train with data.holdout=N")
    if labels is None:
        raise ZooError(f"dataset '{data.name}' has no labels: label accuracy and intra-class FID need real images "
                       f"with their classes")
    _MEMO[key] = (images, labels, what, warning)
    return _MEMO[key]


def _key(data) -> str:
    from .data import data_root
    return json.dumps({**{k: data.get(k) for k in ("name", "split", "holdout", "limit")}, "root": str(data_root(data))},
                      sort_keys=True, default=str)


def _real_features(x, ext, name: str, size: int | None) -> tuple:
    """``(features {layer: (M, D)}, labels, what)`` of the labelled real images through ``ext`` (memoised)."""
    from .extractors import extract_features
    images, labels, what, warning = labelled_real(x.config)
    if warning and warning not in x.warnings:
        x.warn(warning)
    key = ("features", id(images), name, str(getattr(ext, "weights_id", "")), size)   # images live in _MEMO
    if key not in _MEMO:
        _MEMO[key] = extract_features(ext, images, getattr(ext, "input_size", None) or size or int(images.shape[-1]),
                                      int(getattr(x.settings, "batch_size", 256)), False, desc="held-out features")
    return _MEMO[key], labels, what


def _no_config(what: str) -> dict:
    return {f"{what}_note": f"{what.replace('_', ' ')} not measured: no run config says which real images "
                            f"(with labels) to judge against"}


def label_accuracy(x) -> dict:
    """The share of samples the classifier assigns to the class asked for, the per-class shares, and the
    same classifier's accuracy on the labelled real images (the ceiling)."""
    from .metrics import MODE_CLASSIFIER, class_logits, classifier
    clf, why = classifier(x)
    if clf is None:
        return {"label_accuracy_note": f"label accuracy not measured: {why}"}
    y = x.labels.cpu()
    asked = y >= 0                       # -1: an unconditional sample (null label) asks for no class
    hit = class_logits(x, clf).argmax(1) == y
    per_class = [round(float(hit[y == c].double().mean()), 4) if bool((y == c).any()) else None
                 for c in range(int(y.max()) + 1)] if bool(asked.any()) else []
    out = {"label_accuracy": float(hit[asked].double().mean()) if bool(asked.any()) else None,
           "label_accuracy_per_class": per_class, "label_classifier": MODE_CLASSIFIER}
    if x.config is None:
        return {**out, **_no_config("label_accuracy_real")}
    from .extractors import layer
    feats, labels, what = _real_features(x, clf, MODE_CLASSIFIER, None)
    real = feats[layer(clf, "isc")].argmax(1) == labels
    return {**out, "label_accuracy_real": float(real.double().mean()), "label_accuracy_real_images": what}


def intra_fid(x) -> dict:
    """FID of each requested class's samples against the real images of that class (the evaluation's
    extractor, FID layer), and their mean over the classes both sides have at least 2 images of."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
    if x.config is None:
        return _no_config("intra_fid")
    fid_layer = x.layer("fid")
    feats, labels, what = _real_features(x, x.extractor, x.extractor_name, x.reference.get("image_size"))
    real, fake, y = feats[fid_layer].double(), x.sample("fid").double(), x.labels.cpu()
    per_class, counts = [], []
    for c in range(int(max(int(y.max()), int(labels.max()))) + 1):
        a, b = fake[y == c], real[labels == c]
        counts.append([len(a), len(b)])
        if len(a) < 2 or len(b) < 2:
            per_class.append(None)
            continue
        stats = [fid_features_to_statistics(f) for f in (a, b)]
        per_class.append(round(float(fid_statistics_to_metric(*stats, False)[KEY_METRIC_FID]), 4) + 0.0)  # no -0.0
    scored = [v for v in per_class if v is not None]
    if not scored:
        return {"intra_fid_note": "intra-class FID not measured: no class has 2 or more images on both sides"}
    return {"intra_fid": sum(scored) / len(scored), "intra_fid_per_class": per_class, "intra_fid_classes": len(scored),
            "intra_fid_images": counts, "intra_fid_real_images": what}


def label_rows(r: dict) -> list:
    """``label acc  0.962 (real 0.991)``: the samples' accuracy next to the real images' ceiling."""
    if r.get("label_accuracy") is None:
        return [("label acc", f"— ({r['label_accuracy_note']})")] if r.get("label_accuracy_note") else []
    real = r.get("label_accuracy_real")
    return [("label acc", f"{r['label_accuracy']:.3f}" + (f" (real {real:.3f})" if real is not None else ""))]


def intra_fid_rows(r: dict) -> list:
    if r.get("intra_fid") is None:
        return [("intra-FID", f"— ({r['intra_fid_note']})")] if r.get("intra_fid_note") else []
    real = [b for _, b in r.get("intra_fid_images") or []]
    return [("intra-FID", f"{r['intra_fid']:.3f} (mean over {r['intra_fid_classes']} classes; "
                          f"{min(real)}-{max(real)} real images per class)")]

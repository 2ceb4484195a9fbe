"""Metrics, declared once: what each needs, what it computes, and how its numbers read.

A metric is a :class:`~zoo.scores.Metric` -- its name, what it needs (``NEEDS``), a ``compute`` function,
and its result keys as :class:`~zoo.scores.Score` declarations (label, direction, decimals; zoo/scores.py
holds these light declaration types, re-exported here). Plugins add metrics through
the ``zoo_register_metrics`` hook; zoo's own (``BUILTIN`` below) are registered the same way by
``zoo_plugins.metrics``. Everything that shows a number reads these declarations: ``zoo eval`` (its
table, ``--json``, the ``--metrics`` choices), ``zoo compare`` (the metrics it scores and the row it
keeps), and the leaderboard files and report.html (columns, headers, cells). Adding a metric is one
:class:`Metric` in one place.

The maths is torch-fidelity's where it has it (FID, IS, KID, precision/recall); density/coverage
(Naeem et al. 2020) and mode coverage are computed here, label accuracy and intra-class FID (metrics of
conditional runs' samples, which carry the labels asked for) in zoo/label_metrics.py. This module imports no
torch at import time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from .errors import ZooError, did_you_mean
from .label_metrics import intra_fid, intra_fid_rows, label_accuracy, label_rows
from .scores import ABSENT, NEEDS, Metric, Score, fmt

__all__ = ["ABSENT", "BUILTIN", "NEEDS", "Inputs", "Metric", "Score", "fmt", "parse_metrics", "registered"]

FID_FLOOR = 256          # FID wants >= max(2 x feature dimension, FID_FLOOR) images on each side (docs/evaluation.md)
MODE_MIN_SHARE = 0.02    # a class counts as a covered mode with >= 2% of the samples (a fifth of its fair 10%)
MODE_CLASSIFIER = "mnist"
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
PRC_NEIGHBORHOOD = 3
DC_NEIGHBORHOOD = 5      # density/coverage: k nearest neighbours (Naeem et al. 2020 use k = 5)


@dataclass
class Inputs:
    """What a metric's ``compute`` gets. ``sample(m)`` / ``real(m)``: the samples' / the reference's
    features at the extractor's layer for torch-fidelity metric ``m`` (``fid``, ``isc``, ``kid``, ``prc``);
    ``labels``: the class each sample was asked for (a conditional run's samples; a metric that
    ``needs`` them is computed only then); ``warn(text)`` adds a one-line note to the result's warnings."""
    settings: Any = None            # the evaluation's settings (zoo.evaluate.EvalSpec: seed, batch_size, ...)
    images: Any = None              # uint8 (N, C, H, W) samples
    features: dict = field(default_factory=dict)   # {layer: (N, D) float32}: every layer the extractor computes
    reference: dict = field(default_factory=dict)  # the reference: mu, sigma, features (a seeded subset), n, ...
    extractor: Any = None           # the torch-fidelity FeatureExtractorBase
    extractor_name: str = ""
    dataset: str | None = None      # the reference's dataset, where it has one
    warnings: list = field(default_factory=list)
    model: Any = None               # for a metric that needs the model: the model
    config: Any = None              # the run's config (its data section: held-out images and their labels)
    labels: Any = None              # int64 (N,): the class each sample was asked for (conditional runs), else None

    @property
    def n(self) -> int:
        return len(self.images)

    @property
    def seed(self) -> int:
        return int(getattr(self.settings, "seed", 0))

    def layer(self, metric: str) -> str:
        from .extractors import layer
        return layer(self.extractor, metric)

    def sample(self, metric: str):
        return self.features[self.layer(metric)]

    def real(self, metric: str):
        return self.reference["features"][self.layer(metric)]

    def warn(self, text: str) -> None:
        self.warnings.append(text)



# --- the registered metrics -----------------------------------------------------------------------
def registered() -> dict[str, Metric]:
    from .registry import registry
    return registry().metrics


def sample_metrics() -> dict[str, Metric]:
    return {k: m for k, m in registered().items() if m.on_samples}


def default_metrics() -> tuple[str, ...]:
    """The metrics computed when none are chosen (``default=True``), in registration order."""
    return tuple(k for k, m in sample_metrics().items() if m.default)


def in_table_order() -> list[Metric]:
    """Metrics on samples first, then those of the model (the likelihood), each in registration order."""
    ms = list(registered().values())
    return [m for m in ms if m.on_samples] + [m for m in ms if not m.on_samples]


def result_keys() -> tuple[str, ...]:
    """Every result key of every registered metric (None in a result where not measured)."""
    return tuple(s.key for m in registered().values() for s in m.scores)


def parse_metrics(metrics, allow_empty: bool = False) -> tuple[str, ...]:
    """``"fid,is"`` or a sequence -> a tuple of known metric names (None: the default ones; ``none`` or
    empty: no sample metrics, only where ``allow_empty``, e.g. ``zoo eval RUN --nll --metrics none``).
    Built-in names are checked without loading the plugins."""
    if metrics is None:
        return default_metrics()
    items = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)]
    items = [m for m in items if m and m != "none"]
    if not items and allow_empty:
        return ()
    builtin = [m.name for m in BUILTIN if m.on_samples]
    if not set(items) <= set(builtin):
        known = list(sample_metrics())
        for m in items:
            if m not in known:
                raise ZooError(f"unknown metric '{m}'{did_you_mean(m, known)} (metrics: {', '.join(known)}; "
                               f"prc = precision/recall, modes = mode coverage of digits)"
                               if known else f"unknown metric '{m}': no metrics are registered (is zoo's "
                               f"'metrics' plugin disabled by ZOO_PLUGINS / ZOO_DISABLE_PLUGINS?)")
    if not items:
        raise ZooError(f"no metrics requested (choose from {', '.join(builtin)}; 'none' only with --nll for a run)")
    return tuple(dict.fromkeys(items))


def choices_help() -> str:
    """The built-in metrics for ``--metrics`` help (no plugin is loaded to write it)."""
    return ", ".join(m.name + (f" ({m.description})" if m.description else "") for m in BUILTIN if m.on_samples)


def default_help() -> str:
    return ",".join(m.name for m in BUILTIN if m.on_samples and m.default)


# --- the built-ins: each a compute function, and its declaration in BUILTIN -------------------------
def pm(mean: float, std: float | None, meaningful: bool, what: str, digits: int = 3) -> str:
    """``mean ± std (what)`` with std to two significant digits and the mean to the same decimals; just
    ``mean`` when the spread means nothing (one split, identical subsets, or exactly 0)."""
    if not meaningful or std is None or not math.isfinite(std) or std <= 0:
        return f"{mean:.{digits}f}"
    decimals = min(10, max(0, 1 - math.floor(math.log10(std))))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f} ({what})"


def fid(x: Inputs) -> dict:
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
    feats = x.sample("fid")
    mine = fid_features_to_statistics(feats.double())
    theirs = {"mu": x.reference["mu"].numpy(), "sigma": x.reference["sigma"].numpy()}
    out = {"fid": float(fid_statistics_to_metric(mine, theirs, False)[KEY_METRIC_FID])}
    dim, n, n_ref = int(feats.shape[1]), x.n, int(x.reference["n"])
    out["fid_min_images"] = need = max(2 * dim, FID_FLOOR)
    if min(n, n_ref) < need:
        side = f"{n} images" if n < need else f"a reference of {n_ref} images"
        x.warn(f"FID from {side} is not meaningful on its own: with {dim}-d '{x.extractor_name}' features it needs "
               f"at least {need} on each side (2 x {dim}, at least {FID_FLOOR}) -- below that the feature "
               f"covariance is barely estimated and FID is biased high; compare only runs scored with "
               f"the same number of images (use -n {need} or more)")
    return out


def inception_score(x: Inputs) -> dict:
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
    splits = max(1, min(10, x.n // 1000))  # >= 1000 images per split, 10 at most
    r = isc_features_to_metric(x.sample("isc"), splits=splits, shuffle=True, rng_seed=x.seed)
    return {"is_mean": float(r[KEY_METRIC_ISC_MEAN]), "is_std": float(r[KEY_METRIC_ISC_STD]), "is_splits": splits}


def _is_rows(r: dict) -> list:
    if r.get("is_mean") is None:
        return []
    splits = int(r.get("is_splits") or 1)
    return [("IS", pm(r["is_mean"], r.get("is_std"), splits > 1, f"std over {splits} splits") if splits > 1
             else f"{r['is_mean']:.3f} (1 split of {r.get('n')} images; a spread needs 2000 or more)")]


def kid(x: Inputs) -> dict:
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
    real, n = x.real("kid"), x.n
    m = min(KID_SUBSET_SIZE, n, len(real))
    if m < 2:
        raise ZooError(f"KID needs at least 2 images on each side, got {n} samples and {len(real)} reference")
    r = kid_features_to_metric(x.sample("kid"), real, kid_subsets=KID_SUBSETS, kid_subset_size=m,
                               rng_seed=x.seed, verbose=False)
    # every subset is the same when it takes all images on both sides: then the spread means nothing
    return {"kid_mean": float(r[KEY_METRIC_KID_MEAN]), "kid_std": float(r[KEY_METRIC_KID_STD]),
            "kid_subset_size": m, "kid_subsets": KID_SUBSETS, "kid_subsets_differ": m < n or m < len(real)}


def _kid_rows(r: dict) -> list:
    if r.get("kid_mean") is None:
        return []
    m, subsets, differ = r.get("kid_subset_size"), r.get("kid_subsets"), bool(r.get("kid_subsets_differ", True))
    return [("KID", pm(r["kid_mean"], r.get("kid_std"), differ, f"std over {subsets} subsets of {m}", 5)
             if differ else f"{r['kid_mean']:.5f} (1 subset: all {m} images on both sides, no spread)")]


def precision_recall(x: Inputs) -> dict:
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric
    real = x.real("prc")
    m = min(x.n, len(real))  # equal sizes on both sides, as in Kynkaanniemi et al.
    if m <= PRC_NEIGHBORHOOD + 1:
        raise ZooError(f"precision/recall needs more than {PRC_NEIGHBORHOOD + 1} images, got {m}")
    r = prc_features_to_metric(x.sample("prc")[:m], real[:m], prc_neighborhood=PRC_NEIGHBORHOOD,
                               prc_batch_size=2000, save_cpu_ram=True, verbose=False)
    return {"precision": float(r[KEY_METRIC_PRECISION]), "recall": float(r[KEY_METRIC_RECALL]), "prc_samples": m}


def density_coverage(x: Inputs) -> dict:
    """Density and coverage (Naeem et al. 2020, "Reliable fidelity and diversity metrics"), in the
    precision/recall layer: each real feature gets a ball reaching its k-th nearest real neighbour.
    ``density``: the mean number of balls a sample falls in, over k (1 when samples are distributed like
    the real images; above 1 where they crowd dense regions); ``coverage``: the share of real balls
    holding at least one sample. Equal sizes on both sides, as for precision/recall."""
    import torch
    real = x.real("prc")
    m = min(x.n, len(real))
    if m <= DC_NEIGHBORHOOD + 1:
        raise ZooError(f"density/coverage needs more than {DC_NEIGHBORHOOD + 1} images, got {m}")
    real, fake = real[:m].double(), x.sample("prc")[:m].double()
    radii = torch.cat([torch.cdist(real[i:i + 1000], real).kthvalue(DC_NEIGHBORHOOD + 1, dim=1).values
                       for i in range(0, m, 1000)])  # the (k+1)-th: the nearest is the image itself
    inside = torch.zeros(m, dtype=torch.long)          # per sample: the real balls it falls in
    covered = torch.zeros(m, dtype=torch.bool)         # per real image: some sample falls in its ball
    for i in range(0, m, 1000):
        hit = torch.cdist(fake[i:i + 1000], real) <= radii
        inside[i:i + 1000] = hit.sum(1)
        covered |= hit.any(0)
    return {"density": float(inside.double().mean() / DC_NEIGHBORHOOD), "coverage": float(covered.double().mean()),
            "dc_neighborhood": DC_NEIGHBORHOOD, "dc_samples": m}


def mode_coverage(x: Inputs) -> dict:
    """Mode coverage of digit samples: the ``mnist`` classifier's histogram of predicted classes.

    ``modes``: classes predicted for at least ``MODE_MIN_SHARE`` (2%) of the images; ``class_kl``:
    KL(histogram || uniform) in nats (0 for balanced classes, log 10 = 2.303 for one class);
    ``mean_confidence``: the mean top softmax probability. Only where the classifier was made for the
    data (MNIST, or a dataset that declares the ``mnist`` extractor); otherwise these are None and
    ``modes_note`` says why. The extractor's features are reused when it is the classifier itself."""
    clf, why = classifier(x)
    if clf is None:
        return {"modes_note": f"mode coverage not measured: {why}"}
    probs = class_logits(x, clf).double().softmax(1)
    classes = probs.shape[1]
    hist = probs.argmax(1).bincount(minlength=classes).double() / len(probs)
    seen = hist[hist > 0]
    return {"modes": int((hist >= MODE_MIN_SHARE).sum()), "class_kl": float((seen * (seen * classes).log()).sum()),
            "mean_confidence": float(probs.max(1).values.mean()), "modes_histogram": [round(float(h), 4) for h in hist],
            "modes_min_share": MODE_MIN_SHARE, "modes_classifier": MODE_CLASSIFIER}


def classifier(x: Inputs):
    """``(classifier, None)``: the ``mnist`` classifier (the evaluation's extractor when it is that one) where
    it suits the data, else ``(None, why not)``."""
    from .extractors import device_of, load_extractor
    from .references import made_for
    from .registry import registry
    if MODE_CLASSIFIER not in registry().extractors:
        return None, f"no '{MODE_CLASSIFIER}' extractor is registered to classify the samples"
    own = x.extractor_name == MODE_CLASSIFIER
    weights = getattr(x.settings, "extractor_weights", None) if own else None
    clf = x.extractor if own else load_extractor(MODE_CLASSIFIER, weights, str(device_of(x.extractor)))
    suits = made_for(MODE_CLASSIFIER, clf, x.dataset)
    if suits:
        return clf, None
    return None, (f"the reference images name no dataset, so zoo cannot tell whether the '{MODE_CLASSIFIER}' "
                  f"classifier suits them" if suits is None else
                  f"the '{MODE_CLASSIFIER}' classifier was made for {', '.join(getattr(clf, 'made_for', ()) or ())}, "
                  f"not for '{x.dataset}'")


def class_logits(x: Inputs, clf, images=None):
    """The classifier's logits (N, classes) for ``images`` (default: the samples; their features are reused
    when the classifier is the evaluation's extractor)."""
    from .extractors import extract_features, layer
    logits_layer = layer(clf, "isc")
    if images is None and clf is x.extractor and logits_layer in x.features:
        return x.features[logits_layer]
    feats = extract_features(clf, x.images if images is None else images, getattr(clf, "input_size", None),
                             int(getattr(x.settings, "batch_size", 256)),
                             bool(getattr(x.settings, "progress", False)) and images is None,
                             desc="classifying samples")
    return feats[logits_layer]


def _modes_rows(r: dict) -> list:
    if r.get("modes") is not None:
        share = r.get("modes_min_share", 0.02)
        return [("modes", f"{r['modes']} of {len(r.get('modes_histogram') or []) or 10} classes "
                          f"(each >= {share * 100:g}% of the samples)"),
                ("class KL", f"{r['class_kl']:.4f} nats (0: balanced classes, 2.3026: one class)"),
                ("confidence", f"{r['mean_confidence']:.4f} (mean top-class probability)")]
    return [("modes", f"— ({r['modes_note']})")] if r.get("modes_note") else []


def likelihood(x: Inputs) -> dict:
    """Bits/dim of held-out images of ``x.model`` (zoo/likelihood.py), with the settings' nll_n and options."""
    from .likelihood import evaluate_likelihood
    s = x.settings
    out = evaluate_likelihood(x.model, x.config, n=s.nll_n, seed=s.seed, batch_size=s.batch_size,
                              options=s.nll_options, progress=s.progress)
    for w in out.pop("warnings", []):
        x.warn(w)
    return out


def _nll_rows(r: dict) -> list:
    if r.get("bits_per_dim") is not None:
        others = "; ".join(f"{k} {v:.4f}" for k, v in (r.get("bits_per_dim_bounds") or {}).items()
                           if k != r["bits_per_dim_bound"])
        return [("bits/dim", f"{r['bits_per_dim']:.4f} ({r['bits_per_dim_bound']} bound"
                             f"{'; ' + others if others else ''}"
                             f") on {r['nll_n']} images in {r['nll_seconds']:.1f} s")]
    return [("bits/dim", f"— ({r['nll_note']})")] if r.get("nll_note") else []


def _bits_cell(r: dict) -> str:
    if r.get("bits_per_dim") is None:
        return ABSENT
    return fmt(r["bits_per_dim"], 3) + (f" ({r['bits_per_dim_bound']})" if r.get("bits_per_dim_bound") else "")


BUILTIN = (
    Metric("fid", fid, (Score("fid", "FID", "down", 2),), ("features", "reference"), default=True,
           table=lambda r: [] if r.get("fid") is None else [("FID", f"{r['fid']:.3f}")]),
    Metric("label-acc", label_accuracy, (Score("label_accuracy", "label acc", "up", 3), Score("label_accuracy_real")),
           ("labels", "logits"), "share of samples classified as the class asked for (conditional runs)",
           default=True, table=label_rows),
    Metric("intra-fid", intra_fid, (Score("intra_fid", "intra-FID", "down", 2),), ("labels", "features"),
           "FID per class vs that class's held-out images, averaged (conditional runs)", default=True,
           table=intra_fid_rows),
    Metric("is", inception_score, (Score("is_mean", "IS", "up", 2), Score("is_std")), ("logits",), default=True,
           table=_is_rows),
    Metric("kid", kid, (Score("kid_mean", "KID", "down", 4), Score("kid_std")), ("features", "reference"),
           default=True, table=_kid_rows),
    Metric("prc", precision_recall, (Score("precision", "precision", "up"), Score("recall", "recall", "up")),
           ("features", "reference"), "precision/recall", default=True,
           table=lambda r: [(k, f"{r[k]:.4f}") for k in ("precision", "recall") if r.get(k) is not None]),
    Metric("nll", likelihood, (Score("bits_per_dim", "bits/dim", "down", cell=_bits_cell),
                               Score("bits_per_dim_bound", column=True), Score("nll_n"), Score("nll_seconds")),
           ("model",), "bits/dim of held-out images (--nll)", table=_nll_rows),
    Metric("modes", mode_coverage, (Score("modes", "modes", "up"), Score("class_kl", "class KL", "down"),
                                    Score("mean_confidence")), ("images", "logits"), "mode coverage of digits",
           default=True, table=_modes_rows),
    Metric("density", density_coverage, (Score("density", "density", "up"), Score("coverage", "coverage", "up")),
           ("features", "reference"), "density/coverage, Naeem et al. 2020"),
)
"""zoo's metrics, registered by ``zoo_plugins.metrics`` in this order (the leaderboard's column order)."""

"""The evaluation harness: every registered metric (FID, IS, KID, precision/recall, mode coverage, ...) for
any model or set of images, with one set of settings (:class:`EvalSpec`).

One scoring path serves ``zoo eval``, ``zoo compare`` and the trainer's periodic FID::

    from zoo.evaluate import EvalSpec, evaluate, quick_fid
    evaluate(zoo.load_run("runs/vae"))                    # 10k samples vs the run's training images
    evaluate(images_uint8, reference="holdout", data={"split": "test", "holdout": 1000})
    evaluate(model, spec=EvalSpec(metrics="fid,density", n=2000))

1. Images -- sampled from a model in batches, or given (uint8, or float in [0, 1]; zoo/images.py reads
   folders and .npz/.npy files) -- are converted to what the feature extractor takes.
2. The feature extractor -- a torch-fidelity ``FeatureExtractorBase`` from the ``zoo_register_extractors``
   hook (``mnist``: zoo's MNIST classifier, ``inception``: torch-fidelity's Inception-v3; zoo/extractors.py)
   -- maps them to features and logits.
3. The reference -- real images, by default the run's training images -- goes through the same steps
   once; its statistics are cached on disk (zoo/references.py).
4. Each chosen metric -- registered through the ``zoo_register_metrics`` hook (zoo/metrics.py declares
   zoo's own) -- computes its numbers from those; with ``nll=True`` for a model, the likelihood metric
   measures bits/dim of held-out images (zoo/likelihood.py). docs/evaluation.md explains every number.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import replace

import torch

from .errors import ZooError
from .extractors import extract_features, load_extractor
from .images import as_uint8_images
from .metrics import Inputs, parse_metrics, registered, result_keys
from .references import Reference, default_extractor, extractor_mismatch, reference_for_config, reference_stats
from .specs import EvalSpec

__all__ = ["EvalSpec", "evaluate", "evaluate_images", "quick_fid"]


def pick_device(device=None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def overlap_warning(name: str, ref: dict) -> str:
    """One line, saying how to avoid it: the extractor was trained on some of the reference images."""
    return (f"the '{name}' feature extractor was trained on {ref['overlap']} of the {ref['n']} reference images, "
            f"so scores are optimistic -- avoid it with --reference holdout (images it never saw)")


def evaluate_images(images, reference: Reference, spec: EvalSpec | None = None, labels=None, **settings) -> dict:
    """Score ``images`` (uint8, or float in [0, 1]) against ``reference`` with the metrics ``spec`` (or
    ``settings``: :class:`EvalSpec` fields) chooses. ``labels``: the class each image was asked for
    (a conditional run's samples; the metrics that judge conditioning need them and ``spec.config``, whose
    held-out images they compare with; without labels they are omitted). Returns a dict with every
    registered metric's result keys (None where not requested or not applicable), ``extractor``, ``n``,
    ``warnings`` and how they were computed."""
    spec = EvalSpec.of(spec, settings)
    t0 = time.perf_counter()
    metrics = parse_metrics(spec.metrics)
    images = as_uint8_images(images)
    labels = _check_labels(labels, len(images))
    name = spec.extractor or default_extractor(reference)
    ext = load_extractor(name, spec.extractor_weights, str(pick_device(spec.device)))
    ref = reference_stats(reference, ext, name, cache=spec.cache_dir, batch_size=spec.batch_size,
                          progress=spec.progress)
    feats = extract_features(ext, images, getattr(ext, "input_size", None) or ref["image_size"], spec.batch_size,
                             spec.progress, desc="sample features")
    dataset = reference.source.get("dataset")
    found = [w for w in [extractor_mismatch(name, ext, dataset)] if w]
    inputs = Inputs(spec, images, feats, ref, extractor=ext, extractor_name=name, dataset=dataset, warnings=found,
                    config=spec.config, labels=labels)
    out, notes = _compute(metrics, inputs)
    if ref.get("overlap"):
        found.append(overlap_warning(name, ref))
    for w in found:
        warnings.warn(w, stacklevel=2)
    out.update({"extractor": name, "extractor_weights": str(getattr(ext, "weights_id", "")) or None,
                "n": len(images), "metrics": list(metrics), "reference": ref["description"],
                "n_reference": int(ref["n"]), "reference_stats": ref["status"], "seed": spec.seed, **notes,
                "warnings": found, "seconds_scoring": round(time.perf_counter() - t0, 3)})
    return out


def _check_labels(labels, n: int):
    """``labels`` as an int64 CPU ``(n,)`` tensor (None stays None); a wrong count is a one-line error."""
    if labels is None:
        return None
    y = torch.as_tensor(labels).reshape(-1)
    if y.is_floating_point() or y.numel() != n:
        raise ZooError(f"labels: expected {n} integer class labels, one per image, got {y.numel()} of {y.dtype}")
    return y.to(torch.int64).cpu()


def _compute(names, inputs: Inputs) -> tuple[dict, dict]:
    """``(results, notes)`` of the registered metrics ``names`` (in registration order): a metric's
    declared keys go to the results (every key None first), whatever else it returns to the notes."""
    missing = [n for n in names if n not in registered()]
    if missing:
        raise ZooError(f"metric {', '.join(missing)} is not registered (is zoo's 'metrics' plugin disabled by "
                       f"ZOO_PLUGINS / ZOO_DISABLE_PLUGINS?)")
    out: dict = {k: None for k in result_keys()}
    notes: dict = {}
    asked = getattr(inputs.settings, "metrics", None) is not None   # named, not the defaults
    for metric in registered().values():
        if metric.name in names and inputs.labels is None and metric.conditional:   # does not apply: omitted
            if asked:
                notes[f"{metric.scores[0].key}_note"] = (f"{metric.name} not measured: the samples were asked for no "
                                                         f"labels (only a conditional run's are)")
        elif metric.name in names:
            keys = {s.key for s in metric.scores}
            for k, v in metric.compute(inputs).items():
                (out if k in keys else notes)[k] = v
    return out, notes


def evaluate(images_or_model, reference=None, spec: EvalSpec | None = None, labels=None, **settings) -> dict:
    """Score a model (a ZooModel: ``n`` samples, default 10000, drawn with ``seed``) or an image array.

    ``reference``: a :class:`Reference`, or a spec for :func:`reference_for_config` (None = the training
    images; ``holdout``; a split name; a folder / .npz / .npy path). For a model the data settings are its
    config's (or ``config``'s); for images they are ``data``. ``spec`` / ``settings``: an :class:`EvalSpec`
    and any of its fields to change. ``labels``: for a conditional model, the classes to ask for (None:
    balanced, image i asks for class i % K); for images, the class each was asked for. Label accuracy and
    intra-class FID judge them (and are omitted without labels). Returns the dict of :func:`evaluate_images`
    plus sampling and likelihood details.
    """
    spec = EvalSpec.of(spec, settings)
    x = images_or_model
    if isinstance(x, torch.nn.Module) and hasattr(x, "sample"):
        return _evaluate_model(x, reference, spec, labels)
    if spec.nll:
        raise ZooError("--nll needs a model to ask for log p(x) (zoo eval RUN --nll), not image files")
    from .config import Config
    t0 = time.perf_counter()
    parse_metrics(spec.metrics)
    images = as_uint8_images(x)
    if spec.n is not None:
        if spec.n > len(images):
            raise ZooError(f"-n {spec.n} but only {len(images)} images were given")
        images = images[:spec.n]
        labels = None if labels is None else torch.as_tensor(labels).reshape(-1)[:spec.n]
    cfg = spec.config if spec.config is not None else Config({"data": dict(spec.data or {})})
    ref = reference if isinstance(reference, Reference) else reference_for_config(cfg, reference)
    result = evaluate_images(images, ref, replace(spec, config=cfg), labels=labels)
    result.update(seconds=round(time.perf_counter() - t0, 3))
    return result


def _evaluate_model(model, reference, spec: EvalSpec, labels=None) -> dict:
    """Check the options, measure the likelihood first (it checks the run's data and the model's answer
    before the long sampling), then sample (a conditional run: with ``labels``, default balanced) and score."""
    from .contract import check_likelihood_options, check_sample_options
    from .images import sample_labelled
    t0 = time.perf_counter()
    metrics = parse_metrics(spec.metrics, allow_empty=spec.nll)
    cfg = spec.config if spec.config is not None else model.cfg
    options = check_sample_options(model, dict(spec.sample_options or {}))
    spec = replace(spec, nll_options=check_likelihood_options(model, dict(spec.nll_options or {})) if spec.nll
                   else {})
    likelihood, said = {}, []
    if spec.nll:
        likelihood = registered()["nll"].compute(Inputs(spec, warnings=said, model=model, config=cfg))
    result: dict = {k: None for k in result_keys()}
    extra: dict = {}
    if metrics:
        ref = reference if isinstance(reference, Reference) else reference_for_config(cfg, reference)
        n = 10_000 if spec.n is None else int(spec.n)
        t = time.perf_counter()
        images, asked = sample_labelled(model, n, seed=spec.seed, batch_size=spec.batch_size,
                                        progress=spec.progress, labels=labels, sample_options=options)
        extra = {"seconds_sampling": round(time.perf_counter() - t, 3),
                 "num_classes": getattr(model, "num_classes", None)}
        if asked is not None:
            extra["sample_labels"] = "balanced (image i asks for class i % num_classes)" if labels is None else \
                "given"
        if getattr(model, "last_nfe", None) is not None:  # models that count their network evaluations (flow)
            extra["sampling_nfe"] = model.last_nfe
        result.update(evaluate_images(images, ref, spec, labels=asked, config=cfg,
                                      device=spec.device if spec.device is not None else model.device))
    else:
        result.update(metrics=[], n=0, seed=spec.seed, warnings=[])
    result.update(likelihood, warnings=said + result["warnings"])
    result.update(extra, model=cfg.get("model_name"), step=getattr(model, "step", None), sample_options=options,
                  sampled_with=sampled_with(model, options), seconds=round(time.perf_counter() - t0, 3))
    return result


def sampled_with(model, options: dict) -> dict:
    """The sampling options in force: ``options`` with the model's defaults filled in, where the model says
    them (a ``sampling_options(options) -> dict`` method, as DDPM's: sampler, steps, eta, grid, ...)."""
    resolve = getattr(model, "sampling_options", None)
    full = resolve(dict(options)) if callable(resolve) else dict(options)
    return {k: v for k, v in full.items() if k != "progress"}


def quick_fid(model, cfg=None, n: int = 1000, seed: int = 0) -> float:
    """FID of ``n`` samples of ``model`` against the cached statistics of its training images, with the
    default extractor -- the trainer's periodic FID (``trainer.eval_every`` / ``trainer.eval_n``)."""
    cfg = cfg if cfg is not None else model.cfg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the extractor-overlap note is for reports, not every eval step
        return float(evaluate(model, reference_for_config(cfg), metrics=("fid",), n=n, seed=seed)["fid"])

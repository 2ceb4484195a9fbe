"""How much periodic FID a ``zoo compare`` run can afford.

The periodic FID (``trainer.eval_every`` / ``trainer.eval_n``) picks each run's best checkpoint and draws
its FID-against-time curve, but its time is not training time: left unbounded it can cost many times the
budget (a tiny DDPM spent two minutes per training step on FIDs). So compare gives it a share of the
training time, ``FID_SHARE`` (``--fid-share``), planned from two measurements made before the run:

* the step time (:func:`zoo.compare.step_seconds`), which turns a step budget into seconds and a minute
  budget into steps (``TIME_MARGIN``);
* the cost of one FID (:func:`measure_fid_cost`): the model's configured sampler on a batch of an
  untrained copy (its cost does not depend on the weights), the extractor's features of those images, the
  FID statistics, and ``after_training`` where the model fits something before it samples (the AE).

:func:`plan_fid` then takes up to ``--fid-points`` FIDs of up to ``--fid-n`` samples; on a short run it
first takes fewer samples (never below the extractor's floor, 2 x its feature dimension and at least
``FID_FLOOR``) to keep ``MIN_POINTS`` points, then fewer points, and none when one does not fit. The
trainer enforces the plan: ``trainer.eval_max_minutes`` stops the evaluations once their wall clock is
spent, so a wrong estimate costs at most one evaluation more.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch

from .specs import FID_SHARE  # periodic FID time, at most this fraction of the training time (--fid-share)

MIN_POINTS = 3        # a short run takes fewer samples per FID before it takes fewer than this many points
TIME_MARGIN = 0.8     # a minute budget's FIDs are spread over this share of the steps the step time promises
                      # (measured without data, EMA and logging, it errs fast), so that the last one is reached
PROBE_SECONDS = 1.0   # sampling time spent measuring the per-image cost (after a warm-up batch)
WARM_UP = 2           # images in the warm-up batch (a CPU DDPM takes about a second an image)
MIN_PROBE = 4         # images in the timed batch, at least
FIT_BATCHES = 16      # batches of training images after_training is timed on (its cost is scaled to all of them)


@dataclass
class FidCost:
    """Seconds of one periodic FID of ``n`` samples: ``fixed + n * per_image``."""
    fixed: float        # after_training (where the model has one), the FID statistics
    per_image: float    # sampling and features
    min_n: int          # the fewest samples an FID is meaningful with (max(2 x feature dimension, FID_FLOOR))

    def seconds(self, n: int) -> float:
        return self.fixed + n * self.per_image


@dataclass
class FidPlan:
    points: int         # 0: no periodic FID
    n: int              # samples per FID
    every: int          # steps between FIDs
    seconds: float      # estimated seconds of one FID
    allowed: float      # seconds all of them may take
    train_seconds: float


def plan_fid(cost: FidCost, *, train_seconds: float, steps: int, points: int, n_max: int,
             share: float = FID_SHARE) -> FidPlan:
    """Up to ``points`` FIDs of up to ``n_max`` samples over a run of ``steps`` steps that trains
    ``train_seconds``, costing at most ``share`` of it (see the module docstring)."""
    allowed = share * train_seconds
    n_lo = min(n_max, cost.min_n)
    points = min(points, steps)
    if points < 1 or cost.seconds(n_lo) > allowed:
        return FidPlan(0, n_lo, 0, cost.seconds(n_lo), allowed, train_seconds)
    n = n_max
    if allowed // cost.seconds(n_max) < min(points, MIN_POINTS):  # fewer samples, to keep a few points
        want = (allowed / min(points, MIN_POINTS) - cost.fixed) / max(cost.per_image, 1e-12)
        n = int(min(n_max, max(n_lo, want)))
    k = int(min(points, allowed // cost.seconds(n)))
    return FidPlan(k, n, math.ceil(steps / k), cost.seconds(n), allowed, train_seconds)


def measure_fid_cost(cfg, n_max: int, options: dict | None = None) -> tuple[FidCost, float]:
    """The cost of one periodic FID of ``cfg``'s model (see the module docstring), and the seconds per
    image of sampling with ``options`` (the final scoring's sampling options) -- the same sampler unless
    options are given. Computes and caches the reference statistics, so the first FID does not pay them."""
    from torch_fidelity.metric_fid import (
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )

    from .contract import fits_after_training
    from .data import load_images, to_model_input
    from .device import autocast, resolve_device, resolve_precision
    from .extractors import extract_features, layer, load_extractor
    from .images import as_uint8_images
    from .metrics import FID_FLOOR
    from .references import default_extractor, reference_for_config, reference_stats
    from .registry import create_model
    device = resolve_device(str(cfg.trainer.device))
    amp = resolve_precision(str(cfg.trainer.precision), device)
    model = create_model(cfg.model_name, copy.deepcopy(cfg)).to(device).eval()
    g = torch.Generator(device=device).manual_seed(0)
    fixed = 0.0
    with torch.no_grad(), autocast(device, amp):
        if fits_after_training(model):  # before every periodic FID: a pass over the training images
            d, bs = model.cfg.data, int(cfg.trainer.batch_size)
            data = load_images(d, "train")

            def fit(part):  # timed after a warm-up batch, on up to FIT_BATCHES batches, then scaled
                start = time.perf_counter()
                model.after_training(to_model_input(part[i:i + bs], int(d.image_size), int(d.channels),
                                                    model.data_range, d.resize).to(device)
                                     for i in range(0, len(part), bs))
                return (time.perf_counter() - start) * len(data) / len(part)
            fit(data[:bs])
            fixed += fit(data[:FIT_BATCHES * bs])
        per_sample, images = _sampling_seconds(model, g, n_max, {}, device)
        scoring = _sampling_seconds(model, g, n_max, options, device)[0] if options else per_sample
    ref = reference_for_config(cfg)
    name = default_extractor(ref)
    ext = load_extractor(name, None, str(device))
    stats = reference_stats(ref, ext, name)
    images = as_uint8_images(images)
    size = getattr(ext, "input_size", None) or stats["image_size"]
    extract_features(ext, images[:MIN_PROBE], size)
    start = time.perf_counter()
    feats = extract_features(ext, images, size)[layer(ext, "fid")].double()
    per_feature = (time.perf_counter() - start) / len(images)
    start = time.perf_counter()
    fid_statistics_to_metric(fid_features_to_statistics(feats), {"mu": stats["mu"].numpy(),
                                                                 "sigma": stats["sigma"].numpy()}, False)
    fixed += time.perf_counter() - start
    min_n = max(2 * int(feats.shape[1]), FID_FLOOR)
    return FidCost(fixed, per_sample + per_feature, min_n), scoring + per_feature


def _sampling_seconds(model, g, n_max: int, options: dict, device) -> tuple[float, torch.Tensor]:
    """Seconds per image of ``model.sample`` with ``options``: a warm-up batch, then a batch sized to take
    about ``PROBE_SECONDS`` (at most ``n_max`` images). Returns the images of that batch too (in [0, 1])."""
    def timed(k):
        start = time.perf_counter()
        x = model.sample(k, g, **options)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) / k, x
    first, _ = timed(WARM_UP)
    k = int(min(max(n_max, MIN_PROBE), max(MIN_PROBE, PROBE_SECONDS / max(first, 1e-9))))
    per_image, x = timed(k)
    return per_image, x.float().clamp(0, 1).cpu()

"""`zoo compare`, stage 3: scoring -- each model is ranked at its best-by-FID checkpoint (as StudioGAN does)
and its last checkpoint's FID is reported next to it; every chosen metric, and the likelihood with
``--nll``, comes from the evaluation harness (zoo/evaluate.py, with the metrics' declarations in
zoo/metrics.py); a few samples are matched to their nearest training images in the extractor's feature
space (a memorisation check). Each model becomes a typed :class:`~zoo.compare_report.Row`.
"""
from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch

from .compare_plan import Entry
from .compare_progress import doing, now_doing
from .compare_report import Row
from .compare_train import _duration, _one_line
from .errors import ZooError
from .metrics import registered, result_keys
from .specs import CompareSpec

NEAREST_SHOWN = 8       # samples per model in the memorisation check


def score_all(entries: list[Entry], errors: dict, spec: CompareSpec, echo=print) -> list[Row]:
    """One row per entry: the best-by-FID checkpoint's scores (every metric), the last checkpoint's FID,
    likelihood and mode coverage where the harness gives them, and the memorisation check. Rows are
    sorted by FID; failures last."""
    rows = []
    for i, e in enumerate(entries, 1):
        row = Row(e.label, errors.get(e.label, ""), {"sample_options": dict(e.options), "origin": origin(e)})
        if not row.error:
            t0 = time.time()
            try:
                with doing(echo, f"scoring {e.label}"):
                    _score(e, row, spec, echo)
                last = f", last {row.get('fid_last'):.2f}" if row.get("fid_last") is not None and \
                    row.get("best_step") is not None else ""
                if row.get("label_accuracy") is not None:   # a conditional run
                    last += f", label acc {row.get('label_accuracy'):.3f}"
                echo(f"[compare] {e.label} ({i}/{len(entries)}): FID {row.get('fid'):.2f}{last} "
                     f"(scored in {_duration(time.time() - t0)})")
            except Exception as ex:  # noqa: BLE001
                row.error = _one_line(ex)
                row.trace = traceback.format_exc()
                echo(f"[compare] scoring {e.label} failed: {row.error}")
        rows.append(row)
    rows.sort(key=lambda r: (r.get("fid") is None, r.get("fid") if r.get("fid") is not None else math.inf))
    return rows


def _score(e: Entry, row: Row, spec: CompareSpec, echo) -> None:
    from . import api
    from .evaluate import EvalSpec, evaluate_images
    from .images import sample_labelled
    from .references import reference_for_config
    dev = api.pick_device(spec.device)
    n, seed, v = spec.n, spec.seed, row.values
    last = _load(e.run, "last.pt", dev)
    cfg = last.cfg
    ranked, best = last, None
    if (e.run / "checkpoints" / "best.pt").is_file():
        best = _load(e.run, "best.pt", dev)
        if best.step != last.step:
            finish_training(best)
            ranked = best
        v["best_step"] = best.step
    v["params"] = sum(p.numel() for p in last.parameters())
    v["steps"] = last.step
    meta = _metrics_log(e.run)
    if e.action == "export":  # no training log travels with an export: its config.json says how long it took
        from .sources import read_meta
        meta["time"] = (read_meta(e.run).get("training") or {}).get("seconds")
    v["train_seconds"] = round(meta["time"], 1) if meta.get("time") is not None else None
    v["fid_curve"] = meta["fid"]
    which = f"best checkpoint (step {ranked.step})" + (f" and last (step {last.step})" if spec.score_last else "") \
        if ranked is not last else \
        f"last checkpoint (step {last.step}{', also the best by FID' if best is not None else ''})"
    echo(f"[compare] scoring {e.label}: {which}, {n} samples each")
    ref = reference_for_config(cfg, spec.reference)
    scoring = EvalSpec(metrics=spec.metrics, seed=seed, extractor=spec.extractor, device=dev, config=cfg)
    fid_only = replace(scoring, metrics=("fid",))
    t0 = time.perf_counter()
    now_doing(echo, f"scoring {e.label}: sampling {n} images from its {'best' if ranked is not last else 'last'} "
                    f"checkpoint")
    images, labels = sample_labelled(ranked, n, seed=seed, **e.options)   # a conditional run: balanced labels
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    v["sample_seconds_per_1000"] = round((time.perf_counter() - t0) / n * 1000, 3)
    now_doing(echo, f"scoring {e.label}: features and metrics of {n} images")
    scores = evaluate_images(images, ref, scoring, labels=labels)
    v.update({k: val for k, val in scores.items() if k in result_keys()})
    row.extractor, row.reference = scores.get("extractor"), scores["reference"]
    for extra_spec in spec.extra_references:
        extra = evaluate_images(images, reference_for_config(cfg, extra_spec), fid_only)
        v[f"fid_{extra_spec}"] = extra["fid"]
        row.references[extra_spec] = extra["reference"]
    if ranked is not last and spec.score_last:
        now_doing(echo, f"scoring {e.label}: sampling {n} images from its last checkpoint")
        last_images = api.sample_images(last, n, seed=seed, **e.options)
        v["fid_last"] = evaluate_images(last_images, ref, fid_only)["fid"]
    else:
        v["fid_last"] = v["fid"] if ranked is last else None
    if spec.nll:
        from .evaluate import evaluate
        now_doing(echo, f"scoring {e.label}: likelihood of held-out images")
        got = evaluate(ranked, None, metrics=(), nll=True, nll_n=spec.nll_n, nll_options=e.nll_options, seed=seed)
        v.update({s.key: got.get(s.key) for s in registered()["nll"].scores})
        v["nll_options"] = dict(e.nll_options)
    row.grid, row.run = images[:64], str(e.run)
    if labels is not None:  # balanced labels (image i asks for class i % K): whole rows of K, one class a column
        k = int(getattr(ranked, "num_classes", None) or int(labels.max()) + 1)
        row.grid, row.grid_columns = images[:k * max(1, 64 // k)], k
    try:
        from .memorisation import nearest_training_images
        now_doing(echo, f"scoring {e.label}: nearest training images")
        row.neighbours = nearest_training_images(images[:NEAREST_SHOWN], cfg, extractor=spec.extractor, device=dev)
        v["nearest"] = {k: row.neighbours[k] for k in ("indices", "distances", "typical_distance", "searched")}
    except Exception as ex:  # noqa: BLE001 - the check is extra: its failure never costs the row
        echo(f"[compare] {e.label}: memorisation check failed: {_one_line(ex)}")


def origin(e: Entry) -> str:
    """Where a row's model comes from: trained by this compare, or given to it already trained."""
    if e.action == "export":
        return "an export: trained elsewhere, not by this compare"
    return "an existing run: not trained by this compare" if e.action == "run" else "trained here"


def _load(run: Path, name: str, device):
    """A run's checkpoint ``name`` (an export's weights); an unreadable file is a one-line error naming it."""
    from . import sources
    try:
        return sources.load(run, checkpoint_name=name, device=device)
    except ZooError:
        raise
    except Exception as ex:  # noqa: BLE001 - a truncated or foreign file: say which
        raise ZooError(f"{run / 'checkpoints' / name} could not be loaded ({_one_line(ex)})") from None


def finish_training(model) -> None:
    """Run ``after_training`` on a checkpoint saved mid-run (``best.pt``), as the trainer does for the last
    one: a model that fits something once training ends (the AE's latent density) samples as a finished
    model. The trainer now fits before each periodic evaluation, so its best.pt already holds the fit; this
    keeps best.pt files of older runs right (the fit is deterministic). Nothing happens for models that
    do not override it."""
    from .contract import fits_after_training
    from .data import load_images, to_model_input
    if not fits_after_training(model):
        return
    cfg = model.cfg
    conditional = getattr(model, "num_classes", None) is not None
    data, labels = load_images(cfg.data, "train", with_labels=True)
    size, channels, bs = int(cfg.data.image_size), int(cfg.data.channels), int(cfg.trainer.batch_size)

    def one_pass():   # a conditional run's items are (images, labels) pairs, as the trainer gives them
        for i in range(0, len(data), bs):
            x = to_model_input(data[i:i + bs], size, channels, model.data_range, cfg.data.resize).to(model.device)
            yield (x, labels[i:i + bs].to(model.device)) if conditional else x
    with torch.no_grad():
        model.after_training(one_pass())


def _metrics_log(run_dir) -> dict:
    """The last logged training time and the periodic FIDs ``[[step, seconds, fid], ...]`` of a run."""
    path = Path(run_dir) / "metrics.jsonl"
    out: dict = {"time": None, "fid": []}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "time" in row:
                out["time"] = row["time"]
            if isinstance(row.get("fid"), (int, float)):
                out["fid"].append([row.get("step"), row.get("time"), row["fid"]])
    return out

"""`zoo compare`: train several models under one budget, score them the same way, write a leaderboard.

Three stages, in this order:

1. **Plan** (:func:`zoo.compare_plan.plan`) -- every item is checked before anything trains: model names (with a
   did-you-mean), presets, ``--set`` overrides and the budget (the model's full config is resolved),
   run directories, sampling options (each goes to the models that declare it), the extractor, the
   metrics and the references. A typo costs nothing.
2. **Train** (:func:`zoo.compare_train.train_all`) -- each model trains into ``OUT/runs/NAME`` with the same budget and,
   by default, a cheap periodic FID (``trainer.eval_every`` / ``trainer.eval_n``, about
   ``fid_points`` evaluations per run), so the trainer keeps ``checkpoints/best.pt`` by FID and the
   FID-against-time curve is filled for every model. A line is printed as each model starts and ends,
   with an ETA. Runs already finished in ``OUT/runs`` are reused; interrupted ones are resumed.
3. **Score** (:func:`zoo.compare_score.score_all`) -- each model is ranked at its best-by-FID checkpoint (as StudioGAN
   does) and its last checkpoint's FID is reported next to it; likelihood (``--nll``) and mode
   coverage come from the evaluation harness where it provides them; a few samples are matched to
   their nearest training images in the extractor's feature space (a memorisation check).

Settings travel as one :class:`~zoo.specs.CompareSpec`; results as typed rows (:class:`~zoo.compare_report.Row`).
A model that fails is a row with its error; the others are still ranked, and the files are written.
The files themselves (leaderboard.md/.csv/.json, samples.png, curves.png, memorisation.png,
report.html) come from :mod:`zoo.compare_report`. Runs live under ``OUT/runs``, so
``tensorboard --logdir OUT/runs`` overlays them when the trainer writes TensorBoard logs.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .compare_plan import FID_N, FID_POINTS, MARKER, Entry, Interrupted, ModelsFailed, budget_sets, plan
from .compare_progress import StageEcho
from .compare_score import finish_training, score_all
from .compare_train import periodic_fid_sets, step_seconds, train_all
from .specs import CompareSpec

__all__ = ["FID_N", "FID_POINTS", "MARKER", "CompareSpec", "Entry", "Interrupted", "ModelsFailed", "budget_sets",
           "compare", "finish_training", "periodic_fid_sets", "plan", "score_all", "step_seconds", "train_all"]


def compare(items, out, spec: CompareSpec | None = None, *, echo=print, **settings) -> dict[str, Path]:
    """Check every item, train what is not trained yet, evaluate and report. Returns the report files.

    ``spec`` / ``settings``: a :class:`~zoo.specs.CompareSpec` and any of its fields to change (``options``:
    sampling options forwarded to every model that declares them; ``sample_options``: ``{label or model
    name: {...}}`` for single models; ``fid_points``: about this many cheap periodic FIDs (``fid_n``
    samples each) per trained run, taking at most ``fid_share`` of its training time (:mod:`zoo.fid_budget`),
    0 turns them off (then the last checkpoint is ranked); while it works, a line is printed at least every
    ``trainer.progress_seconds`` (:mod:`zoo.compare_progress`);
    ``score_last=False`` skips the last checkpoint's FID when a best one is ranked (half the sampling);
    ``nll``: also bits/dim (models with ``log_likelihood``)). Rows with an ``error`` are failures; see
    ``leaderboard.json``.
    """
    from .compare_report import write_reports
    s = CompareSpec.of(spec, settings)
    entries = plan(items, out, s)
    t0 = time.time()
    with StageEcho(echo, min(float(e.cfg.trainer.progress_seconds) for e in entries)) as beat:
        errors = train_all(entries, sets=s.sets, budget_minutes=s.budget_minutes, n=s.n, fid_points=s.fid_points,
                           fid_n=s.fid_n, quiet=s.quiet, echo=beat)
        try:
            rows = score_all(entries, errors, s, beat)
        except KeyboardInterrupt:
            raise Interrupted("interrupted while scoring: run the same command again to score (the trained runs "
                              "are reused)") from None
    return write_reports(rows, Path(out), s.title, _context(rows, Path(out), s, time.time() - t0))


def _context(rows: list, out: Path, s: CompareSpec, seconds: float) -> dict:
    """The settings and circumstances the leaderboard lists above its table."""
    from . import __version__
    refs = {"reference (FID, KID, precision/recall)": {r.reference for r in rows if r.reference}}
    for spec in s.extra_references:
        refs[f"reference of 'FID vs {spec}'"] = {r.references[spec] for r in rows if spec in r.references}
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    chosen_options = "; ".join(f"{r.model}: " + ", ".join(f"{k}={v}" for k, v in r.get("sample_options").items())
                               for r in rows if r.get("sample_options")) or "each model's defaults"
    return {"date": time.strftime("%Y-%m-%d"), "device": dev, "torch": torch.__version__, "zoo": __version__,
            "budget": f"{s.budget_minutes} min" if s.budget_minutes is not None else f"{s.steps} steps" if s.steps
            else "each run's own config",
            "preset": ", ".join(filter(None, [s.preset, *(f"{k}: {v}" for k, v in (s.presets or {}).items())])) or "-",
            "overrides": " ".join(s.sets) or "-", "sampling options": chosen_options,
            "samples per model": s.n, "extractor": ", ".join(sorted({r.extractor for r in rows if r.extractor}))
            or s.extractor or "-",
            "seed": s.seed,
            "checkpoint ranked": ("the best by periodic FID where a run logged one (runs trained here: up to "
                                  f"{s.fid_points} points of up to {min(s.fid_n, s.n)} samples, taking at most "
                                  f"{s.fid_share:.0%} of the training time, the data's default extractor), else "
                                  "the last; 'FID last' is the last checkpoint's")
            if s.fid_points else "the best by periodic FID where a run logged one, else the last (periodic FID "
                                 "off for runs trained here)",
            **{k: "; ".join(sorted(v)) or "-" for k, v in refs.items()},
            "not trained here": "; ".join(f"{r.model} ({r.get('origin')})" for r in rows
                                          if r.get("origin") not in (None, "trained here")) or "-",
            "runs": f"{out / 'runs'} (tensorboard --logdir {out / 'runs'} overlays them)",
            "wall clock": f"{seconds:.0f} s"}

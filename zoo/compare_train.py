"""`zoo compare`, stage 2: training -- each model trains into ``OUT/runs/NAME`` with the same budget and,
by default, a cheap periodic FID (``trainer.eval_every`` / ``trainer.eval_n``: up to ``fid_points``
evaluations per run, taking at most ``fid_share`` of its training time, :mod:`zoo.fid_budget`), so the trainer
keeps ``checkpoints/best.pt`` by FID and the FID-against-time curve
is filled for every model. A line is printed as each model starts and ends, with an ETA. Runs already
finished are reused; interrupted ones are resumed.
"""
from __future__ import annotations

import copy
import json
import time

import torch

from .compare_plan import FID_N, FID_POINTS, MARKER, Entry, Interrupted
from .compare_progress import doing, training_status
from .errors import ZooError
from .specs import FID_SHARE

PROBE_SECONDS = 3.0     # time spent measuring a model's step time, for a minute budget's FID schedule


def step_seconds(cfg, budget_seconds: float = PROBE_SECONDS, max_steps: int = 5) -> float:
    """Seconds per training step of ``cfg``'s model, measured on random inputs of its shape (a warm-up
    step, then up to ``max_steps`` steps or ``budget_seconds``). It leaves out data preparation, EMA and
    logging, so it errs fast: used only to spread the periodic FID over a minute budget."""
    from .device import autocast, resolve_device, resolve_precision
    from .registry import create_model
    device = resolve_device(str(cfg.trainer.device))
    amp = resolve_precision(str(cfg.trainer.precision), device)
    model = create_model(cfg.model_name, copy.deepcopy(cfg)).to(device).train()
    optimizers = model.configure_optimizers()
    phases = [(str(p), int(r)) for p, r in model.phases()]
    lo, hi = model.data_range
    x = torch.rand(int(cfg.trainer.batch_size), *model.image_shape, device=device) * (hi - lo) + lo
    k = model.num_classes  # a conditional run: random labels, as many as images
    labels = {} if k is None else {"labels": torch.randint(k, (len(x),), device=device)}

    def one_step():
        for name, repeats in phases:
            for _ in range(repeats):
                optimizers[name].zero_grad(set_to_none=True)
                with autocast(device, amp):
                    loss = model.training_loss(x, name, **labels)["loss"]
                loss.float().backward()
                optimizers[name].step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    one_step()
    t0, n = time.perf_counter(), 0
    while n < max_steps and (n == 0 or time.perf_counter() - t0 < budget_seconds):
        one_step()
        n += 1
    return (time.perf_counter() - t0) / n  # the model goes with this frame; its memory returns to torch's cache


def periodic_fid_sets(e: Entry, sets, fid_points: int, fid_n: int, n: int, echo=print) -> list[str]:
    """``trainer.eval_every`` / ``eval_n`` / ``eval_max_minutes`` for as many cheap FIDs (up to ``fid_points``
    of up to ``fid_n`` samples) as ``e.settings["fid_share"]`` of the training time affords, from the
    measured step and FID times (:mod:`zoo.fid_budget`); prints the plan. Nothing when ``fid_points`` is 0
    or ``--set`` chose ``trainer.eval_every``; ``eval_every=null`` when not even one FID fits. The FIDs at
    ``trainer.eval_at_minutes`` are taken whatever the plan: their time is set aside first, and they take
    ``--fid-n`` samples where nothing else sets ``trainer.eval_n``."""
    import dataclasses

    from .config import parse_set
    from .fid_budget import TIME_MARGIN, measure_fid_cost, plan_fid
    mine = parse_set(sets).get("trainer", {})
    if "eval_every" in mine:
        echo(f"[compare] {e.label}: periodic FID as --set (trainer.eval_every={mine['eval_every']}), not bounded "
             f"by --fid-share")
        return []
    t = e.cfg.trainer
    marks_n = [f"trainer.eval_n={min(fid_n, n)}"] if t.eval_at_minutes and "eval_n" not in mine else []
    if not fid_points or (t.max_steps is None and t.max_minutes is None):
        return marks_n  # off, or an epoch budget: the run's own eval settings apply (the marks at --fid-n)
    share = float(e.settings.get("fid_share", FID_SHARE))
    with doing(echo, f"{e.label}: measuring the step and FID times"):
        per_step = step_seconds(e.cfg)
        n_max = int(mine.get("eval_n", min(fid_n, n)))
        cost, scoring = measure_fid_cost(e.cfg, n_max, e.options)
    if "eval_n" in mine:
        cost = dataclasses.replace(cost, min_n=n_max)
    by_time = max(1, int(float(t.max_minutes) * 60 / per_step)) if t.max_minutes is not None else None
    if t.max_steps is not None and (by_time is None or int(t.max_steps) <= by_time):
        seconds, spread = int(t.max_steps) * per_step, int(t.max_steps)
    else:  # a step count estimated from the step time: spread the FIDs over its first TIME_MARGIN
        seconds, spread = float(t.max_minutes) * 60, max(1, int(by_time * TIME_MARGIN))
    # the FIDs at trainer.eval_at_minutes (inside the budget) are taken whatever the plan: their time comes first
    at = [m for m in t.eval_at_minutes or () if t.max_minutes is None or float(m) <= float(t.max_minutes)]
    left = max(0.0, share - len(at) * cost.seconds(n_max) / max(seconds, 1e-9))
    p = plan_fid(cost, train_seconds=seconds, steps=spread, points=fid_points, n_max=n_max, share=left)
    training = f"about {_duration(seconds)} of training ({per_step:.3g} s a step)"
    after = f"; scoring afterwards about {_duration(n * scoring)} a checkpoint ({n} samples)"
    also = f" beside the {len(at)} at trainer.eval_at_minutes" if at else ""
    if not p.points:
        ranked = "the best of the FIDs at trainer.eval_at_minutes is ranked" if at else "the last checkpoint is ranked"
        echo(f"[compare] {e.label}: no periodic FID{also}: one of {p.n} samples takes about {_duration(p.seconds)}, "
             f"more than {'what is left of ' if at else ''}{share:.0%} (--fid-share) of {training}; {ranked}{after}")
        return ["trainer.eval_every=null"] + marks_n
    points = f"{p.points} point{'s' if p.points > 1 else ''}"
    echo(f"[compare] {e.label}: FID of {p.n} samples every {p.every} steps ({points}{also}, about "
         f"{_duration(p.seconds)} each: {(p.points + len(at)) * p.seconds / seconds:.0%} of {training}, at most "
         f"{share:.0%} by --fid-share){after}")
    cap = share * seconds if at else p.allowed  # the marks' FIDs count in trainer.eval_max_minutes too
    return [f"trainer.eval_every={p.every}", f"trainer.eval_max_minutes={cap / 60:.6g}"] + \
        ([] if "eval_n" in mine else [f"trainer.eval_n={p.n}"])


def _duration(seconds: float) -> str:
    return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s" if seconds < 90 else \
        f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def train_all(entries: list[Entry], *, sets=(), budget_minutes=None, n: int = 10000, fid_points=FID_POINTS,
              fid_n=FID_N, quiet=True, echo=print) -> dict[str, str]:
    """Train (or resume) the entries that need it, one after the other; returns ``{label: error}`` for
    those that failed. Prints a line as each starts and ends, with the time left for the rest."""
    errors: dict[str, str] = {}
    todo = [e for e in entries if e.action in ("train", "resume")]
    for e in entries:
        if e.action == "reuse":
            echo(f"[compare] {e.label}: already trained in {e.run}")
    if todo and budget_minutes is not None:
        share = float(todo[0].settings.get("fid_share", FID_SHARE))
        echo(f"[compare] {len(todo)} to train, {float(budget_minutes):g} min each "
             f"({_duration(len(todo) * budget_minutes * 60)}"
             f" of training); the periodic FID adds at most {share:.0%} of that (--fid-share), then scoring")
    walls: list[float] = []
    for i, e in enumerate(todo, 1):
        left = len(todo) - i + 1
        eta = _eta(walls, left, budget_minutes)
        echo(f"[compare] {e.label} ({i}/{len(todo)}): {'resuming' if e.action == 'resume' else 'training'} "
             f"into {e.run}" + (f" -- about {eta} left for {'it' if left == 1 else f'these {left}'}" if eta else ""))
        t0 = time.time()
        try:
            extra = periodic_fid_sets(e, sets, fid_points, fid_n, n, echo) if e.action == "train" else []
            _mark(e, "training")
            with doing(echo, training_status(e.label, e.run, _budget(e.cfg.trainer))):
                result = _train(e, extra, quiet, echo)
        except KeyboardInterrupt:  # before the trainer took Ctrl-C over, or a second Ctrl-C: stopped at once
            raise _interrupted(e) from None
        except Exception as ex:  # noqa: BLE001 - one failing model never stops the comparison
            errors[e.label] = _one_line(ex)
            walls.append(time.time() - t0)
            echo(f"[compare] {e.label} ({i}/{len(todo)}) failed after {_duration(walls[-1])}: {errors[e.label]}")
            continue
        walls.append(time.time() - t0)
        if getattr(result, "status", "finished") == "interrupted":
            raise _interrupted(e)
        _mark(e, "finished")
        eta = _eta(walls, len(todo) - i, budget_minutes)
        echo(f"[compare] {e.label} ({i}/{len(todo)}): trained {result.step} steps in {_duration(walls[-1])}"
             + (f"; about {eta} left for {len(todo) - i} more" if eta else ""))
    return errors


def _train(e: Entry, extra: list[str], quiet: bool, echo):
    """Train or resume one entry; the trainer prints no resume command of its own (compare says how to go on),
    and each periodic FID is a stage of the heartbeat."""
    from . import api
    count = [0]

    def evaluate(model):
        count[0] += 1
        with doing(echo, f"{e.label}: periodic FID {count[0]} ({int(model.cfg.trainer.eval_n)} samples)"):
            return api.periodic_fid(model.cfg)(model)
    if e.action == "resume":
        return api.train(resume=True, out=e.run, sets=list(e.settings["sets"]), quiet=quiet, evaluate=evaluate,
                         resume_hint=False)
    return api.train(e.model, preset=e.preset, sets=list(e.settings["sets"]) + extra, out=e.run, force=True,
                     quiet=quiet, evaluate=evaluate, resume_hint=False)


def _interrupted(e: Entry) -> Interrupted:
    return Interrupted(f"interrupted while training {e.label}: run the same command again to continue "
                       f"({e.label} resumes from its checkpoint, finished runs are reused)")


def _budget(t) -> str:
    return ", ".join(([f"{float(t.max_minutes):g} min"] if t.max_minutes is not None else []) +
                     ([f"{int(t.max_steps):,} steps"] if t.max_steps is not None else []))


def _eta(walls: list[float], left: int, budget_minutes) -> str | None:
    """Time the ``left`` remaining trainings take: the mean wall clock so far, else the minute budget."""
    if left <= 0:
        return None
    if walls:
        return _duration(sum(walls) / len(walls) * left)
    if budget_minutes is not None:
        return _duration(float(budget_minutes) * 60 * left) + " of training"
    return None


def _mark(e: Entry, status: str) -> None:
    e.run.mkdir(parents=True, exist_ok=True)
    (e.run / MARKER).write_text(json.dumps({"settings": e.settings, "status": status}, indent=2) + "\n")


def _one_line(e: BaseException) -> str:
    if isinstance(e, ZooError):
        return str(e)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]

"""`zoo compare`: train several models under one budget, score them the same way, write a leaderboard.

Three stages, in this order:

1. **Plan** (:func:`plan`) -- every item is checked before anything trains: model names (with a
   did-you-mean), presets, ``--set`` overrides and the budget (the model's full config is resolved),
   run directories, sampling options (each goes to the models that declare it), the extractor, the
   metrics and the references. A typo costs nothing.
2. **Train** (:func:`train_all`) -- each model trains into ``OUT/runs/NAME`` with the same budget and,
   by default, a cheap periodic FID (``trainer.eval_every`` / ``trainer.eval_n``, about
   ``fid_points`` evaluations per run), so the trainer keeps ``checkpoints/best.pt`` by FID and the
   FID-against-time curve is filled for every model. A line is printed as each model starts and ends,
   with an ETA. Runs already finished in ``OUT/runs`` are reused; interrupted ones are resumed.
3. **Score** (:func:`score_all`) -- each model is ranked at its best-by-FID checkpoint (as StudioGAN
   does) and its last checkpoint's FID is reported next to it; likelihood (``--nll``) and mode
   coverage come from the evaluation harness where it provides them; a few samples are matched to
   their nearest training images in the extractor's feature space (a memorisation check).

A model that fails is a row with its error; the others are still ranked, and the files are written.
The files themselves (leaderboard.md/.csv/.json, samples.png, curves.png, memorisation.png,
report.html) come from :mod:`zoo.compare_report`. Runs live under ``OUT/runs``, so
``tensorboard --logdir OUT/runs`` overlays them when the trainer writes TensorBoard logs.
"""
from __future__ import annotations

import copy
import json
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .compare_progress import Heartbeat, doing, now_doing, training_status
from .errors import ZooError, did_you_mean
from .fid_budget import FID_SHARE

DEFAULT_METRICS = ("fid", "is", "kid", "prc", "modes")  # modes: "—" for data the harness cannot judge
FID_POINTS = 8          # periodic FID evaluations per run (at most; fewer where FID_SHARE does not afford them)
FID_N = 500             # samples per periodic FID (at most; never fewer than 2 x the extractor's features, e.g. 256)
NEAREST_SHOWN = 8       # samples per model in the memorisation check
PROBE_SECONDS = 3.0     # time spent measuring a model's step time, for a minute budget's FID schedule
MARKER = "compare.json"  # in each run compare trains: the settings it trained with, and whether it finished


class ModelsFailed(ZooError):
    """Some models failed; the leaderboard was written anyway (exit code 1)."""
    exit_code = 1


class Interrupted(ZooError):
    """Ctrl-C or SIGTERM while a model trained: its checkpoint is saved; the same command continues."""
    exit_code = 130


@dataclass
class Entry:
    """One item of the comparison, checked and resolved."""
    label: str                  # its row in the leaderboard
    model: str                  # the registered model name
    run: Path                   # the run directory (existing, or to be trained into)
    cfg: object                 # the resolved config it trains with, or the run's own
    action: str                 # train | resume | reuse (OUT/runs/NAME) | run (a run directory given by the user)
    preset: str | None = None
    options: dict = field(default_factory=dict)   # its checked sampling options
    nll_options: dict = field(default_factory=dict)  # its checked likelihood options (--nll-option)
    settings: dict = field(default_factory=dict)  # what it is trained with (recorded in OUT/runs/NAME/compare.json)


# --- 1. plan: check everything before any work --------------------------------------------------
def _is_run(item) -> bool:
    return (Path(item) / "config.yaml").is_file()


def budget_sets(budget_minutes=None, steps=None) -> list[str]:
    sets = []
    if budget_minutes is not None:
        sets += [f"trainer.max_minutes={budget_minutes}", "trainer.max_steps=null"]
    if steps is not None:
        sets += [f"trainer.max_steps={steps}"]
    return sets


def plan(items, out, *, preset=None, presets=None, sets=(), budget_minutes=None, steps=None, options=None,
         sample_options=None, extractor=None, metrics=None, reference=None, extra_references=(), nll=False,
         nll_options=None, fid_points=FID_POINTS, fid_n=FID_N, fid_share=FID_SHARE) -> list[Entry]:
    """Check and resolve every item before anything trains; returns one :class:`Entry` per item.

    ``options``: sampling options for every model that declares them (an option no compared model
    declares is an error); ``sample_options``: ``{label or model name: {option: value}}`` for one model.
    """
    from . import api
    from .evaluate import parse_metrics, reference_for_config
    from .registry import complete_data_config, model_config, registry
    reg = registry()
    items = list(items)
    if not items:
        raise ZooError("name at least one model or run directory to compare (e.g. zoo compare vae gan)")
    presets = dict(presets or {})
    stray = sorted(set(presets) - set(items))
    if stray:
        raise ZooError(f"preset given for {', '.join(stray)}, which is not among the models compared "
                       f"({', '.join(items)})")
    out = Path(out)
    budget = budget_sets(budget_minutes, steps)
    entries: list[Entry] = []
    for item in items:
        if _is_run(item):
            run = Path(item)
            if item in presets:
                raise ZooError(f"--preset {item}=...: '{item}' is a trained run; presets apply to models trained here")
            cfg = api.run_config(run)
            reg.model(cfg.model_name)
            if not (run / "checkpoints" / "last.pt").is_file():
                raise ZooError(f"run '{run}' has no checkpoints/last.pt yet: finish it first "
                               f"(zoo train --resume --out {run}) or leave it out")
            entries.append(Entry(run.name, cfg.model_name, run, cfg, "run"))
            continue
        if "/" in item or Path(item).exists():
            raise ZooError(f"'{item}' is not a zoo run directory (no config.yaml) -- give a model name "
                           f"(`zoo list`) or a run directory")
        reg.model(item)  # unknown name: one line with a did-you-mean, before anything trains
        chosen = presets.get(item, preset)
        cfg = model_config(item, preset=chosen, sets=list(sets) + budget)
        complete_data_config(cfg)
        reg.dataset(cfg.data.name)
        run = out / "runs" / item
        settings = {"model": item, "preset": chosen, "sets": list(sets) + budget,
                    "fid_points": fid_points, "fid_n": fid_n, "fid_share": fid_share}
        entries.append(Entry(item, item, run, cfg, _action(run, settings), chosen, settings=settings))
    seen: dict[str, str] = {}
    for e, item in zip(entries, items):
        if e.label in seen:
            raise ZooError(f"'{seen[e.label]}' and '{item}' would both be the leaderboard row '{e.label}': "
                           f"compare each model once (rename a run directory to compare two runs of one model)")
        seen[e.label] = item
    _assign_options(entries, options or {}, sample_options or {})
    if extractor is not None:
        reg.extractor(extractor)
    chosen_metrics = parse_metrics(metrics if metrics is not None else DEFAULT_METRICS)
    if "fid" not in chosen_metrics:
        raise ZooError("zoo compare ranks by FID: keep fid in --metrics")
    specs = [reference, *extra_references]
    if "last" in extra_references:
        raise ZooError("--reference last: name the folder ./last (the column fid_last is the last checkpoint's FID)")
    for e in entries:
        for spec in specs:
            reference_for_config(e.cfg, spec)
    if nll_options:
        _assign_nll_options(entries, nll_options)
    if fid_points < 0 or fid_n < 2 or fid_share < 0:
        raise ZooError(f"periodic FID needs --fid-points >= 0, --fid-n >= 2 and --fid-share >= 0, got {fid_points}, "
                       f"{fid_n} and {fid_share}")
    return entries


def _assign_nll_options(entries: list[Entry], options: dict) -> None:
    """``--nll-option KEY=VALUE`` goes to every model whose ``log_likelihood`` takes KEY (checked there);
    one that no compared model takes is an error."""
    from .contract import check_likelihood_options, has_log_likelihood, likelihood_option_names
    from .registry import registry
    takers: dict[str, list[Entry]] = {key: [] for key in options}
    for e in entries:
        cls = registry().model(e.model).cls
        if not has_log_likelihood(cls):
            continue
        names = likelihood_option_names(cls)
        mine = {k: v for k, v in options.items() if names is None or k in names}
        e.nll_options = check_likelihood_options(cls, mine, name=e.model)
        for key in mine:
            takers[key].append(e)
    for key, got in takers.items():
        if not got:
            raise ZooError(f"--nll-option {key}=...: no compared model's likelihood takes '{key}' "
                           f"(`zoo list MODEL` shows a model's likelihood options)")


def _action(run: Path, settings: dict) -> str:
    """train (nothing there), reuse (finished), or resume (interrupted) -- or an error when the run in
    OUT/runs was trained with other settings, which a silent reuse would misreport."""
    if not (run / "checkpoints" / "last.pt").is_file():
        return "train"
    marker = run / MARKER
    if not marker.is_file():
        return "reuse"  # trained before this version of zoo compare wrote its marker
    try:
        recorded = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return "resume"
    if recorded.get("settings") != settings:
        was = recorded.get("settings") or {}
        diff = [k for k in sorted(set(was) | set(settings)) if was.get(k) != settings.get(k)]
        raise ZooError(f"'{run}' was trained by an earlier zoo compare with other settings "
                       f"({', '.join(f'{k}: {was.get(k)!r} -> {settings.get(k)!r}' for k in diff)}): "
                       f"use another --out, or delete '{run}' to retrain it")
    return "reuse" if recorded.get("status") == "finished" else "resume"


def _assign_options(entries: list[Entry], options: dict, per_model: dict) -> None:
    """Each option goes to the models that declare it (``family`` plays no part); checked now."""
    from .contract import check_sample_options
    from .registry import registry
    declared = {e.label: dict(registry().model(e.model).cls.sample_options or {}) for e in entries}
    for key in options:
        if not any(key in d for d in declared.values()):
            every = sorted({k for d in declared.values() for k in d})
            listing = "; ".join(f"{label}: {', '.join(sorted(d)) or 'none'}" for label, d in declared.items())
            raise ZooError(f"no model compared declares the sampling option '{key}'{did_you_mean(key, every)} "
                           f"(declared -- {listing})")
    for e in entries:
        mine = {k: v for k, v in options.items() if k in declared[e.label]}
        mine.update(per_model.get(e.label) or per_model.get(e.model) or {})
        e.options = check_sample_options(registry().model(e.model).cls, mine, source="sampling options",
                                         name=e.model)


# --- 2. train ------------------------------------------------------------------------------------
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

    def one_step():
        for name, repeats in phases:
            for _ in range(repeats):
                optimizers[name].zero_grad(set_to_none=True)
                with autocast(device, amp):
                    loss = model.training_loss(x, name)["loss"]
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
    or ``--set`` chose ``trainer.eval_every``; ``eval_every=null`` when not even one FID fits."""
    import dataclasses

    from .config import parse_set
    from .fid_budget import TIME_MARGIN, measure_fid_cost, plan_fid
    mine = parse_set(sets).get("trainer", {})
    if "eval_every" in mine:
        echo(f"[compare] {e.label}: periodic FID as --set (trainer.eval_every={mine['eval_every']}), not bounded "
             f"by --fid-share")
        return []
    t = e.cfg.trainer
    if not fid_points or (t.max_steps is None and t.max_minutes is None):
        return []  # off, or an epoch budget: the run's own eval settings apply
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
    p = plan_fid(cost, train_seconds=seconds, steps=spread, points=fid_points, n_max=n_max, share=share)
    training = f"about {_duration(seconds)} of training ({per_step:.3g} s a step)"
    after = f"; scoring afterwards about {_duration(n * scoring)} a checkpoint ({n} samples)"
    if not p.points:
        echo(f"[compare] {e.label}: no periodic FID: one of {p.n} samples takes about {_duration(p.seconds)}, more "
             f"than {share:.0%} (--fid-share) of {training}; the last checkpoint is ranked{after}")
        return ["trainer.eval_every=null"]
    points = f"{p.points} point{'s' if p.points > 1 else ''}"
    echo(f"[compare] {e.label}: FID of {p.n} samples every {p.every} steps ({points}, about {_duration(p.seconds)} "
         f"each: {p.points * p.seconds / seconds:.0%} of {training}, at most {share:.0%} by --fid-share){after}")
    return [f"trainer.eval_every={p.every}", f"trainer.eval_max_minutes={p.allowed / 60:.6g}"] + \
        ([] if "eval_n" in mine else [f"trainer.eval_n={p.n}"])


def _duration(seconds: float) -> str:
    return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


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
        echo(f"[compare] {len(todo)} to train, {float(budget_minutes):g} min each ({_duration(len(todo) * budget_minutes * 60)}"
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


# --- 3. score ------------------------------------------------------------------------------------
def score_all(entries: list[Entry], errors: dict, *, n: int, seed: int, extractor=None, metrics=None,
              device: str = "auto", reference=None, extra_references=(), nll: bool = False, nll_n=None,
              score_last: bool = True, echo=print) -> list[dict]:
    """One row per entry: the best-by-FID checkpoint's scores (every metric), the last checkpoint's FID,
    likelihood and mode coverage where the harness gives them, and the memorisation check. Rows are
    sorted by FID; failures last."""
    rows = []
    for i, e in enumerate(entries, 1):
        row = {"model": e.label, "error": errors.get(e.label, ""), "sample_options": dict(e.options)}
        if not row["error"]:
            t0 = time.time()
            try:
                with doing(echo, f"scoring {e.label}"):
                    _score(e, row, n=n, seed=seed, extractor=extractor, metrics=metrics, device=device,
                           reference=reference, extra_references=extra_references, nll=nll, nll_n=nll_n,
                           score_last=score_last, echo=echo)
                last = f", last {row['fid_last']:.2f}" if row.get("fid_last") is not None and \
                    row.get("best_step") is not None else ""
                echo(f"[compare] {e.label} ({i}/{len(entries)}): FID {row['fid']:.2f}{last} "
                     f"(scored in {_duration(time.time() - t0)})")
            except Exception as ex:  # noqa: BLE001
                row["error"] = _one_line(ex)
                row["_trace"] = traceback.format_exc()
                echo(f"[compare] scoring {e.label} failed: {row['error']}")
        rows.append(row)
    rows.sort(key=lambda r: (r.get("fid") is None, r.get("fid") if r.get("fid") is not None else math.inf))
    return rows


def _score(e: Entry, row: dict, *, n, seed, extractor, metrics, device, reference, extra_references, nll, nll_n,
           score_last, echo) -> None:
    from . import api
    from .evaluate import evaluate_images, reference_for_config
    dev = api.pick_device(device)
    last = _load(e.run, "last.pt", dev)
    cfg = last.cfg
    ranked, best = last, None
    if (e.run / "checkpoints" / "best.pt").is_file():
        best = _load(e.run, "best.pt", dev)
        if best.step != last.step:
            finish_training(best)
            ranked = best
        row["best_step"] = best.step
    row["params"] = sum(p.numel() for p in last.parameters())
    row["steps"] = last.step
    meta = _metrics_log(e.run)
    row["train_seconds"] = round(meta["time"], 1) if meta.get("time") is not None else None
    row["fid_curve"] = meta["fid"]
    which = f"best checkpoint (step {ranked.step})" + (f" and last (step {last.step})" if score_last else "") \
        if ranked is not last else \
        f"last checkpoint (step {last.step}{', also the best by FID' if best is not None else ''})"
    echo(f"[compare] scoring {e.label}: {which}, {n} samples each")
    ref = reference_for_config(cfg, reference)
    chosen = tuple(metrics) if metrics is not None else DEFAULT_METRICS
    t0 = time.perf_counter()
    now_doing(echo, f"scoring {e.label}: sampling {n} images from its {'best' if ranked is not last else 'last'} "
                    f"checkpoint")
    images = api.sample_images(ranked, n, seed=seed, **e.options)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    row["sample_seconds_per_1000"] = round((time.perf_counter() - t0) / n * 1000, 3)
    now_doing(echo, f"scoring {e.label}: features and metrics of {n} images")
    scores = evaluate_images(images, ref, extractor=extractor, metrics=chosen, seed=seed, device=dev)
    row.update({k: v for k, v in scores.items() if k in SCORE_KEYS})
    row["_extractor"] = scores.get("extractor")
    row["_reference"] = scores["reference"]
    for spec in extra_references:
        extra = evaluate_images(images, reference_for_config(cfg, spec), extractor=extractor, metrics=("fid",),
                                seed=seed, device=dev)
        row[f"fid_{spec}"] = extra["fid"]
        row[f"_reference_{spec}"] = extra["reference"]
    if ranked is not last and score_last:
        now_doing(echo, f"scoring {e.label}: sampling {n} images from its last checkpoint")
        last_images = api.sample_images(last, n, seed=seed, **e.options)
        row["fid_last"] = evaluate_images(last_images, ref, extractor=extractor, metrics=("fid",), seed=seed,
                                          device=dev)["fid"]
    else:
        row["fid_last"] = row["fid"] if ranked is last else None
    if nll:
        from .evaluate import evaluate
        now_doing(echo, f"scoring {e.label}: likelihood of held-out images")
        got = evaluate(ranked, None, metrics=(), nll=True, nll_n=nll_n, nll_options=e.nll_options, seed=seed)
        row.update({k: got.get(k) for k in ("bits_per_dim", "bits_per_dim_bound", "nll_n", "nll_seconds")})
        row["nll_options"] = dict(e.nll_options)
    row["_grid"] = images[:64]
    row["_run"] = str(e.run)
    try:
        from .memorisation import nearest_training_images
        now_doing(echo, f"scoring {e.label}: nearest training images")
        row["_nearest"] = nearest_training_images(images[:NEAREST_SHOWN], cfg, extractor=extractor, device=dev)
        row["nearest"] = {k: row["_nearest"][k] for k in ("indices", "distances", "typical_distance", "searched")}
    except Exception as ex:  # noqa: BLE001 - the check is extra: its failure never costs the row
        echo(f"[compare] {e.label}: memorisation check failed: {_one_line(ex)}")


def _load(run: Path, name: str, device):
    """A run's checkpoint ``name``; an unreadable file is a one-line error naming it."""
    from . import api
    try:
        return api.load_run(run, checkpoint_name=name, device=device)
    except ZooError:
        raise
    except Exception as ex:  # noqa: BLE001 - a truncated or foreign file: say which
        raise ZooError(f"{run / 'checkpoints' / name} could not be loaded ({_one_line(ex)})") from None


# Result keys of the harness a leaderboard row takes (PLAN.md's shared names; missing ones stay None).
SCORE_KEYS = ("fid", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall", "modes", "class_kl",
              "mean_confidence", "bits_per_dim", "bits_per_dim_bound")


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
    data = load_images(cfg.data, "train")
    size, channels, bs = int(cfg.data.image_size), int(cfg.data.channels), int(cfg.trainer.batch_size)

    def one_pass():
        for i in range(0, len(data), bs):
            yield to_model_input(data[i:i + bs], size, channels, model.data_range, cfg.data.resize).to(model.device)
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


# --- all of it ------------------------------------------------------------------------------------
def compare(items, out, *, budget_minutes=None, steps=None, n=10000, seed=0, extractor=None, metrics=None,
            preset=None, sets=(), device="auto", options=None, sample_options=None, title="zoo comparison",
            echo=print, quiet=True, presets=None, reference=None, extra_references=(), nll=False, nll_n=None,
            nll_options=None,
            fid_points=FID_POINTS, fid_n=FID_N, fid_share=FID_SHARE, score_last=True) -> dict[str, Path]:
    """Check every item, train what is not trained yet, evaluate and report. Returns the report files.

    ``options``: sampling options forwarded to every model that declares them; ``sample_options``:
    ``{label or model name: {...}}`` for single models. ``fid_points``: at most this many cheap periodic
    FIDs (at most ``fid_n`` samples each) per trained run, taking at most ``fid_share`` of its training time
    (:mod:`zoo.fid_budget`); 0 turns them off (then the last checkpoint is ranked). While it works, a line is
    printed at least every ``trainer.progress_seconds`` (:mod:`zoo.compare_progress`).
    ``score_last=False`` skips the last checkpoint's FID when a best one is ranked (half the sampling).
    ``nll``: also bits/dim (models with ``log_likelihood``). Rows with an ``error`` are failures; see
    ``leaderboard.json``.
    """
    from . import __version__
    from .compare_report import write_reports
    extra_references = tuple(extra_references)
    entries = plan(items, out, preset=preset, presets=presets, sets=sets, budget_minutes=budget_minutes,
                   steps=steps, options=options, sample_options=sample_options, extractor=extractor,
                   metrics=metrics, reference=reference, extra_references=extra_references, nll=nll,
                   nll_options=nll_options, fid_points=fid_points, fid_n=fid_n, fid_share=fid_share)
    out = Path(out)
    t0 = time.time()
    with Heartbeat(echo, min(float(e.cfg.trainer.progress_seconds) for e in entries)) as beat:
        errors = train_all(entries, sets=sets, budget_minutes=budget_minutes, n=n, fid_points=fid_points,
                           fid_n=fid_n, quiet=quiet, echo=beat)
        try:
            rows = score_all(entries, errors, n=n, seed=seed, extractor=extractor, metrics=metrics, device=device,
                             reference=reference, extra_references=extra_references, nll=nll, nll_n=nll_n,
                             score_last=score_last, echo=beat)
        except KeyboardInterrupt:
            raise Interrupted("interrupted while scoring: run the same command again to score (the trained runs "
                              "are reused)") from None
    refs = {"reference (FID, KID, precision/recall)": {r["_reference"] for r in rows if "_reference" in r}}
    for spec in extra_references:
        refs[f"reference of 'FID vs {spec}'"] = {r[f"_reference_{spec}"] for r in rows if f"_reference_{spec}" in r}
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    chosen_options = "; ".join(f"{r['model']}: " + ", ".join(f"{k}={v}" for k, v in r["sample_options"].items())
                               for r in rows if r.get("sample_options")) or "each model's defaults"
    context = {"date": time.strftime("%Y-%m-%d"), "device": dev, "torch": torch.__version__, "zoo": __version__,
               "budget": f"{budget_minutes} min" if budget_minutes is not None else f"{steps} steps" if steps else
               "each run's own config",
               "preset": ", ".join(filter(None, [preset, *(f"{k}: {v}" for k, v in (presets or {}).items())])) or "-",
               "overrides": " ".join(sets) or "-", "sampling options": chosen_options,
               "samples per model": n, "extractor": ", ".join(sorted({r["_extractor"] for r in rows
                                                                       if r.get("_extractor")})) or extractor or "-",
               "seed": seed,
               "checkpoint ranked": ("the best by periodic FID where a run logged one (runs trained here: up to "
                                     f"{fid_points} points of up to {min(fid_n, n)} samples, taking at most "
                                     f"{fid_share:.0%} of the training time, the data's default extractor), else "
                                     "the last; 'FID last' is the last checkpoint's")
               if fid_points else "the best by periodic FID where a run logged one, else the last (periodic FID "
                                  "off for runs trained here)",
               **{k: "; ".join(sorted(v)) or "-" for k, v in refs.items()},
               "runs": f"{out / 'runs'} (tensorboard --logdir {out / 'runs'} overlays them)",
               "wall clock": f"{time.time() - t0:.0f} s"}
    return write_reports(rows, out, title, context)

"""`zoo compare`, stage 1: the plan -- every item is checked before anything trains.

Model names (with a did-you-mean), presets, ``--set`` overrides and the budget (the model's full config
is resolved), run directories (one compare trained with other settings is refused, a finished one is
reused, an interrupted one resumed), sampling and likelihood options (each goes to the models that
declare it), the extractor, the metrics and the references. A typo costs nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ZooError, did_you_mean
from .specs import FID_N, FID_POINTS, CompareSpec

__all__ = ["FID_N", "FID_POINTS", "MARKER", "Entry", "Interrupted", "ModelsFailed", "budget_sets", "plan"]
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
                                # | export (a `zoo export` folder or hf://ORG/NAME: trained elsewhere)
    preset: str | None = None
    options: dict = field(default_factory=dict)   # its checked sampling options
    nll_options: dict = field(default_factory=dict)  # its checked likelihood options (--nll-option)
    settings: dict = field(default_factory=dict)  # what it is trained with (recorded in OUT/runs/NAME/compare.json)


def _is_run(item) -> bool:
    return (Path(item) / "config.yaml").is_file()


def _is_export(item) -> bool:
    from .sources import HF_PREFIX, is_export
    return str(item).startswith(HF_PREFIX) or is_export(Path(item))


def _export_entry(item: str, presets: dict) -> Entry:
    """An export (a folder or hf://ORG/NAME[@REV]): scored as it is, never trained here."""
    from .sources import HF_PREFIX, resolve, source_config
    if item in presets:
        raise ZooError(f"--preset {item}=...: '{item}' is an export; presets apply to models trained here")
    cfg = source_config(item)  # a missing plugin: one line naming the package
    label = item[len(HF_PREFIX):] if item.startswith(HF_PREFIX) else Path(item).name
    return Entry(label, cfg.model_name, resolve(item), cfg, "export")


def budget_sets(budget_minutes=None, steps=None) -> list[str]:
    sets = []
    if budget_minutes is not None:
        sets += [f"trainer.max_minutes={budget_minutes}", "trainer.max_steps=null"]
    if steps is not None:
        sets += [f"trainer.max_steps={steps}"]
    return sets


def plan(items, out, spec: CompareSpec | None = None, **settings) -> list[Entry]:
    """Check and resolve every item before anything trains; returns one :class:`Entry` per item.

    ``spec`` / ``settings``: a :class:`~zoo.specs.CompareSpec` and any of its fields to change. Its
    ``options`` go to every model that declares them (an option no compared model declares is an
    error); ``sample_options``: ``{label or model name: {option: value}}`` for one model.
    """
    from .metrics import parse_metrics
    from .references import reference_for_config
    from .registry import registry
    s = CompareSpec.of(spec, settings)
    reg = registry()
    items = list(items)
    if not items:
        raise ZooError("name at least one model or run directory to compare (e.g. zoo compare vae gan)")
    presets = dict(s.presets or {})
    stray = sorted(set(presets) - set(items))
    if stray:
        raise ZooError(f"preset given for {', '.join(stray)}, which is not among the models compared "
                       f"({', '.join(items)})")
    entries = [_entry(item, Path(out), s) for item in items]
    seen: dict[str, str] = {}
    for e, item in zip(entries, items):
        if e.label in seen:
            raise ZooError(f"'{seen[e.label]}' and '{item}' would both be the leaderboard row '{e.label}': "
                           f"compare each model once (rename a run directory to compare two runs of one model)")
        seen[e.label] = item
    _assign_options(entries, s.options or {}, s.sample_options or {})
    if s.extractor is not None:
        reg.extractor(s.extractor)
    if "fid" not in parse_metrics(s.metrics):
        raise ZooError("zoo compare ranks by FID: keep fid in --metrics")
    if "last" in s.extra_references:
        raise ZooError("--reference last: name the folder ./last (the column fid_last is the last checkpoint's FID)")
    for e in entries:
        for ref in (s.reference, *s.extra_references):
            reference_for_config(e.cfg, ref)
    if s.nll_options:
        _assign_nll_options(entries, s.nll_options)
    if s.fid_points < 0 or s.fid_n < 2 or s.fid_share < 0:
        raise ZooError(f"periodic FID needs --fid-points >= 0, --fid-n >= 2 and --fid-share >= 0, got {s.fid_points}, "
                       f"{s.fid_n} and {s.fid_share}")
    return entries


def _entry(item: str, out: Path, s: CompareSpec) -> Entry:
    """One item checked: a trained run directory, or a model name resolved to the config it trains with."""
    from . import api
    from .registry import complete_data_config, model_config, registry
    reg, presets = registry(), dict(s.presets or {})
    if _is_export(item):
        return _export_entry(item, presets)
    if _is_run(item):
        run = Path(item)
        if item in presets:
            raise ZooError(f"--preset {item}=...: '{item}' is a trained run; presets apply to models trained here")
        cfg = api.run_config(run)
        reg.model(cfg.model_name)
        if not (run / "checkpoints" / "last.pt").is_file():
            raise ZooError(f"run '{run}' has no checkpoints/last.pt yet: finish it first "
                           f"(zoo train --resume --out {run}) or leave it out")
        return Entry(run.name, cfg.model_name, run, cfg, "run")
    if "/" in item or Path(item).exists():
        raise ZooError(f"'{item}' is neither a zoo run directory (no config.yaml) nor an export (no config.json) "
                       f"-- give a model name (`zoo list`), a run directory, an export or hf://ORG/NAME")
    reg.model(item)  # unknown name: one line with a did-you-mean, before anything trains
    chosen = presets.get(item, s.preset)
    sets = list(s.sets) + budget_sets(s.budget_minutes, s.steps)
    cfg = model_config(item, preset=chosen, sets=sets)
    complete_data_config(cfg)
    reg.dataset(cfg.data.name)
    run = out / "runs" / item
    settings = {"model": item, "preset": chosen, "sets": sets, "fid_points": s.fid_points, "fid_n": s.fid_n,
                "fid_share": s.fid_share}
    return Entry(item, item, run, cfg, _action(run, settings), chosen, settings=settings)


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

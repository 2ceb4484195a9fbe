"""`zoo compare`: train several models under one budget, score them the same way, write a leaderboard.

Outputs in ``--out``: ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json``, ``samples.png`` (one
grid per model, side by side), ``curves.png`` (training loss, and FID where logged, against time) and
``report.html`` (all of it in one self-contained page). A model that fails is a row with its error.
"""
from __future__ import annotations

import base64
import csv
import html
import json
import math
import time
import traceback
from pathlib import Path

import torch

from .errors import ZooError

COLUMNS = ["model", "fid", "is_mean", "kid_mean", "precision", "recall", "params", "steps", "train_seconds",
           "sample_seconds_per_1000", "error"]


def _is_run(item: str) -> bool:
    return (Path(item) / "config.yaml").is_file()


def train_all(items, out: Path, budget_minutes=None, steps=None, preset=None, sets=(), quiet=True,
              echo=print, presets=None) -> dict[str, dict]:
    """Train each model name (runs are reused) with the same budget; returns {label: {run|error}}.
    ``preset`` applies to every model, ``presets`` ({name: preset}) to the models it names."""
    from . import api
    results: dict[str, dict] = {}
    budget = []
    if budget_minutes is not None:
        budget += [f"trainer.max_minutes={budget_minutes}", "trainer.max_steps=null"]
    if steps is not None:
        budget += [f"trainer.max_steps={steps}"]
    for item in items:
        label = Path(item).name if _is_run(item) else item
        if _is_run(item):
            results[label] = {"run": Path(item)}
            continue
        run_dir = out / "runs" / item
        try:
            if (run_dir / "checkpoints" / "last.pt").is_file():
                echo(f"[compare] {item}: already trained in {run_dir}")
            else:
                echo(f"[compare] training {item} ...")
                api.train(item, preset=(presets or {}).get(item, preset), sets=list(sets) + budget, out=run_dir,
                          force=True, quiet=quiet)
            results[label] = {"run": run_dir}
        except Exception as e:  # noqa: BLE001 - one failing model never stops the comparison
            results[label] = {"error": _one_line(e)}
            echo(f"[compare] {item} failed: {results[label]['error']}")
    return results


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300] if not isinstance(e, ZooError) else str(e)


def score_all(results: dict, n: int, seed: int, extractor: str, metrics, device: str = "auto", echo=print,
              sample_options=None, reference=None, extra_references=()) -> list[dict]:
    """Sample ``n`` images from every run and score them against ``reference`` (see
    :func:`zoo.evaluate.reference_for_config`; default: each run's training images). Each of
    ``extra_references`` adds a column ``fid_<reference>`` (FID of the same samples against it)."""
    from . import api
    from .evaluate import evaluate_images, reference_for_config
    rows = []
    for label, r in results.items():
        row = {"model": label, "error": r.get("error", "")}
        if "run" in r:
            try:
                model = api.load_run(r["run"], device=api.pick_device(device))
                cfg = model.cfg
                row["params"] = sum(p.numel() for p in model.parameters())
                row["steps"] = getattr(model, "step", None)
                meta = _last_metrics(r["run"])
                row["train_seconds"] = round(meta.get("time", float("nan")), 1)
                opts = dict((sample_options or {}).get(cfg.model_name, {}))
                t0 = time.perf_counter()
                images = api.sample_images(model, n, seed=seed, **opts)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                row["sample_seconds_per_1000"] = round((time.perf_counter() - t0) / n * 1000, 3)
                echo(f"[compare] scoring {label} ({n} samples)")
                scores = evaluate_images(images, reference_for_config(cfg, reference), extractor=extractor,
                                         metrics=metrics)
                row.update({k: scores.get(k) for k in ("fid", "is_mean", "is_std", "kid_mean", "kid_std",
                                                       "precision", "recall")})
                row["_reference"] = scores["reference"]
                for spec in extra_references:
                    extra = evaluate_images(images, reference_for_config(cfg, spec), extractor=extractor,
                                            metrics=("fid",))
                    row[f"fid_{spec}"] = extra["fid"]
                    row[f"_reference_{spec}"] = extra["reference"]
                row["_grid"] = images[:64]
                row["_run"] = str(r["run"])
            except Exception as e:  # noqa: BLE001
                row["error"] = _one_line(e)
                row["_trace"] = traceback.format_exc()
                echo(f"[compare] scoring {label} failed: {row['error']}")
        rows.append(row)
    rows.sort(key=lambda r: (r.get("fid") is None, r.get("fid") if r.get("fid") is not None else math.inf))
    return rows


def _last_metrics(run_dir) -> dict:
    path = Path(run_dir) / "metrics.jsonl"
    last = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "time" in row:
                last["time"] = row["time"]
    return last


def _fmt(v, digits=3) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.3g}"
    if isinstance(v, int) and v >= 100_000:
        return f"{v / 1e6:.2f}M"
    if isinstance(v, int) and v >= 10_000:
        return f"{v / 1e3:.0f}k"
    return str(v)


def _columns(rows) -> list[str]:
    """COLUMNS with the extra-reference FID columns (``fid_<reference>``) after ``fid``."""
    extra = sorted({k for r in rows for k in r if k.startswith("fid_")})
    return COLUMNS[:2] + extra + COLUMNS[2:]


def write_reports(rows: list[dict], out: Path, title: str, context: dict) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    columns = _columns(rows)
    extra = [c for c in columns if c.startswith("fid_")]
    public = [{k: r.get(k) for k in columns} for r in rows]
    (out / "leaderboard.json").write_text(json.dumps({"context": context, "rows": public}, indent=2) + "\n")
    with open(out / "leaderboard.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(public)
    header = _header(extra)
    lines = [f"# {title}", "", *[f"- {k}: {v}" for k, v in context.items()], "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, r in enumerate(public, 1):
        cells = _cells(i, r, extra)
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines += ["", "![samples](samples.png)", "", "![curves](curves.png)", ""]
    (out / "leaderboard.md").write_text("\n".join(lines))
    samples_png, curves_png = out / "samples.png", out / "curves.png"
    _samples_figure(rows, samples_png)
    _curves_figure(rows, curves_png)
    _html(public, context, title, samples_png, curves_png, out / "report.html", extra)
    return {"md": out / "leaderboard.md", "csv": out / "leaderboard.csv", "json": out / "leaderboard.json",
            "samples": samples_png, "curves": curves_png, "html": out / "report.html"}


def _samples_figure(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid
    shown = [r for r in rows if "_grid" in r]
    k = max(1, len(shown))
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 3.6), squeeze=False)
    for ax in axes[0]:
        ax.axis("off")
    for ax, r in zip(axes[0], shown):
        grid = make_grid(r["_grid"].float(), nrow=8, padding=1, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0).numpy().clip(0, 1), cmap="gray" if grid.shape[0] == 1 else None)
        fid = r.get("fid")
        ax.set_title(f"{r['model']}\nFID {fid:.2f}" if fid is not None else r["model"], fontsize=10)
    if not shown:
        axes[0][0].text(0.5, 0.5, "no model produced samples", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves_figure(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_loss, ax_fid) = plt.subplots(1, 2, figsize=(11, 4))
    any_fid = False
    for r in rows:
        run = r.get("_run")
        if not run or not (Path(run) / "metrics.jsonl").is_file():
            continue
        series: dict[str, list] = {}
        for line in (Path(run) / "metrics.jsonl").read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            for k, v in row.items():
                if (k == "loss" or k.endswith("_loss") or k == "fid") and isinstance(v, (int, float)):
                    series.setdefault(k, []).append((row.get("time", 0.0), v))
        for k, pts in series.items():
            xs, ys = zip(*pts)
            if k == "fid":
                any_fid = True
                ax_fid.plot(xs, ys, marker="o", label=r["model"])
            else:
                ax_loss.plot(xs, ys, label=f"{r['model']} {k}" if k != "loss" else r["model"])
    ax_loss.set(xlabel="training time (s)", ylabel="loss", title="training loss", yscale="symlog")
    ax_fid.set(xlabel="training time (s)", ylabel="FID", title="FID during training" if any_fid else
               "FID during training (not logged: set trainer.eval_every)")
    for ax in (ax_loss, ax_fid):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _header(extra) -> list[str]:
    return ["#", "model", "FID ↓", *[f"FID vs {c[4:]} ↓" for c in extra], "IS ↑", "KID ↓", "precision ↑",
            "recall ↑", "params", "steps", "train s", "sample s/1k", "error"]


def _cells(i, r, extra) -> list[str]:
    return [str(i), r["model"], _fmt(r["fid"], 2), *[_fmt(r[c], 2) for c in extra], _fmt(r["is_mean"], 2),
            _fmt(r["kid_mean"], 4), _fmt(r["precision"]), _fmt(r["recall"]), _fmt(r["params"]), _fmt(r["steps"]),
            _fmt(r["train_seconds"], 1), _fmt(r["sample_seconds_per_1000"], 2), r["error"] or ""]


def _html(rows, context, title, samples_png: Path, curves_png: Path, path: Path, extra=()) -> None:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _header(extra))
    body = []
    for i, r in enumerate(rows, 1):
        cells = _cells(i, r, extra)
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    ctx = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in context.items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;}}table{{border-collapse:collapse;}}
td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right;}}td:nth-child(2){{text-align:left;}}
img{{max-width:100%;}}</style></head>
<body><h1>{html.escape(title)}</h1><ul>{ctx}</ul>
<table id="leaderboard"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<h2>Samples</h2><img id="samples" alt="samples" src="{_data_uri(samples_png)}">
<h2>Training curves</h2><img id="curves" alt="curves" src="{_data_uri(curves_png)}">
</body></html>
"""
    path.write_text(page)


def compare(items, out, *, budget_minutes=None, steps=None, n=10000, seed=0, extractor="mnist",
            metrics=("fid", "is", "kid", "prc"), preset=None, sets=(), device="auto", sample_options=None,
            title="zoo comparison", echo=print, quiet=True, presets=None, reference=None,
            extra_references=()) -> dict[str, Path]:
    """Train (what is not yet trained), evaluate and report. Returns the report file paths."""
    import torch as _torch
    from . import __version__
    if not items:
        raise ZooError("name at least one model or run directory to compare (e.g. zoo compare vae gan)")
    stray = sorted(set(presets or {}) - set(items))
    if stray:
        raise ZooError(f"preset given for {', '.join(stray)}, which is not among the models compared "
                       f"({', '.join(items)})")
    out = Path(out)
    t0 = time.time()
    results = train_all(items, out, budget_minutes, steps, preset, sets, quiet=quiet, echo=echo, presets=presets)
    rows = score_all(results, n, seed, extractor, metrics, device, echo, sample_options, reference,
                     tuple(extra_references))
    refs = {"reference (FID, KID, precision/recall)": {r["_reference"] for r in rows if "_reference" in r}}
    for spec in extra_references:
        refs[f"reference of 'FID vs {spec}'"] = {r[f"_reference_{spec}"] for r in rows if f"_reference_{spec}" in r}
    dev = _torch.cuda.get_device_name(0) if _torch.cuda.is_available() else "CPU"
    context = {"date": time.strftime("%Y-%m-%d"), "device": dev, "torch": _torch.__version__, "zoo": __version__,
               "budget": f"{budget_minutes} min" if budget_minutes is not None else f"{steps} steps" if steps else
               "each run's own config",
               "preset": ", ".join(filter(None, [preset, *(f"{k}: {v}" for k, v in (presets or {}).items())])) or "-",
               "overrides": " ".join(sets) or "-",
               "samples per model": n, "extractor": extractor, "seed": seed,
               **{k: "; ".join(sorted(v)) or "-" for k, v in refs.items()},
               "wall clock": f"{time.time() - t0:.0f} s"}
    return write_reports(rows, out, title, context)

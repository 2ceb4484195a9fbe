"""The files `zoo compare` writes: leaderboard.md/.csv/.json, samples.png, curves.png, memorisation.png and
a self-contained report.html (every figure embedded).

A row is a :class:`Row`: the model, its error, its values -- the result keys of the registered metrics
(``fid``, ``is_mean``, ``kid_mean``, ``precision``, ``recall``, ``bits_per_dim``, ``modes``, ...) plus
compare's own (``fid_last``, ``best_step``, ``params``, ``steps``, ...) -- and what only the figures use
(samples, the memorisation check's images, the run directory). The columns, headers and cells of the
metrics come from their declarations (zoo/metrics.py); a value not measured is ``—`` in the tables and
``null`` in the JSON. Plain dicts are accepted too (``_grid``, ``_run``, ``_nearest``, ... as in older zoo).
"""
from __future__ import annotations

import base64
import csv
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .metrics import registered
from .scores import ABSENT, Score, fmt

AFTER_FID = ["fid_last", "best_step"]                            # compare's own, next to the ranked FID
OWN = ["params", "steps", "train_seconds", "sample_seconds_per_1000", "error"]
OWN_HEADERS = ["params", "steps", "train s", "sample s/1k", "error"]
OWN_JSON = ["sample_options", "fid_curve", "nearest", "nll_options", "origin"]
_PRIVATE = {"_grid": "grid", "_grid_columns": "grid_columns", "_nearest": "neighbours", "_run": "run",
            "_extractor": "extractor", "_reference": "reference", "_trace": "trace"}


@dataclass
class Row:
    """One model's line of the leaderboard, and what the report's figures draw."""
    model: str
    error: str = ""
    values: dict = field(default_factory=dict)      # metric result keys, fid_last, fid_<reference>, best_step, ...
    grid: Any = None                                # up to 64 samples (samples.png)
    grid_columns: int = 8                           # images a row in samples.png (a conditional run: its classes)
    neighbours: dict | None = None                  # zoo.memorisation.nearest_training_images (memorisation.png)
    run: str | None = None                          # its run directory (curves.png reads metrics.jsonl)
    extractor: str | None = None
    reference: str | None = None                    # what the scores were measured against
    references: dict = field(default_factory=dict)  # extra reference spec -> its description
    trace: str = ""                                 # the traceback of a scoring failure

    def get(self, key: str, default=None):
        return {"model": self.model, "error": self.error}.get(key, self.values.get(key, default))

    @classmethod
    def of(cls, row: "Row | dict") -> "Row":
        """A :class:`Row`, from a row or a plain dict (its ``_`` keys become the figures' fields)."""
        if isinstance(row, Row):
            return row
        out = cls(row["model"], row.get("error") or "")
        for k, v in row.items():
            if k in _PRIVATE:
                setattr(out, _PRIVATE[k], v)
            elif k.startswith("_reference_"):
                out.references[k[len("_reference_"):]] = v
            elif k not in ("model", "error") and not k.startswith("_"):
                out.values[k] = v
        return out


def extra_columns(rows) -> list[str]:
    """The FID columns of extra references (``fid_<reference>``)."""
    return sorted({k for r in rows for k in Row.of(r).values
                   if k.startswith("fid_") and k not in ("fid_last", "fid_curve")})


def shown_scores(rows) -> list[Score]:
    """The scores of the metrics a leaderboard shows: those computed by default, those of the model
    (the likelihood), and any other one that some row measured -- the ranked FID's first. Metrics that
    judge conditioning (label accuracy, intra-class FID) show once some row is a conditional run's, with
    ``—`` for the unconditional ones."""
    rows = [Row.of(r) for r in rows]
    return [s for m in registered().values()
            if (m.default and not m.conditional) or not m.on_samples
            or any(r.get(sc.key) is not None for r in rows for sc in m.scores)
            for s in m.scores]


def columns(rows) -> list[str]:
    """model, the ranked FID, fid_last, best_step, the extra-reference FIDs, the other metrics' columns,
    then compare's own."""
    keys = [s.key for s in shown_scores(rows) if s.label or s.column]
    return ["model", *keys[:1], *AFTER_FID, *extra_columns(rows), *keys[1:], *OWN]


def write_reports(rows: list, out: Path, title: str, context: dict) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [Row.of(r) for r in rows]
    cols = columns(rows)
    extra = extra_columns(rows)
    scores = shown_scores(rows)
    json_only = [s.key for s in scores if not (s.label or s.column)] + OWN_JSON
    public = [{k: r.get(k) for k in cols} for r in rows]
    (out / "leaderboard.json").write_text(json.dumps(
        {"context": context, "rows": [{**p, **{k: r.get(k) for k in json_only}} for p, r in zip(public, rows)]},
        indent=2) + "\n")
    with open(out / "leaderboard.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(public)
    header = _header(extra, scores)
    lines = [f"# {title}", "", *[f"- {k}: {v}" for k, v in context.items()], "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, r in enumerate(public, 1):
        lines.append("| " + " | ".join(c.replace("|", "/") for c in _cells(i, r, extra, scores)) + " |")
    files = {"md": out / "leaderboard.md", "csv": out / "leaderboard.csv", "json": out / "leaderboard.json",
             "samples": out / "samples.png", "curves": out / "curves.png", "memorisation": out / "memorisation.png",
             "html": out / "report.html"}
    lines += ["", "![samples](samples.png)", "", "![curves](curves.png)", "",
              "Memorisation check: samples (top) and their nearest training images (bottom).", "",
              "![memorisation](memorisation.png)", ""]
    files["md"].write_text("\n".join(lines))
    samples_figure(rows, files["samples"])
    curves_figure(rows, files["curves"])
    memorisation_figure(rows, files["memorisation"])
    _html(public, rows, context, title, files, (extra, scores))
    return files


# --- table cells ---------------------------------------------------------------------------------
def _header(extra, scores) -> list[str]:
    shown = [s for s in scores if s.label]
    first = [f"{shown[0].header} (best ckpt)", "FID last", "best step"] if shown else []
    return ["#", "model", *first, *[f"FID vs {c[4:]} ↓" for c in extra], *[s.header for s in shown[1:]],
            *OWN_HEADERS]


def _cells(i, r, extra, scores) -> list[str]:
    shown = [s for s in scores if s.label]
    first = [shown[0].show(r), fmt(r.get("fid_last"), 2), fmt(r.get("best_step"))] if shown else []
    return [str(i), r["model"], *first, *[fmt(r[c], 2) for c in extra], *[s.show(r) for s in shown[1:]],
            fmt(r["params"]), fmt(r["steps"]), fmt(r["train_seconds"], 1), fmt(r["sample_seconds_per_1000"], 2),
            r["error"] or ""]


# --- figures -------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _show(ax, images, nrow: int) -> None:
    from torchvision.utils import make_grid
    images = images.float() / 255 if not images.is_floating_point() else images.float()
    grid = make_grid(images, nrow=nrow, padding=1, pad_value=1.0)
    ax.imshow(grid.permute(1, 2, 0).numpy().clip(0, 1), cmap="gray" if grid.shape[0] == 1 else None)


def samples_figure(rows, path: Path) -> None:
    plt = _pyplot()
    shown = [r for r in map(Row.of, rows) if r.grid is not None]
    k = max(1, len(shown))
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 3.6), squeeze=False)
    for ax in axes[0]:
        ax.axis("off")
    for ax, r in zip(axes[0], shown):
        _show(ax, r.grid, r.grid_columns)
        fid = r.get("fid")
        ax.set_title(f"{r.model}\nFID {fid:.2f}" if fid is not None else r.model, fontsize=10)
    if not shown:
        axes[0][0].text(0.5, 0.5, "no model produced samples", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _series(run: str) -> dict[str, list]:
    """``{key: [(seconds, value), ...]}`` for ``loss``, ``*_loss`` and ``fid`` in a run's metrics.jsonl."""
    series: dict[str, list] = {}
    for line in (Path(run) / "metrics.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        for k, v in row.items():
            if (k == "loss" or k.endswith("_loss") or k == "fid") and isinstance(v, (int, float)) \
                    and math.isfinite(v):
                series.setdefault(k, []).append((row.get("time", 0.0), v))
    return series


def curves_figure(rows, path: Path, ncols: int = 4) -> dict:
    """FID against training time for every model on one axis (the periodic FID), then one loss panel per
    model -- losses are in different units (nats per image, bits/dim, a GAN's two players), so they never
    share an axis. Returns what was drawn: ``{"fid": [models], "loss_panels": [models]}``."""
    plt = _pyplot()
    runs = [(r.model, _series(r.run)) for r in map(Row.of, rows) if r.run and (Path(r.run) / "metrics.jsonl").is_file()]
    ncols = max(1, min(ncols, len(runs)))
    loss_rows = max(1, math.ceil(len(runs) / ncols))
    fig = plt.figure(figsize=(max(8.0, 3.3 * ncols), 3.8 + 2.6 * loss_rows))
    grid = fig.add_gridspec(1 + loss_rows, ncols, height_ratios=[1.5] + [1.0] * loss_rows)
    ax_fid = fig.add_subplot(grid[0, :])
    drawn: dict = {"fid": [], "loss_panels": []}
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {model: palette[i % len(palette)] for i, (model, _) in enumerate(runs)}  # one per model, both panels
    for model, series in runs:
        if series.get("fid"):
            xs, ys = zip(*series["fid"])
            ax_fid.plot(xs, ys, marker="o", markersize=3, label=model, color=colour[model])
            j = min(range(len(ys)), key=ys.__getitem__)
            ax_fid.plot([xs[j]], [ys[j]], marker="*", markersize=11, color=colour[model])
            drawn["fid"].append(model)
    ax_fid.set(xlabel="training time (s)", ylabel="FID (periodic, few samples)",
               title="FID during training (★ best)" if drawn["fid"] else
               "FID during training (none logged: periodic FID was off)")
    if drawn["fid"]:
        ax_fid.legend(fontsize=8, ncol=min(4, len(drawn["fid"])))
        if max(max(v for _, v in s["fid"]) for _, s in runs if s.get("fid")) > 20 * \
                min(min(v for _, v in s["fid"]) for _, s in runs if s.get("fid")):
            ax_fid.set_yscale("log")
    for i, (model, series) in enumerate(runs):
        ax = fig.add_subplot(grid[1 + i // ncols, i % ncols])
        losses = {k: v for k, v in series.items() if k != "fid"}
        for k, pts in losses.items():
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=k, linewidth=1, **({"color": colour[model]} if len(losses) == 1 else {}))
        values = [v for pts in losses.values() for _, v in pts]
        if values and min(values) > 0 and max(values) > 50 * min(values):
            ax.set_yscale("log")
        ax.set_title(model, fontsize=10, color=colour[model])
        ax.tick_params(labelsize=7)
        ax.set_xlabel("training time (s)", fontsize=8)
        if len(losses) > 1:
            ax.legend(fontsize=7)
        drawn["loss_panels"].append(model)
    if not runs:
        ax_fid.text(0.5, 0.5, "no run to plot", ha="center", va="center", transform=ax_fid.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn


def memorisation_figure(rows, path: Path) -> list[str]:
    """Per model: a few samples (top) over their nearest training images in feature space (bottom),
    with the distances and the typical distance between neighbouring training images. Returns the models
    shown."""
    import torch
    plt = _pyplot()
    shown = [r for r in map(Row.of, rows) if r.neighbours]
    fig, axes = plt.subplots(max(1, len(shown)), 1, figsize=(8, 2.3 * max(1, len(shown))), squeeze=False)
    for ax in axes[:, 0]:
        ax.axis("off")
    for ax, r in zip(axes[:, 0], shown):
        nn = r.neighbours
        _show(ax, torch.cat([nn["images"].cpu(), nn["neighbours"].cpu()]), len(nn["images"]))
        ax.set_title(f"{r.model}: feature distance to the nearest of {nn['searched']} training images "
                     f"{', '.join(f'{d:.2f}' for d in nn['distances'])}\n(typical distance between neighbouring "
                     f"training images: {nn['typical_distance']:.2f}; a copy would be near 0)", fontsize=8)
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no model produced samples", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [r.model for r in shown]


# --- report.html ---------------------------------------------------------------------------------
def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _html(public, rows, context, title, files, columns) -> None:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _header(*columns))
    body = []
    for i, r in enumerate(public, 1):
        cells = _cells(i, r, *columns)
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    ctx = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in context.items())
    near = [r for r in rows if r.get("nearest")]
    memo = "".join(f"<li>{html.escape(r.model)}: nearest-neighbour distances "
                   f"{html.escape(', '.join(f'{d:.2f}' for d in r.get('nearest')['distances']))} "
                   f"(typical between training images: {r.get('nearest')['typical_distance']:.2f})</li>" for r in near)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;}}table{{border-collapse:collapse;}}
td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right;}}td:nth-child(2){{text-align:left;}}
img{{max-width:100%;}}</style></head>
<body><h1>{html.escape(title)}</h1><ul>{ctx}</ul>
<table id="leaderboard"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<p>{ABSENT}: not measured for that model (bits/dim needs a model with a likelihood and --nll; modes and class KL
need the digit classifier; label acc and intra-FID need a conditional run). Ranked by the FID of each model's
best checkpoint by periodic FID; FID last is its last checkpoint's.</p>
<h2>Samples</h2><img id="samples" alt="samples" src="{_data_uri(files['samples'])}">
<h2>Training curves</h2><img id="curves" alt="curves" src="{_data_uri(files['curves'])}">
<h2 id="memorisation">Memorisation check</h2>
<p>A few samples of each model (top row) next to their nearest training images in the feature extractor's
space (bottom row). A sample much closer to a training image than training images are to each other is a
copy.</p><ul>{memo}</ul>
<img id="nearest" alt="samples and their nearest training images" src="{_data_uri(files['memorisation'])}">
</body></html>
"""
    Path(files["html"]).write_text(page)


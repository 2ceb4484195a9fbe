"""``zoo eval RUN --guidance 0,1,2,4``: the guidance sweep -- FID, intra-class FID and label accuracy at each
classifier-free guidance scale, as a table, in eval.json and as a plot of the quality/faithfulness trade-off.

Each scale is one ordinary evaluation (zoo/evaluate.py) of the same samples' seed and labels with the sampling
option ``guidance`` set to it (the convention of zoo/contract.py: eps = eps_c + w (eps_c - eps_u), w = 0 the
plain conditional sampler; diffusers' scale is 1 + w). :func:`parse_guidance` and :func:`check_guidance` run
before any work; the harness is imported when the sweep starts.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .errors import ZooError

SHARED = ("model", "step", "n", "extractor", "extractor_weights", "reference", "n_reference", "reference_stats",
          "seed", "metrics", "num_classes", "sample_labels", "label_accuracy_real", "label_accuracy_real_images",
          "intra_fid_real_images")
"""Result keys that are the same at every scale: kept once, at the top of the sweep's result."""
COLUMNS = (("guidance", "guidance", "g"), ("FID", "fid", ".3f"), ("intra-FID", "intra_fid", ".3f"),
           ("label acc", "label_accuracy", ".3f"), ("precision", "precision", ".3f"), ("recall", "recall", ".3f"))


def parse_guidance(text: str | None) -> list[float]:
    """``"0,1,2,4"`` -> ``[0.0, 1.0, 2.0, 4.0]``; each a number >= 0, else a one-line error."""
    if text is None:
        return []
    items = [t.strip() for t in str(text).split(",")]
    try:
        values = [float(t) for t in items]
    except ValueError:
        raise ZooError(f"--guidance {text!r}: expected a scale or comma-separated scales, e.g. --guidance 2 or "
                       f"--guidance 0,1,2,4") from None
    bad = [t for t, v in zip(items, values) if not v >= 0 or v == float("inf")]
    if bad:
        raise ZooError(f"--guidance {bad[0]}: guidance scales are numbers >= 0 (0: no guidance)")
    return values


def check_sweep_args(scales, option_items, nll: bool, plot) -> None:
    """One-line errors for what does not go with a sweep (several ``scales``): ``--option guidance=`` too,
    ``--nll``, and a ``--out`` plot without a sweep or not a writable .png."""
    sweep = len(scales) > 1
    if sweep and any(str(item).split("=")[0].strip() == "guidance" for item in option_items):
        raise ZooError("--guidance and --option guidance=... both set 'guidance': give it once")
    if sweep and nll:
        raise ZooError("--nll with a guidance sweep: the likelihood does not change with the sampling guidance -- "
                       "measure it once with zoo eval RUN --nll --metrics none")
    if plot is None:
        return
    if not sweep:
        raise ZooError("--out is where a guidance sweep's plot goes: add --guidance with several scales "
                       "(e.g. --guidance 0,1,2,4)")
    if Path(plot).suffix.lower() != ".png":
        raise ZooError(f"--out {plot}: the sweep's plot is a .png file")
    from .paths import check_writable
    check_writable(plot, "--out", folder=Path(plot).parent)


def check_guidance(cls, cfg, run_dir) -> None:
    """One-line errors, before the model is loaded: the model declares no ``guidance`` sampling option, or
    the run is not conditional."""
    name = cfg.get("model_name") or cls.__name__.lower()
    if "guidance" not in (getattr(cls, "sample_options", None) or {}):
        raise ZooError(f"model '{name}' has no 'guidance' sampling option (classifier-free guidance), so --guidance "
                       f"does not apply to it; `zoo list {name}` shows its options")
    if not (cfg.get("model") or {}).get("conditional"):
        raise ZooError(f"--guidance needs a conditional run: '{run_dir}' was trained without labels "
                       f"(train it with --set model.conditional=true)")


def sweep(model, reference, spec, scales, echo=None) -> dict:
    """Evaluate ``model`` at each guidance scale (``spec``: the :class:`~zoo.specs.EvalSpec` of one
    evaluation). Returns ``{SHARED keys..., "guidance": scales, "sweep": [result per scale], "warnings"}``."""
    from .evaluate import evaluate
    results = []
    for w in scales:
        if echo:
            echo(f"guidance {w:g} ({len(results) + 1} of {len(scales)})")
        options = {**dict(spec.sample_options or {}), "guidance": w}
        results.append({"guidance": w, **evaluate(model, reference, replace(spec, sample_options=options))})
    warnings = list(dict.fromkeys(w for r in results for w in r.get("warnings") or []))
    return {**{k: results[0].get(k) for k in SHARED}, "guidance": list(scales), "sweep": results,
            "warnings": warnings}


def sweep_table(result: dict) -> str:
    """One line per scale: guidance, FID, intra-FID, label accuracy, precision, recall (``—``: not measured);
    the real held-out images' label accuracy (the ceiling) under it."""
    from .scores import ABSENT
    rows = result["sweep"]
    cols = [c for c in COLUMNS if c[1] == "guidance" or any(r.get(c[1]) is not None for r in rows)]
    lines = ["  ".join(f"{h:>10}" for h, _, _ in cols)]
    for r in rows:
        lines.append("  ".join(f"{ABSENT if r.get(k) is None else format(r[k], f):>10}" for _, k, f in cols))
    if result.get("label_accuracy_real") is not None:
        lines.append(f"label accuracy of the real images (the ceiling): {result['label_accuracy_real']:.3f} "
                     f"({result.get('label_accuracy_real_images')})")
    return "\n".join(lines)


def sweep_figure(result: dict, path) -> Path:
    """FID (and intra-class FID) against label accuracy, one point per scale labelled with it: the
    quality/faithfulness trade-off. Against the guidance scale where label accuracy was not measured."""
    from .compare_report import _pyplot
    plt = _pyplot()
    rows, path = result["sweep"], Path(path)
    faithful = all(r.get("label_accuracy") is not None for r in rows)
    xs = [r["label_accuracy"] if faithful else r["guidance"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    named = False
    for key, label, marker in (("fid", "FID", "o"), ("intra_fid", "intra-class FID", "s")):
        pts = [(x, r[key], r["guidance"]) for x, r in zip(xs, rows) if r.get(key) is not None]
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label)
        for x, y, w in pts if not named else ():   # each scale named once, on the first curve drawn
            ax.annotate(f"w={w:g}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        named = True
    real = result.get("label_accuracy_real")
    if faithful and real is not None:
        ax.axvline(real, color="grey", linestyle=":", label=f"real images' label accuracy {real:.3f}")
    ax.set(xlabel="label accuracy (faithfulness) →" if faithful else "guidance scale w", ylabel="FID (quality) ↓",
           title=f"{result.get('model') or 'model'}: guidance sweep, {result.get('n')} samples per scale")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

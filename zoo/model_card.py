"""The model card (README.md) of an export: Hub front matter, how to use it, how it was trained, its scores
with what measured them, and the sample grid."""
from __future__ import annotations

TASK = "unconditional-image-generation"


def card(meta: dict, scores: dict | None, where: str) -> str:
    cfg, train, w = meta["config"], meta["training"], meta["weights"]
    data = cfg.get("data", {})
    conditional = bool(cfg.get("model", {}).get("conditional"))
    family = meta.get("family") or meta["plugin"]["name"]
    tags = sorted({"zoo", "image-generation", "safetensors", meta["model_name"], family, data.get("name", "")} - {""})
    front = ["---", "library_name: zoo", f"pipeline_tag: {TASK}", "tags:", *[f"- {t}" for t in tags],
             "datasets:", f"- {data.get('name')}"] + (["metrics:", "- fid"] if scores and "fid" in scores else []) + \
        ["---", ""]
    shape = "x".join(str(s) for s in meta["image_shape"])
    src = where  # hf://ORG/NAME when pushed, else the folder
    lines = [f"# {meta['model_name']} on {data.get('name')} (zoo)", "",
             f"A `{meta['model_name']}` model ({meta['plugin']['name']} plugin, package `{meta['plugin']['package']}` "
             f"{meta['plugin']['version']}) trained with zoo on {data.get('name')} "
             f"({shape} images{', class-conditional' if conditional else ''}), exported by `zoo export` "
             f"({w['checkpoint']}, {'EMA' if w['ema'] else 'raw'} weights, {w['parameters']:,} parameters).", "",
             "![samples](samples.png)", "", "## Use it", "", "```bash",
             f"zoo sample {src} -n 64 --out grid.png", f"zoo eval {src} -n 10000", "```", "", "```python",
             "import torch, zoo", f"model = zoo.load({src!r})",
             "images = model.sample(16, torch.Generator().manual_seed(0))  # (16, C, H, W) in [0, 1]", "```", "",
             *([f"It needs the plugin package `{meta['plugin']['package']}` (pip install "
                f"{meta['plugin']['package']}); without it, loading says so.", ""]
               if meta["plugin"]["package"] not in ("zoo", "?") else []),
             "## Training", "", *_training(train, data), "", "## Scores", "", *_scores(scores), "",
             "## Files", "",
             f"- `model.safetensors`: {w['tensors']} tensors (weights and fitted buffers); tensors only, no pickle. "
             f"SHA-256 `{w['sha256']}`, recorded in `config.json` and checked on every load.",
             "- `config.json`: the resolved config (the data root left out), model name, plugin package and "
             "version, image shape and range.", ""]
    return "\n".join(front + lines)


def _training(train: dict, data: dict) -> list[str]:
    s = train.get("seconds")
    minutes = "time not logged" if s is None else f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} minutes"
    device = train.get("device") or "?"
    if train.get("device_name") and train.get("device_name") != device:
        device += f" ({train['device_name']})"
    holdout = f", {data.get('holdout')} images held out" if data.get("holdout") else ""
    return [f"- {train['steps']:,} steps, {minutes}, on {device}" +
            (f" x {train['world_size']}" if (train.get("world_size") or 1) > 1 else ""),
            f"- data: {data.get('name')}, {data.get('split')} split{holdout}",
            f"- preset: {train.get('preset') or 'none'}; torch {train.get('torch')}, zoo {train.get('zoo')}; "
            f"started {train.get('started')}"]


def _scores(scores: dict | None) -> list[str]:
    if not scores:
        return ["Not measured: `zoo eval` the run before exporting, or export with `--eval`."]
    from .cli_eval import result_table
    what = [f"{scores.get('n')} samples" if scores.get("n") else None,
            f"extractor {scores.get('extractor')}" if scores.get("extractor") else None,
            f"against {scores.get('reference')}" if scores.get("reference") else None]
    return [f"Measured with {', '.join(x for x in what if x)}; from {scores.get('source')}.", "", "```",
            result_table(scores), "```"]

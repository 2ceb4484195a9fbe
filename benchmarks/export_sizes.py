"""The size of `zoo export` per model: each model zoo lists is trained for one step with the preset zoo picks on
this machine (the size does not depend on training), exported, and its files measured.

    ZOO_DATA=/path/to/mnist python benchmarks/export_sizes.py --sets data.split=test data.holdout=1000

Prints a Markdown table: parameters, model.safetensors, the whole folder (with its 64-sample grid), and the
run's checkpoints/last.pt for comparison (weights + EMA + optimizer state).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import zoo
from zoo.export import export
from zoo.registry import list_models


def sizes(name: str, root: Path, sets: list[str]) -> list[str]:
    run = root / "runs" / name
    zoo.train(name, sets=[*sets, "trainer.max_steps=1", "trainer.eval_every=null"], out=run)
    out = export(run, root / "exports" / name, echo=lambda m: None)
    import json
    meta = json.loads((out / "config.json").read_text())
    folder = sum(p.stat().st_size for p in out.iterdir())
    mb = lambda b: f"{b / 1e6:.2f} MB"  # noqa: E731
    return [name, meta["config"].get("preset") or "-", f"{meta['weights']['parameters']:,}",
            mb((out / "model.safetensors").stat().st_size), mb(folder),
            mb((run / "checkpoints" / "last.pt").stat().st_size)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="*", default=[], help="--set overrides for every model (e.g. data.split=test)")
    ap.add_argument("--models", nargs="*", help="default: every model zoo lists")
    args = ap.parse_args()
    rows = [["model", "preset", "parameters", "model.safetensors", "export folder", "run's last.pt"]]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models or list_models():
            rows.append(sizes(name, Path(tmp), args.sets))
    print("\n".join("| " + " | ".join(r) + " |" + ("\n|" + "---|" * len(r) if i == 0 else "")
                    for i, r in enumerate(rows)))


if __name__ == "__main__":
    main()

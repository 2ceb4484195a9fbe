"""FID at fixed training minutes, and the minute DDPM passes each other family, read from one `zoo compare`.

The study trains every family with ``--set trainer.eval_at_minutes=[1,3,10,30]`` beside compare's periodic FID,
so each run's metrics.jsonl holds a quick FID at the first step past each mark (and the curve's other points):

    zoo compare ddpm flow gan lsgan dcgan vae ae --budget-minutes 30 -n 1000 --reference holdout \\
        --set data.split=test --set data.holdout=1000 --set "trainer.eval_at_minutes=[1,3,10,30]" \\
        --fid-points 10 --fid-n 300 --fid-share 0.35 --out STUDY
    python benchmarks/fid_at_minutes.py STUDY --minutes 1,3,10,30 --leader ddpm > STUDY/fid-at-minutes.md

Each cell is the quick FID of the evaluation taken at the first step past that minute (the same number of samples
for every point of a run, ``trainer.eval_n``, shown per run: FID depends on it), against the run's training
images as the trainer's periodic FID is;
the crossing minute interpolates both curves linearly between their points, once for the runs as they are at each
minute (their last checkpoints) and once for their best checkpoints so far (each curve's running minimum: a run
that gets worse, as a GAN after its early best, is read at the best.pt it keeps). The leaderboard's FID (n samples
against the held-out digits, best and last checkpoint) is the other table, in STUDY/leaderboard.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def curve(run: Path) -> list[tuple[float, float, int]]:
    """(minutes of training, quick FID, step) of every periodic FID of a run, in order."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["time"] / 60, r["fid"], r["step"]) for r in rows if "fid" in r and "time" in r]


def at(points, minute: float):
    """(FID, minute, step) of the first evaluation at or past ``minute`` (where eval_at_minutes put one right
    after it; a run without marks shows how late its next point came), else None."""
    later = [p for p in points if p[0] >= minute - 1e-9]
    if not later:
        return None
    t, fid, step = min(later)
    return fid, t, step


def interpolate(points, minute: float):
    """The curve's FID at ``minute`` by linear interpolation between its points (None outside them)."""
    for (t0, f0, _), (t1, f1, _) in zip(points, points[1:]):
        if t0 <= minute <= t1:
            return f0 + (f1 - f0) * (minute - t0) / max(t1 - t0, 1e-12)
    return None


def crossing(leader, other) -> str:
    """When ``leader``'s interpolated FID gets below ``other``'s for good: the first minute from which it is below
    at every later point of either curve, said as a phrase -- also when it is ahead from the first minute both
    curves cover, or never. Between two neighbouring minutes of the merged points both curves are straight, so
    the crossing there is where their difference, linear too, reaches zero."""
    if len(leader) < 2 or len(other) < 2:
        return "too few points to tell"
    times = sorted({t for t, _, _ in leader + other})
    gaps = []  # (minute, leader's FID - other's): below where negative
    for t in times:
        a, b = interpolate(leader, t), interpolate(other, t)
        if a is not None and b is not None:
            gaps.append((t, a - b))
    if not gaps:
        return "the curves share no minutes"
    for i, (t, d1) in enumerate(gaps):
        if all(d < 0 for _, d in gaps[i:]):
            if i == 0:
                return f"ahead from the first minute both curves cover ({t:.1f})"
            t0, d0 = gaps[i - 1]  # d0 >= 0: not below yet
            return f"{t0 + (t - t0) * d0 / (d0 - d1):.1f}"
    return f"does not (up to minute {gaps[-1][0]:.1f})"


def best_so_far(points) -> list[tuple[float, float, int]]:
    """The curve of what a run's best checkpoint scores at each minute: the lowest quick FID up to that point (the
    trainer keeps ``best.pt`` by it). A GAN that collapses after an early best is read at its best."""
    out, low = [], float("inf")
    for t, fid, step in points:
        low = min(low, fid)
        out.append((t, low, step))
    return out


def eval_n(run: Path) -> str:
    """The samples of each quick FID of a run (trainer.eval_n in its config.yaml)."""
    import yaml
    cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    return str((cfg.get("trainer") or {}).get("eval_n", "?"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", type=Path, help="a zoo compare --out folder")
    ap.add_argument("--minutes", default="1,3,10,30")
    ap.add_argument("--leader", default="ddpm", help="the run whose crossings are given")
    ap.add_argument("--plot", type=Path, help="also draw every run's FID and loss curves here (compare's curves.png, "
                    "for all runs in STUDY/runs, also those scored by an earlier compare into the same folder)")
    args = ap.parse_args()
    minutes = [float(m) for m in args.minutes.split(",")]
    runs = sorted(p for p in (args.study / "runs").iterdir() if (p / "metrics.jsonl").is_file())
    curves = {r.name: curve(r) for r in runs}
    lines = ["| model | " + " | ".join(f"FID at {m:g} min" for m in minutes) + " | points | samples each |",
             "|---|" + "---|" * (len(minutes) + 2)]
    for name, pts in curves.items():
        cells = []
        for m in minutes:
            v = at(pts, m)
            cells.append("—" if v is None else f"{v[0]:.2f} ({v[1]:.1f} min, step {v[2]:,})")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(pts)} | {eval_n(args.study / 'runs' / name)} |")
    if args.leader in curves:
        lead = curves[args.leader]
        lines += ["", f"| {args.leader} passes | at minute (last checkpoints) | at minute (best checkpoints so far) |",
                  "|---|---|---|"]
        for name, pts in curves.items():
            if name != args.leader:
                lines.append(f"| {name} | {crossing(lead, pts)} | {crossing(best_so_far(lead), best_so_far(pts))} |")
    print("\n".join(lines))
    if args.plot:
        from zoo.compare_report import Row, curves_figure
        drawn = curves_figure([Row(r.name, run=str(r)) for r in runs], args.plot)
        print(f"{args.plot}: FID curves of {', '.join(drawn['fid']) or 'none'}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""FID at fixed training minutes, and the minute DDPM passes each other family, read from one `zoo compare`.

The study trains every family with ``--set trainer.eval_at_minutes=[1,3,10,30]`` beside compare's periodic FID,
so each run's metrics.jsonl holds a quick FID at the first step past each mark (and the curve's other points):

    zoo compare ddpm flow gan lsgan dcgan vae ae --budget-minutes 30 -n 1000 --reference holdout \\
        --set data.split=test --set data.holdout=1000 --set "trainer.eval_at_minutes=[1,3,10,30]" \\
        --fid-points 10 --fid-n 300 --fid-share 0.35 --out STUDY
    python benchmarks/fid_at_minutes.py STUDY --minutes 1,3,10,30 --leader ddpm > STUDY/fid-at-minutes.md

Each cell is the quick FID of the evaluation taken at the first step past that minute (same samples count for
every point of a run: ``trainer.eval_n``), against the run's training images as the trainer's periodic FID is;
the crossing minute interpolates both curves linearly between their points. The leaderboard's FID (n samples
against the held-out digits, best and last checkpoint) is the other table, in STUDY/leaderboard.md.
"""
from __future__ import annotations

import argparse
import json
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


def crossing(leader, other) -> float | None:
    """The first minute at which ``leader``'s interpolated FID is below ``other``'s and stays below at every later
    point of either curve; None when it never does."""
    times = sorted({t for t, _, _ in leader + other})
    below = []
    for t in times:
        a, b = interpolate(leader, t), interpolate(other, t)
        if a is not None and b is not None:
            below.append((t, a < b))
    for i, (t, ok) in enumerate(below):
        if ok and all(o for _, o in below[i:]):
            if i == 0:
                return t
            t0 = below[i - 1][0]  # refine between the last point above and this one
            lo, hi = t0, t
            for _ in range(40):
                mid = (lo + hi) / 2
                if interpolate(leader, mid) < interpolate(other, mid):
                    hi = mid
                else:
                    lo = mid
            return hi
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", type=Path, help="a zoo compare --out folder")
    ap.add_argument("--minutes", default="1,3,10,30")
    ap.add_argument("--leader", default="ddpm", help="the run whose crossings are given")
    args = ap.parse_args()
    minutes = [float(m) for m in args.minutes.split(",")]
    runs = sorted(p for p in (args.study / "runs").iterdir() if (p / "metrics.jsonl").is_file())
    curves = {r.name: curve(r) for r in runs}
    lines = ["| model | " + " | ".join(f"FID at {m:g} min" for m in minutes) + " | points |",
             "|---|" + "---|" * (len(minutes) + 1)]
    for name, pts in curves.items():
        cells = []
        for m in minutes:
            v = at(pts, m)
            cells.append("—" if v is None else f"{v[0]:.2f} ({v[1]:.1f} min, step {v[2]:,})")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(pts)} |")
    if args.leader in curves:
        lines += ["", f"| {args.leader} passes | at minute |", "|---|---|"]
        for name, pts in curves.items():
            if name != args.leader:
                c = crossing(curves[args.leader], pts)
                lines.append(f"| {name} | {'does not (within the points measured)' if c is None else f'{c:.1f}'} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Start-up time of the `zoo` command line: wall clock of each command, run as a user runs it.

Targets on a 2-core CPU machine: `zoo --help` and `zoo COMMAND --help` under 0.5 s; `zoo list` under 2 s
once its index is built; a command with bad input (a missing -c file or run directory, an unknown model, a bad
--set value) fails in one line in under 0.5 s (issue 22.6: checked before torch loads). Each command runs as a
fresh process through the installed `zoo` console script;
the reported time is the median (and min) of ``--repeat`` runs after one untimed warm-up run (so the OS file
cache is warm, as it is for a user's second command). Also measured, for context: the Python interpreter
alone, `import zoo`, `import torch`, the first `zoo list` with an empty index (it imports torch and every
plugin, then writes the index) and `zoo plugins` (it always loads every plugin).

    python benchmarks/cli_speed.py                   # writes benchmarks/results/cli-speed-<tag>.md
    python benchmarks/cli_speed.py --repeat 1 --no-write   # a quick functional check, numbers not kept

Run it on an otherwise idle machine: other processes on 2 cores make every number noise.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name

HERE = Path(__file__).resolve().parent
HELP_TARGET, LIST_TARGET = 0.5, 2.0
COMMANDS = ["list", "plugins", "train", "sample", "eval", "eval-net", "compare", "show-config"]
BAD_INPUT = [["train", "ddpm", "-c", "missing.yaml"], ["train", "nosuchmodel"],
             ["train", "ddpm", "--set", "trainer.lr=abc"],
             ["sample", "missing-dir", "-o", "x.png"], ["eval", "--images", "missing.npz"],
             ["compare", "vae", "--budget-minutes", "-1", "-o", "x"]]


def timed(argv: list[str], env: dict, repeat: int, warm: bool = True, code: int = 0) -> tuple[float, float]:
    """(median, min) seconds of ``argv`` as a fresh process; fails loudly unless it exits with ``code``."""
    def once() -> float:
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              cwd=env.get("ZOO_CACHE"))
        seconds = time.perf_counter() - t0
        if done.returncode != code:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return seconds
    if warm:
        once()
    times = [once() for _ in range(repeat)]
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per command (after one warm-up)")
    ap.add_argument("--tag", default="cpu", help="results file: benchmarks/results/cli-speed-TAG.md")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()

    zoo = shutil.which("zoo", path=str(Path(sys.executable).parent)) or shutil.which("zoo")
    if zoo is None:
        raise SystemExit("the `zoo` console script is not installed next to this Python: pip install -e .")
    py = sys.executable
    cache = Path(tempfile.mkdtemp(prefix="zoo-cli-speed-"))
    env = dict(os.environ, ZOO_CACHE=str(cache))  # an index of our own: the cold run really is cold
    rows = []

    def add(what: str, argv: list[str], target: float | None = None, warm: bool = True, note: str = "",
            code: int = 0) -> None:
        med, best = timed(argv, env, args.repeat, warm, code)
        verdict = "" if target is None else ("PASS" if med < target else "FAIL") + f" (< {target:g} s)"
        rows.append((what, med, best, verdict, note))
        print(f"{what:<34} median {med:6.3f} s  min {best:6.3f} s  {verdict} {note}".rstrip(), flush=True)

    try:
        add("python -c pass", [py, "-c", "pass"], note="the interpreter alone")
        add("python -c 'import zoo'", [py, "-c", "import zoo"])
        add("zoo --help", [zoo, "--help"], HELP_TARGET)
        for command in COMMANDS:
            add(f"zoo {command} --help", [zoo, command, "--help"], HELP_TARGET)
        cold = []
        for _ in range(args.repeat):  # each with an empty index: what the first `zoo list` after a change costs
            for f in cache.glob("registry-*.json"):
                f.unlink()
            cold.append(timed([zoo, "list"], env, 1, warm=False)[0])
        rows.append(("zoo list (index rebuilt)", statistics.median(cold), min(cold), "",
                     "imports torch and every plugin, writes the index"))
        print(f"{'zoo list (index rebuilt)':<34} median {statistics.median(cold):6.3f} s  min {min(cold):6.3f} s",
              flush=True)
        add("zoo list", [zoo, "list"], LIST_TARGET, note="index current")
        add("zoo list ddpm", [zoo, "list", "ddpm"], LIST_TARGET, note="index current")
        for bad in BAD_INPUT:
            add(f"zoo {' '.join(bad)}", [zoo, *bad], HELP_TARGET, note="bad input: a one-line error", code=2)
        add("zoo plugins", [zoo, "plugins"], note="always loads every plugin")
        add("python -c 'import torch'", [py, "-c", "import torch"], note="for comparison")
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "?"
    command = "python benchmarks/cli_speed.py " + " ".join(sys.argv[1:])
    lines = [f"# `zoo` start-up time ({args.tag})", "",
             f"- command: `{command.strip()}`",
             f"- CPU: {cpu_name()}, {os.cpu_count()} cores; {platform.system()} {platform.release()}",
             f"- python {platform.python_version()}, torch {version('torch')}, click {version('click')}, "
             f"zoo {version('zoo')}",
             f"- date: {dt.date.today().isoformat()}",
             f"- each command: a fresh process through the `zoo` console script; median and min of {args.repeat} "
             f"runs after one untimed warm-up; targets from issue 14.11", "",
             "| command | median | min | target | notes |", "|---|---|---|---|---|"]
    lines += [f"| `{w}` | {m:.3f} s | {b:.3f} s | {v or '-'} | {n or ''} |" for w, m, b, v, n in rows]
    failed = [r[0] for r in rows if r[3].startswith("FAIL")]
    lines += ["", f"Targets missed: {', '.join(failed)}." if failed else "Every target met."]
    if not args.no_write:
        out = HERE / "results" / f"cli-speed-{args.tag}.md"
        out.write_text("\n".join(lines) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()

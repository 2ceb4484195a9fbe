"""`zoo train`: train a model into a run directory, or resume one (zoo/trainer.py does the work)."""
from __future__ import annotations

import os
import sys

import click

from .cli_common import SET_HELP


# --- training -------------------------------------------------------------------------------
@click.command("train")
@click.argument("model", required=False)
@click.option("--preset", "-p", help="A named preset of the model (every built-in has 'tiny').")
@click.option("--config", "-c", "config_file", type=click.Path(), help="A YAML file of overrides.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Run directory [default: runs/MODEL-TIMESTAMP].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint and own config.")
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out.")
@click.option("--device", help="Shortcut for --set trainer.device=... (auto, cpu, cuda, cuda:N).")
@click.option("--quiet", "-q", is_flag=True,
              help="No header and no progress (a bar on a terminal, else a plain line on stdout every ~30 s).")
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train on N GPUs of this machine (relaunches under torchrun, DDP); with --device cpu, "
                   "N CPU processes.")
def train_cmd(model, sets, device, gpus, **opts):
    """Train MODEL and write a run directory.

    \b
    The run directory gets config.yaml, meta.json, metrics.jsonl, samples/ grids,
    checkpoints/last.pt and samples.png. Ctrl-C stops after the current step, saves
    a checkpoint and prints the resume command (a second Ctrl-C stops at once).
    Piped or redirected (| tee log, > log), the header, a progress line every 30 s
    and the summary go to stdout; warnings and errors to stderr. Resume with:
      zoo train --resume --out DIR [--set trainer.max_steps=N]
    """
    from . import api
    sets = list(sets) + ([f"trainer.device={device}"] if device else [])
    if gpus > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        _check_gpus(gpus, sets)
        _launch_torchrun(gpus)
    result = api.train(model, sets=sets, **opts)  # preset, config_file, out, resume, force, quiet
    if int(os.environ.get("RANK", "0")) == 0:
        from .progress import log
        log(summary(result))
    if result.status == "interrupted":
        sys.exit(130)


def summary(result) -> str:
    """The last line of `zoo train` (stdout, so `| tee log` keeps it): finished, or interrupted with the
    command that resumes the run."""
    done = f"{result.step} steps in {result.seconds:.1f}s -> {result.out_dir}"
    if result.status == "interrupted":
        return f"interrupted: {done}; checkpoint saved. Resume with: {result.resume}"
    return f"{result.status}: {done}"


def _check_gpus(gpus: int, sets) -> None:
    """--gpus N needs N visible GPUs, unless CPU processes are asked for explicitly (--device cpu)."""
    import torch
    from .errors import ZooError
    if any(s.replace(" ", "") == "trainer.device=cpu" for s in sets):
        return
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible == 0:
        raise ZooError(f"--gpus {gpus} but no GPU is visible here: pass --device cpu to train in {gpus} CPU "
                       f"processes, or drop --gpus")
    if visible < gpus:
        raise ZooError(f"--gpus {gpus} but only {visible} GPU(s) are visible (check CUDA_VISIBLE_DEVICES)")


def _launch_torchrun(gpus: int) -> None:
    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a == "--gpus":
            skip = True
            continue
        if a.startswith("--gpus="):
            continue
        args.append(a)
    cmd = [sys.executable, "-m", "zoo.torchrun", "--standalone", f"--nproc-per-node={gpus}", "-m", "zoo",
           *args]
    os.execv(sys.executable, cmd)

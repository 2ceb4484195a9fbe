"""Several processes, one run: torchrun's environment, DistributedDataParallel per optimizer phase.

``zoo train --gpus N`` re-launches itself under ``torchrun`` (one node); on several nodes run torchrun
yourself (docs/training.md). Each process trains on its slice of every global batch; DDP averages the
gradients (bucketed, overlapped with backward) so every replica takes the same optimizer step.

Why one DDP per optimizer phase: a model's loss comes from ``training_loss(x, phase)``, not ``forward``,
and a GAN has phases whose losses do not touch every parameter (the discriminator phase gives the
generator no gradient). DDP's reducer expects a gradient for every parameter it holds, so each phase gets
its own DDP over exactly the parameters that phase's optimizer steps (:class:`PhaseLoss`). The generator
phase's gradients on the discriminator are then not all-reduced at all -- they are never used (the next
discriminator phase zeroes them) -- and no graph search per step is needed (``find_unused_parameters``
stays off). A model whose phase leaves some of its own parameters without a gradient sets
``trainer.ddp_find_unused=true``. ``no_sync`` is not needed: every backward is followed by a step.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: bool = False  # joined a process group: the model trains under DistributedDataParallel

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device_pref: str) -> Dist:
    """Join the process group torchrun describes: NCCL on GPUs, gloo on CPUs. Any torchrun launch joins one,
    a single process too (``torchrun --nproc-per-node=1`` runs the DDP path on one GPU); a plain ``python``
    run with ``WORLD_SIZE`` unset or 1 does not."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return Dist()
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and str(device_pref) != "cpu"
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), group=True)


def teardown(clean: bool) -> None:
    """Leave the process group at the end of a run. Without this, gloo's threads can still be running when
    the interpreter exits, which aborts the process ("terminate called without an active exception").
    ``clean``: every process got here normally, so wait for the others first (never after an error: the
    others may not come)."""
    if not dist.is_initialized():
        return
    if clean:
        dist.barrier()
    dist.destroy_process_group()


def exit_now(code: int) -> None:
    """End this (non-main) process at once, after :func:`teardown`: under load, gloo's threads can still
    abort a worker during the interpreter's own exit (SIGABRT, and torchrun's multi-line report over the
    main process's one-line error). Nothing is left to run: the main process prints what happened."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class PhaseLoss(nn.Module):
    """``training_loss(x, phase)`` as a module whose parameters are exactly those ``params`` (the phase's
    optimizer's), for DDP. The model itself is held outside the module tree, so DDP registers its hooks
    on these parameters only; the model's buffers (e.g. batch-norm statistics) are registered too, so DDP
    keeps them equal across processes (broadcast from rank 0 at each forward)."""

    def __init__(self, model: nn.Module, phase: str, params):
        super().__init__()
        object.__setattr__(self, "model", model)  # not a submodule: hidden from .parameters()
        self.phase = phase
        names = {id(p): n for n, p in model.named_parameters()}
        self.params = nn.ParameterDict({names[id(p)].replace(".", "__"): p for p in params})
        for name, b in model.named_buffers():
            self.register_buffer(name.replace(".", "__"), b)

    def forward(self, x: torch.Tensor, phase: str, **labels):
        return self.model.training_loss(x, phase, **labels)  # labels=y only in a conditional run


def wrap_phases(model: nn.Module, optimizers: dict, phases, device: torch.device,
                find_unused: bool = False) -> dict:
    """``{phase: DDP(PhaseLoss)}``: call it as ``loss_fn(x, phase)`` (``labels=y`` too in a conditional run),
    exactly like ``model.training_loss``."""
    wrapped = {}
    for phase in dict.fromkeys(name for name, _ in phases):
        params = [p for g in optimizers[phase].param_groups for p in g["params"] if p.requires_grad]
        wrapped[phase] = nn.parallel.DistributedDataParallel(
            PhaseLoss(model, phase, params), device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(find_unused))
    return wrapped


def all_agree(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true in every process (e.g. "this loss is finite")."""
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def from_main(value: float, device: torch.device) -> float:
    """Rank 0's ``value`` in every process (e.g. the training clock, so that all stop at the same step)."""
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def mean_(tensors) -> None:
    """Average each tensor across processes, in place."""
    for v in tensors:
        dist.all_reduce(v)
        v.div_(dist.get_world_size())


def assert_in_sync(model: nn.Module, device: torch.device) -> None:
    """Every replica must hold the same weights (DDP averages gradients; nothing re-syncs weights).
    Cheap: two sums per parameter, all-reduced as MIN and MAX. Raises if any parameter differs."""
    params = list(model.named_parameters())
    if not params:
        return
    idx = None
    with torch.no_grad():
        sums = torch.stack([torch.stack([p.double().sum(), (p.double() * torch.arange(
            p.numel(), device=p.device, dtype=torch.float64).view_as(p)).sum()]) for _, p in params]).to(device)
        lo, hi = sums.clone(), sums.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        bad = (lo != hi).any(dim=1).nonzero()
        if len(bad):
            idx = int(bad[0])
    if idx is not None:
        raise RuntimeError(f"DDP replicas hold different weights (first: '{params[idx][0]}'): gradients were "
                           f"not averaged for every parameter a phase steps")

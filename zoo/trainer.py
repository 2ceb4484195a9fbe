"""The one training loop every zoo model trains through.

Read top to bottom: ``fit`` sets up the run directory, device, data, model,
optimizers and EMA, optionally restores a checkpoint, then loops over seeded
batches. Per batch it runs each ``(optimizer, repeats)`` phase the model
declares (see ``zoo/contract.py``), updates the EMA, and now and then logs,
draws a fixed-noise sample grid, evaluates and checkpoints.

Speed choices (GPU): the whole uint8 dataset lives on the device and batches
are sliced from a per-epoch permutation there -- no DataLoader, workers or
host-to-device copies per step; bf16 autocast (fp16 + GradScaler where bf16 is
missing); channels_last; fused AdamW; optional ``torch.compile`` of the loss;
no host sync per step (losses are summed on the device and read at log steps).

Determinism (CPU): the torch and python RNG states, the batch position, the
loss accumulators, optimizers, schedulers and EMA are all in the checkpoint,
so a run killed and resumed ends bitwise equal to an uninterrupted one.
"""
from __future__ import annotations

import copy
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from . import checkpoint
from .config import Config
from .data import load_images, to_model_input
from .device import autocast, resolve_device, resolve_precision
from .errors import ZooError
from .images import save_grid

RUN_FILES = ("config.yaml", "meta.json", "metrics.jsonl", "samples.png", "eval.json", "samples", "checkpoints")


class TrainingDiverged(ZooError):
    exit_code = 1


@dataclass
class RunResult:
    out_dir: Path
    step: int
    seconds: float
    status: str  # finished | interrupted


# --- small helpers --------------------------------------------------------------------------
class Batches:
    """Seeded, resumable batch indices over ``n`` images.

    Each epoch is a permutation drawn from ``seed`` and the epoch number; a
    global batch of ``batch_size`` is split evenly across ``world`` processes,
    so N processes see exactly the images one process would.
    """

    def __init__(self, n: int, batch_size: int, seed: int, device, rank: int = 0, world: int = 1):
        if batch_size > n:
            raise ZooError(f"trainer.batch_size={batch_size} is larger than the {n} training images "
                           f"(lower trainer.batch_size)")
        if batch_size % world:
            raise ZooError(f"trainer.batch_size={batch_size} must be divisible by the {world} processes")
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self.rank, self.world = rank, world
        self.per_epoch = n // batch_size
        self.epoch, self.index = 0, 0
        self._perm_epoch, self._perm = -1, None

    def next(self) -> torch.Tensor:
        if self.index >= self.per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
        if self._perm_epoch != self.epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            self._perm = torch.randperm(self.n, generator=g).to(self.device)
            self._perm_epoch = self.epoch
        local = self.batch_size // self.world
        start = self.index * self.batch_size + self.rank * local
        self.index += 1
        return self._perm[start:start + local]

    def completed_epochs(self) -> int:
        return self.epoch + (self.index >= self.per_epoch)

    def state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


class EMA:
    """Exponential moving average of a model's weights (buffers are copied).

    ``decay`` is lowered early on when ``warmup`` is set: ``min(decay, (1+n)/(10+n))``
    after ``n`` updates, so the average is not dominated by the random init.
    """

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool = True, every: int = 1, start: int = 0):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.every, self.start = decay, warmup, max(1, every), start
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        if step < self.start or step % self.every:
            return
        d = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        ema_p = [p for p in self.model.parameters()]
        src_p = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, src_p, 1.0 - d)
        for eb, b in zip(self.model.buffers(), model.buffers()):
            eb.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_pref: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and str(device_pref) != "cpu"
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce_grads(params, world: int) -> None:
    """Average gradients across processes (what DDP does, one flat bucket)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(world)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def run_meta(cfg: Config, device: torch.device, world: int) -> dict:
    from . import __version__
    return {
        "model": cfg.model_name, "seed": cfg.seed, "zoo_version": __version__, "torch_version": torch.__version__,
        "python_version": platform.python_version(), "platform": platform.platform(),
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(), "world_size": world, "git_commit": git_commit(),
        "command": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def prepare_run_dir(out_dir: Path, resume: bool, force: bool) -> None:
    if resume:
        if not (out_dir / "checkpoints" / "last.pt").is_file():
            raise ZooError(f"nothing to resume in '{out_dir}': no checkpoints/last.pt (start it without --resume)")
        return
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise ZooError(f"run directory '{out_dir}' is not empty: pass --force to overwrite it, "
                           f"or --resume to continue it")
        for name in RUN_FILES:
            p = out_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after the checkpoint we resume from."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            pass  # a half-written last line from a killed run
    path.write_text("".join(k + "\n" for k in keep))


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, saves and exits."""

    def __init__(self):
        self.signal: int | None = None
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signal = signum

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


# --- the loop -------------------------------------------------------------------------------
def fit(cfg: Config, out_dir: str | Path, *, resume: bool = False, force: bool = False,
        quiet: bool | None = None) -> RunResult:
    """Train ``cfg.model_name`` with config ``cfg`` into ``out_dir``."""
    from .registry import complete_data_config, registry

    t = cfg.trainer
    ddp = setup_distributed(t.device)
    device = resolve_device(t.device, ddp.local_rank)
    amp_dtype = resolve_precision(str(t.precision), device)
    channels_last = device.type == "cuda" if t.channels_last == "auto" else bool(t.channels_last)
    out_dir = Path(out_dir)
    quiet = (not sys.stderr.isatty()) if quiet is None else quiet
    if ddp.main:
        prepare_run_dir(out_dir, resume, force)
    if ddp.world > 1:
        dist.barrier()

    complete_data_config(cfg)
    entry = registry().model(cfg.model_name)

    # Seeding: the model's init depends on cfg.seed alone; each process then gets its own stream.
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = entry.cls(cfg).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    torch.manual_seed(cfg.seed + ddp.rank)

    data = load_images(cfg.data, "train").to(device, non_blocking=True)
    size, channels, data_range = int(cfg.data.image_size), int(cfg.data.channels), model.data_range

    def prepare(x_uint8: torch.Tensor) -> torch.Tensor:
        x = to_model_input(x_uint8, size, channels, data_range, cfg.data.resize)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    optimizers = model.configure_optimizers()
    phases = [(str(p), int(r)) for p, r in model.phases()]
    for name, _ in phases:
        if name not in optimizers:
            raise ZooError(f"model '{cfg.model_name}' uses optimizer '{name}' in phases() but "
                           f"configure_optimizers() returned {sorted(optimizers)}")
    warmup = int(t.warmup_steps or 0)

    def lr_lambda(step: int) -> float:
        return (min(1.0, (step + 1) / warmup) if warmup else 1.0) * model.lr_factor(step)

    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, lr_lambda) for k, o in optimizers.items()}
    scalers = {k: torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16) for k in optimizers}
    ema = EMA(model, cfg.ema.decay, cfg.ema.warmup, cfg.ema.every, cfg.ema.start) if cfg.ema.enabled else None
    loss_fn = model.training_loss
    if t.compile:
        loss_fn = torch.compile(model.training_loss)

    batches = Batches(len(data), int(t.batch_size), int(cfg.seed), device, ddp.rank, ddp.world)
    step, train_seconds, skipped, best_fid = 0, 0.0, 0, None
    accum: dict[str, torch.Tensor] = {}
    accum_n = 0

    if resume:
        ckpt = checkpoint.load(out_dir / "checkpoints" / "last.pt")
        restore(ckpt, cfg, model, ema, optimizers, schedulers, scalers, batches, out_dir / "checkpoints" / "last.pt")
        step, train_seconds, skipped = int(ckpt["step"]), float(ckpt["train_seconds"]), int(ckpt["skipped"])
        best_fid = ckpt.get("best_fid")
        accum = {k: v.to(device) for k, v in ckpt["accum"].items()}
        accum_n = int(ckpt["accum_n"])
        if ddp.main:
            restore_rng(ckpt["rng"])
        else:
            torch.manual_seed(cfg.seed + ddp.rank + 7919 * step)
        if ddp.main:
            truncate_metrics(out_dir / "metrics.jsonl", step)

    if ddp.main:
        (out_dir / "config.yaml").write_text(cfg.to_yaml())
        meta = run_meta(cfg, device, ddp.world)
        meta_path = out_dir / "meta.json"
        if resume and meta_path.is_file():
            old = json.loads(meta_path.read_text())
            old.setdefault("resumed", []).append(meta["started"])
            meta = old
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")

    def state() -> dict:
        return {
            "model_name": cfg.model_name, "config": cfg.to_dict(), "step": step, "epoch": batches.epoch,
            "model": model.state_dict(), "ema": ema.state_dict() if ema else None,
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "scalers": {k: s.state_dict() for k, s in scalers.items()},
            "rng": rng_state(), "loader": batches.state(),
            "accum": {k: v.detach().cpu() for k, v in accum.items()}, "accum_n": accum_n,
            "train_seconds": train_seconds, "skipped": skipped, "best_fid": best_fid,
        }

    def save_checkpoint(extra_name: str | None = None) -> None:
        if not ddp.main:
            return
        s = state()
        checkpoint.save(s, out_dir / "checkpoints" / "last.pt")
        if t.keep_checkpoints:
            checkpoint.save(s, out_dir / "checkpoints" / f"step-{step:06d}.pt")
            old = sorted((out_dir / "checkpoints").glob("step-*.pt"))[: -int(t.keep_checkpoints)]
            for p in old:
                p.unlink()
        if extra_name:
            checkpoint.save(s, out_dir / "checkpoints" / extra_name)

    def sample_model():
        return ema.model if ema is not None else model

    def write_grid(path: Path) -> None:
        m = sample_model()
        was_training = m.training
        m.eval()
        g = torch.Generator(device=device).manual_seed(int(cfg.seed))
        with autocast(device, amp_dtype):
            images = m.sample(int(t.n_samples), g)
        m.train(was_training)
        save_grid(images, path)

    max_steps = t.max_steps
    max_epochs = t.max_epochs
    max_seconds = None if t.max_minutes is None else float(t.max_minutes) * 60
    if max_steps is None and max_epochs is None and max_seconds is None:
        raise ZooError("no training budget: set trainer.max_steps, trainer.max_epochs or trainer.max_minutes")
    check_every_step = device.type == "cpu" or bool(t.skip_nonfinite)
    log_every = max(1, int(t.log_every))
    metrics_file = open(out_dir / "metrics.jsonl", "a") if ddp.main else None
    bar = None
    if ddp.main and not quiet:
        from tqdm.auto import tqdm
        bar = tqdm(total=max_steps, initial=step, desc=cfg.model_name, unit="step", dynamic_ncols=True)

    def done() -> bool:
        return ((max_steps is not None and step >= max_steps)
                or (max_epochs is not None and batches.completed_epochs() >= max_epochs)
                or (max_seconds is not None and train_seconds >= max_seconds))

    model.train()
    status = "finished"
    window_start, window_steps = time.perf_counter(), 0
    last_tick = time.perf_counter()
    with StopFlag() as stop:
        while not done():
            x = prepare(data[batches.next()])
            for phase, repeats in phases:
                opt, scaler = optimizers[phase], scalers[phase]
                params = [p for g in opt.param_groups for p in g["params"]]
                for _ in range(repeats):
                    opt.zero_grad(set_to_none=True)
                    with autocast(device, amp_dtype):
                        out = loss_fn(x, phase)
                    loss = out["loss"]
                    if check_every_step and not bool(torch.isfinite(loss.detach()).all()):
                        if t.skip_nonfinite:
                            skipped += 1
                            opt.zero_grad(set_to_none=True)
                            continue
                        raise diverged(cfg, out_dir, step + 1, phase, out)
                    scaler.scale(loss).backward()
                    if ddp.world > 1:
                        all_reduce_grads(params, ddp.world)
                    if t.grad_clip:
                        scaler.unscale_(opt)
                        torch.nn.utils.clip_grad_norm_(params, float(t.grad_clip))
                    scaler.step(opt)
                    scaler.update()
                    for k, v in out.items():
                        key = ("loss" if len(phases) == 1 else f"{phase}_loss") if k == "loss" else k
                        v = v.detach().float() / repeats
                        accum[key] = accum[key] + v if key in accum else v.clone()
            accum_n += 1
            for s in schedulers.values():
                s.step()
            step += 1
            if ema is not None:
                ema.update(model, step)
            now = time.perf_counter()
            train_seconds += now - last_tick
            last_tick = now
            window_steps += 1
            if bar is not None:
                bar.update(1)

            if step % log_every == 0 or done():
                if ddp.world > 1:
                    for v in accum.values():
                        dist.all_reduce(v)
                        v.div_(ddp.world)
                values = {k: float(v) / max(1, accum_n) for k, v in accum.items()}
                bad = [k for k, v in values.items() if not math.isfinite(v)]
                if bad and not t.skip_nonfinite:
                    raise diverged(cfg, out_dir, step, None, {k: values[k] for k in bad},
                                   window=(step - accum_n + 1, step))
                elapsed = time.perf_counter() - window_start
                row = {"step": step, "epoch": batches.epoch, "time": round(train_seconds, 3), **values,
                       "lr": optimizers[phases[0][0]].param_groups[0]["lr"],
                       "images_per_s": round(window_steps * int(t.batch_size) / max(elapsed, 1e-9), 1)}
                if skipped:
                    row["skipped_nonfinite"] = skipped
                if metrics_file:
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
                if bar is not None:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()} | {"img/s": row["images_per_s"]})
                accum, accum_n = {}, 0
                window_start, window_steps = time.perf_counter(), 0
            if ddp.main and t.sample_every and step % int(t.sample_every) == 0:
                write_grid(out_dir / "samples" / f"step-{step:06d}.png")
            if t.eval_every and step % int(t.eval_every) == 0:
                fid = periodic_fid(sample_model(), cfg, int(t.eval_n), device, amp_dtype) if ddp.main else None
                if ddp.main:
                    metrics_file.write(json.dumps({"step": step, "time": round(train_seconds, 3), "fid": fid}) + "\n")
                    metrics_file.flush()
                    if best_fid is None or fid < best_fid:
                        best_fid = fid
                        save_checkpoint("best.pt")
            if t.checkpoint_every and step % int(t.checkpoint_every) == 0:
                save_checkpoint()
            last_tick = time.perf_counter()  # time spent saving/sampling is not training time
            if stop.signal is not None:
                status = "interrupted"
                break

        if status == "finished":
            def one_pass():
                for i in range(0, len(data), int(t.batch_size)):
                    yield prepare(data[i:i + int(t.batch_size)])
            with torch.no_grad():
                model.after_training(one_pass())
                if ema is not None:
                    ema.model.after_training(one_pass())
        save_checkpoint()
        if ddp.main:
            write_grid(out_dir / "samples.png")
    if bar is not None:
        bar.close()
    if metrics_file:
        metrics_file.close()
    if status == "interrupted" and ddp.main:
        name = signal.Signals(stop.signal).name
        print(f"{name}: stopped at step {step}, checkpoint saved. Resume with: zoo train --resume --out {out_dir}",
              file=sys.stderr)
    return RunResult(out_dir, step, train_seconds, status)


def diverged(cfg, out_dir: Path, step: int, phase, values: dict, window=None) -> TrainingDiverged:
    shown = ", ".join(f"{k}={float(v):.4g}" for k, v in values.items()
                      if not math.isfinite(float(v))) or ", ".join(f"{k}" for k in values)
    where = f"at step {step}" if window is None else f"between steps {window[0]} and {window[1]}"
    last = out_dir / "checkpoints" / "last.pt"
    keep = f"the last good checkpoint is kept at {last}" if last.exists() else "no checkpoint was written yet"
    return TrainingDiverged(f"non-finite loss {where}{f' (phase {phase})' if phase else ''}: {shown}; {keep}. "
                            f"Lower trainer.lr, set trainer.grad_clip, or set trainer.skip_nonfinite=true")


def periodic_fid(model, cfg, n: int, device, amp_dtype) -> float:
    from .evaluate import quick_fid
    was_training = model.training
    model.eval()
    with autocast(device, amp_dtype):
        fid = float(quick_fid(model, cfg, n))
    model.train(was_training)
    return fid


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def restore(ckpt, cfg, model, ema, optimizers, schedulers, scalers, batches, path) -> None:
    """Load a training checkpoint into freshly built objects, with one-line errors on mismatch."""
    if ckpt.get("model_name") != cfg.model_name:
        raise ZooError(f"checkpoint '{path}' is for model '{ckpt.get('model_name')}', not '{cfg.model_name}'")
    try:
        model.load_state_dict(ckpt["model"])
        if ema is not None:
            if ckpt.get("ema") is None:
                ema.model.load_state_dict(ckpt["model"])
            else:
                ema.load_state_dict(ckpt["ema"])
        if set(ckpt["optimizers"]) != set(optimizers):
            raise ValueError(f"optimizers {sorted(ckpt['optimizers'])} != {sorted(optimizers)}")
        for k, o in optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in schedulers.items():
            s.load_state_dict(ckpt["schedulers"][k])
        for k, s in scalers.items():
            s.load_state_dict(ckpt["scalers"][k])
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:300]
        raise ZooError(f"checkpoint '{path}' does not match this model/config: {detail}") from None
    batches.load(ckpt["loader"])

"""The one training loop every zoo model trains through.

``fit`` reads top to bottom::

    run = Run(cfg, ...)     set-up: device, data, model, optimizers, schedules, EMA -- nothing is written
                            yet, so a bad config, missing data or a bad device leaves no run directory
    run.open()              the run directory (locked: one writer), config.yaml and meta.json; --resume
                            restores the checkpoint
    while not run.done():
        run.train_step()    one batch through every (optimizer, repeats) phase the model declares
        run.log()           a metrics.jsonl row every trainer.log_every steps; progress
        run.periodic()      sample grid, evaluation callback, checkpoint -- each when due
    run.finish()            after_training, the last checkpoint, samples.png (not after Ctrl-C)

Around it: ``zoo/interrupt.py`` (Ctrl-C/SIGTERM: stop after this step, save, print the resume command),
``zoo/progress.py`` (header, ETA, bar or plain lines), ``zoo/runlog.py`` (metrics.jsonl, TensorBoard),
``zoo/distributed.py`` (DDP), ``zoo/ema.py``, ``zoo/schedules.py``, ``zoo/rundir.py``. Evaluation is
the caller's: ``fit(..., evaluate=callback)`` (``zoo.api`` passes the quick FID), so the trainer imports
no evaluation code.

Speed choices (GPU): the whole uint8 dataset lives on the device and batches are sliced from a per-epoch
permutation there -- no DataLoader, workers or host-to-device copies per step; bf16 autocast (fp16 +
GradScaler where bf16 is missing); channels_last; fused AdamW; optional ``torch.compile`` of the loss;
DDP buckets overlap the gradient all-reduce with backward; no host sync per step (losses are summed on
the device and read at log steps).

Determinism (CPU): the torch and python RNG states, the batch position, the loss accumulators,
optimizers, schedulers and EMA are all in the checkpoint, so a run killed and resumed ends bitwise equal
to an uninterrupted one (except with a time-based learning-rate schedule, which follows the clock).
"""
from __future__ import annotations

import contextlib
import math
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch

from . import checkpoint, distributed, rundir
from .batches import Batches
from .config import Config
from .contract import fits_after_training
from .data import class_labels, data_root, read_split, select_part, to_model_input
from .device import autocast, resolve_device, resolve_precision
from .ema import EMA
from .errors import ZooError
from .images import save_grid
from .interrupt import Interrupts
from .progress import Progress, header_lines
from .runlog import RunLog, require_tensorboard
from .schedules import lr_lambda

Evaluate = Callable[[torch.nn.Module], Mapping[str, float]]
"""``evaluate(model) -> {"fid": 12.3, ...}``: called every ``trainer.eval_every`` steps (and at
``trainer.eval_at_minutes``) on the model that
samples (the EMA when enabled), in eval mode, under ``torch.no_grad()`` and the run's autocast, on the
main process only. Each result is a row of metrics.jsonl; the first key decides ``checkpoints/best.pt``
(lower is better)."""

GRID_CHUNK = 8          # a time-bounded grid is drawn 8 images at a time once the bound is in sight
MAX_GRID = 1024         # trainer.n_samples beyond this is a wall of pixels, not a grid


class TrainingDiverged(ZooError):
    exit_code = 1


@dataclass
class RunResult:
    out_dir: Path
    step: int
    seconds: float
    status: str  # finished | interrupted (a signal arrived: the checkpoint is saved, samples.png may be missing)
    resume: str | None = None  # the command that resumes an interrupted run


# --- the loop -------------------------------------------------------------------------------------------
def fit(cfg: Config, out_dir: str | Path, *, resume: bool = False, force: bool = False, quiet: bool = False,
        evaluate: Evaluate | None = None, resume_hint: bool = True) -> RunResult:
    """Train ``cfg.model_name`` with config ``cfg`` into ``out_dir`` (see the module docstring).

    ``resume``: continue from ``out_dir/checkpoints/last.pt``; ``force``: overwrite a non-empty
    ``out_dir``; ``quiet``: no header or progress (warnings still print); ``evaluate``: the
    callback run every ``trainer.eval_every`` steps and at ``trainer.eval_at_minutes`` (:data:`Evaluate`);
    ``resume_hint=False``: a second Ctrl-C does not print the ``zoo train --resume`` command (a caller such as
    ``zoo compare`` says how to go on).
    """
    run = Run(cfg, Path(out_dir), resume=resume, force=force, quiet=quiet, evaluate=evaluate)
    run.resume_hint = resume_hint
    try:
        run.open()
        with Interrupts(run.progress.say if run.ddp.main else None) as stop:
            try:
                while not run.done():
                    run.train_step()
                    run.log()
                    run.periodic()
                    if stop.agreed(run.ddp.world, run.device) and not run.done():
                        return run.finish(interrupted_by=stop.name)
                return run.finish(skip_grid=stop.requested)
            except KeyboardInterrupt:  # a second Ctrl-C: stop at once
                run.stopped_at_once()
                raise
    finally:
        run.close()
        distributed.teardown(clean=sys.exc_info()[0] is None)


class Run:
    """One training run's state and the pieces of the loop (read :func:`fit` first)."""

    resume_hint = True  # print the resume command after an interrupt

    # --- set-up: everything is built and checked before the run directory exists ----------------------
    def __init__(self, cfg: Config, out_dir: Path, *, resume: bool, force: bool, quiet: bool,
                 evaluate: Evaluate | None):
        from .registry import complete_data_config, registry
        self.cfg, self.t, self.out_dir, self.evaluate = cfg, cfg.trainer, out_dir, evaluate
        self.resume, self.force = resume, force
        t = self.t
        self.check_budget_and_callbacks()
        self.ddp = distributed.setup(t.device)
        self.device = resolve_device(t.device, self.ddp.local_rank)
        self.amp_dtype = resolve_precision(str(t.precision), self.device)
        self.channels_last = self.device.type == "cuda" if t.channels_last == "auto" else bool(t.channels_last)
        if t.tensorboard and self.ddp.main:
            require_tensorboard()
        self.on_main(lambda: rundir.check_target(out_dir, resume, force))

        self.entry = registry().model(cfg.model_name)
        images, labels = read_split(cfg.data)  # may download
        complete_data_config(cfg, labels)  # a conditional run: data.num_classes from the labels
        images, labels = select_part(images, conditional_labels(cfg, labels, len(images)), cfg.data, "train")
        self.data = images.to(self.device, non_blocking=True)
        self.labels = labels.to(self.device, non_blocking=True) if labels is not None else None  # conditional
        cfg.data["root"] = str(data_root(cfg.data).resolve())  # recorded in config.yaml: resume reads it

        # Seeding: the model's init depends on cfg.seed alone; each process then gets its own stream.
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.model = self.entry.cls(cfg).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        torch.manual_seed(cfg.seed + self.ddp.rank)

        self.batches = Batches(len(self.data), int(t.batch_size), int(cfg.seed), self.device, self.ddp.rank,
                               self.ddp.world)
        self.step, self.train_seconds, self.skipped, self.saved_step = 0, 0.0, 0, None
        self.eval_seconds, self.eval_last, self.eval_capped = 0.0, 0.0, False  # periodic evaluations' wall clock
        self.best: dict | None = None  # {"metric": name, "value": v, "step": s} of checkpoints/best.pt
        self.build_optimization()
        self.ema = EMA.from_config(self.model, cfg.ema) if cfg.ema.enabled else None
        self.accum: dict[str, torch.Tensor] = {}
        self.accum_n, self.last_values = 0, {}
        self.check_every_step = self.device.type == "cpu" or bool(t.skip_nonfinite)
        self.runlog: RunLog | None = None
        self.lock = None  # the run directory's lock (zoo/runlock.py), held by the main process
        self.progress = Progress(show=self.ddp.main and not quiet, total_steps=self.total_steps,
                                 max_seconds=self.max_seconds, batch_size=int(t.batch_size),
                                 every_s=float(t.progress_seconds), label=cfg.model_name,
                                 warning=self.gpu_sized_warning() if self.ddp.main and not resume else None)

    def check_budget_and_callbacks(self) -> None:
        t = self.t
        self.max_seconds = None if t.max_minutes is None else float(t.max_minutes) * 60
        if t.max_steps is None and t.max_epochs is None and self.max_seconds is None:
            raise ZooError("no training budget: set trainer.max_steps, trainer.max_epochs or trainer.max_minutes")
        if (t.eval_every or t.eval_at_minutes) and self.evaluate is None:
            raise ZooError("trainer.eval_every or eval_at_minutes is set but fit() was given no evaluate callback "
                           "(zoo.train builds one from zoo.evaluate.quick_fid)")
        if int(t.n_samples) > MAX_GRID:
            raise ZooError(f"trainer.n_samples={t.n_samples} is too many images for a sample grid (at most "
                           f"{MAX_GRID}); draw many images with `zoo sample RUN -n N`")

    @property
    def total_steps(self) -> int | None:
        """The step budget (trainer.max_steps, or max_epochs in steps), whichever ends first."""
        limits = [int(self.t.max_steps)] if self.t.max_steps is not None else []
        if self.t.max_epochs is not None:
            limits.append(int(self.t.max_epochs) * self.batches.per_epoch)
        return min(limits) if limits else None

    def build_optimization(self) -> None:
        """Optimizers (the model's), their phases, learning-rate schedules, grad scalers, loss functions."""
        t, model = self.t, self.model
        self.optimizers = model.configure_optimizers()
        self.phases = [(str(p), int(r)) for p, r in model.phases()]
        for name, _ in self.phases:
            if name not in self.optimizers:
                raise ZooError(f"model '{self.cfg.model_name}' uses optimizer '{name}' in phases() but "
                               f"configure_optimizers() returned {sorted(self.optimizers)}")
        self.params = {k: [p for g in o.param_groups for p in g["params"]] for k, o in self.optimizers.items()}
        factor = lr_lambda(warmup=int(t.warmup_steps or 0), schedule=t.lr_schedule,
                           min_ratio=float(t.min_lr_ratio), total_steps=self.total_steps,
                           time_fraction=(lambda: self.train_seconds / self.max_seconds) if self.max_seconds
                           else None, model_factor=model.lr_factor)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in self.optimizers.items()}
        self.scalers = {k: torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
                        for k in self.optimizers}
        if self.ddp.group:
            self.loss_fns = distributed.wrap_phases(model, self.optimizers, self.phases, self.device,
                                                    find_unused=bool(t.ddp_find_unused))
            if t.compile:
                self.loss_fns = {k: torch.compile(f) for k, f in self.loss_fns.items()}
        else:
            fn = torch.compile(model.training_loss) if t.compile else model.training_loss
            self.loss_fns = {name: fn for name, _ in self.phases}

    def gpu_sized_warning(self) -> Callable[[str], str] | None:
        """A GPU-sized configuration on a CPU: the model has a ``cpu`` preset, and another one is in use."""
        preset, name = self.cfg.get("preset"), self.cfg.model_name
        if self.device.type != "cpu" or "cpu" not in self.entry.presets or preset in ("cpu", "tiny"):
            return None
        which = f"preset {preset}" if preset else "its default configuration"
        return lambda eta: (f"warning: {name} with {which} is sized for a GPU and this run is on the CPU: {eta}. "
                            f"For a CPU-sized run: zoo train {name} --preset cpu")

    # --- the run directory (and --resume) -----------------------------------------------------------
    def open(self) -> None:
        """Create and lock the run directory (removed again if this fails while it is empty), restore a
        checkpoint when resuming, write config.yaml and meta.json, print the header."""
        created: list[Path] = []
        try:
            made = self.on_main(lambda: rundir.create(self.out_dir, self.resume, self.force))
            created, self.lock = made or ([], None)
            if self.resume:
                self.restore()
            if self.ddp.main:
                (self.out_dir / "config.yaml").write_text(self.cfg.to_yaml())
                rundir.write_meta(self.out_dir, self.cfg, self.device, self.ddp.world, self.resume)
                self.runlog = RunLog(self.out_dir, bool(self.t.tensorboard),
                                     purge_step=self.step + 1 if self.resume else None)
        except BaseException:
            self.release_lock()
            rundir.remove_if_empty(created)
            raise
        self.progress.header(self.header())
        self.progress.start(self.step, self.train_seconds)
        self._window = (self.step, self.train_seconds)
        self._clock_seen = self.train_seconds  # trainer.eval_at_minutes: marks passed before a resume are done
        self._tick = time.perf_counter()

    def on_main(self, work: Callable[[], object]):
        """``work()`` (a check or change of the run directory) on the main process only. Under DDP every
        process then learns whether it succeeded, so that all stop together -- with one error line, the main
        process's. Returns what ``work`` returned (None elsewhere)."""
        result, error = None, None
        if self.ddp.main:
            try:
                result = work()
            except ZooError as e:
                error = e
        if self.ddp.group and not distributed.all_agree(error is None, self.device):
            distributed.teardown(clean=True)  # every process stops here, together (also from __init__)
            if error is None:  # the main process says why; this one leaves now
                distributed.exit_now(ZooError.exit_code)
            raise error
        if error is not None:
            raise error
        return result

    def release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def header(self) -> list[str]:
        data = self.cfg.data
        precision = str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32"
        return header_lines(
            self.cfg, run=f"{self.out_dir}" + (f" (resuming at step {self.step:,})" if self.resume else ""),
            n_params=sum(p.numel() for p in self.model.parameters()),
            device=f"{self.device}, {precision}, {self.ddp.world} process{'es' if self.ddp.world > 1 else ''}"
                   + (" under DistributedDataParallel" if self.ddp.group else ""),
            data=f"{data.name} (split {data.get('split', 'train')}), {len(self.data):,} images, from {data.root}"
                 + (f"; conditional: {self.model.num_classes} classes" if self.labels is not None else ""),
            per_epoch=f"{self.batches.per_epoch:,} batches of {int(self.t.batch_size)} per epoch")

    def restore(self) -> None:
        """Load ``checkpoints/last.pt`` into the freshly built objects (one-line errors on mismatch)."""
        path = self.out_dir / "checkpoints" / "last.pt"
        ckpt = checkpoint.load_from_run(path, resume=True)
        if ckpt.get("model_name") != self.cfg.model_name:
            raise ZooError(f"checkpoint '{path}' is for model '{ckpt.get('model_name')}', not '{self.cfg.model_name}'")
        checkpoint.load_into(ckpt, path, model=self.model, ema=self.ema, optimizers=self.optimizers,
                             schedulers=self.schedulers, scalers=self.scalers)
        self.batches.load(ckpt["loader"])
        self.step, self.train_seconds = int(ckpt["step"]), float(ckpt["train_seconds"])
        self.skipped = int(ckpt["skipped"])
        self.eval_seconds = float(ckpt.get("eval_seconds", 0.0))
        self.saved_step = self.step
        self.best = ckpt.get("best") or ({"metric": "fid", "value": ckpt["best_fid"]}
                                         if ckpt.get("best_fid") is not None else None)
        self.accum = {k: v.to(self.device) for k, v in ckpt["accum"].items()}
        self.accum_n = int(ckpt["accum_n"])
        if self.ddp.main:
            checkpoint.restore_rng(ckpt["rng"])
            rundir.truncate_metrics(self.out_dir / "metrics.jsonl", self.step)
        else:
            torch.manual_seed(self.cfg.seed + self.ddp.rank + 7919 * self.step)

    # --- one step -----------------------------------------------------------------------------------------
    def done(self) -> bool:
        t = self.t
        return ((t.max_steps is not None and self.step >= t.max_steps)
                or (t.max_epochs is not None and self.batches.completed_epochs() >= t.max_epochs)
                or (self.max_seconds is not None and self.train_seconds >= self.max_seconds))

    def prepare(self, x_uint8: torch.Tensor) -> torch.Tensor:
        d = self.cfg.data
        x = to_model_input(x_uint8, int(d.image_size), int(d.channels), self.model.data_range, d.resize)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_step(self) -> None:
        """One batch through every ``(optimizer, repeats)`` phase, then schedules and EMA."""
        idx = self.batches.next()
        x = self.prepare(self.data[idx])
        y = self.labels[idx] if self.labels is not None else None  # the same images' labels
        for phase, repeats in self.phases:
            for _ in range(repeats):
                self.optimizer_step(x, y, phase, repeats)
        self.accum_n += 1
        for s in self.schedulers.values():
            s.step()
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        now = time.perf_counter()
        self.train_seconds += now - self._tick
        self._tick = now
        if self.ddp.group and self.max_seconds is not None:  # one clock for a time budget and schedule
            self.train_seconds = distributed.from_main(self.train_seconds, self.device)

    def optimizer_step(self, x: torch.Tensor, y: torch.Tensor | None, phase: str, repeats: int) -> None:
        """One phase on batch ``x`` (labels ``y`` in a conditional run, else None)."""
        t, opt, scaler = self.t, self.optimizers[phase], self.scalers[phase]
        opt.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp_dtype):
            out = self.loss(x, y, phase)
        loss = out["loss"]
        if self.check_every_step:
            finite = bool(torch.isfinite(loss.detach()).all())
            if self.ddp.group:  # every process skips (or stops) together, or DDP would wait forever
                finite = distributed.all_agree(finite, self.device)
            if not finite:
                if t.skip_nonfinite:
                    self.skipped += 1
                    opt.zero_grad(set_to_none=True)
                    return
                raise diverged(self.out_dir, self.step + 1, phase, {k: v.detach() for k, v in out.items()})
        scaler.scale(loss).backward()
        if t.grad_clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(self.params[phase], float(t.grad_clip))
        scaler.step(opt)
        scaler.update()
        for k, v in out.items():
            key = ("loss" if len(self.phases) == 1 else f"{phase}_loss") if k == "loss" else k
            v = v.detach().float() / repeats
            self.accum[key] = self.accum[key] + v if key in self.accum else v.clone()

    def loss(self, x: torch.Tensor, y: torch.Tensor | None, phase: str) -> dict:
        try:  # labels= only for a conditional run: an unconditional model is called exactly as always
            return self.loss_fns[phase](x, phase) if y is None else self.loss_fns[phase](x, phase, labels=y)
        except RuntimeError as e:
            if self.ddp.group and "find_unused_parameters" in str(e):
                raise ZooError(f"model '{self.cfg.model_name}' under DDP: a parameter of optimizer '{phase}' got "
                               f"no gradient in phase '{phase}'; set trainer.ddp_find_unused=true") from None
            raise

    # --- logging --------------------------------------------------------------------------------------
    def running_means(self) -> dict:
        """The losses since the last row (this process's; a host sync)."""
        if not self.accum_n:
            return self.last_values
        return {k: float(v) / self.accum_n for k, v in self.accum.items()}

    def log(self) -> None:
        """A metrics row every ``trainer.log_every`` steps and at the end (means over the steps since the
        last row, across processes); then progress."""
        t = self.t
        if self.step % max(1, int(t.log_every)) == 0 or self.done():
            if self.ddp.group:
                distributed.mean_(self.accum.values())
            values = {k: float(v) / max(1, self.accum_n) for k, v in self.accum.items()}
            bad = [k for k, v in values.items() if not math.isfinite(v)]
            if bad and not t.skip_nonfinite:
                raise diverged(self.out_dir, self.step, None, {k: values[k] for k in bad},
                               window=(self.step - self.accum_n + 1, self.step))
            step0, seconds0 = self._window
            images_per_s = round((self.step - step0) * int(t.batch_size) / max(self.train_seconds - seconds0, 1e-9), 1)
            row = {"step": self.step, "epoch": self.batches.epoch, "time": round(self.train_seconds, 3), **values,
                   "lr": self.optimizers[self.phases[0][0]].param_groups[0]["lr"], "images_per_s": images_per_s}
            if self.skipped:
                row["skipped_nonfinite"] = self.skipped
            if self.runlog:
                self.runlog.row(row)
            self.progress.logged(values, images_per_s)
            self.accum, self.accum_n, self.last_values = {}, 0, values
            self._window = (self.step, self.train_seconds)
        if self.ddp.main:
            self.progress.step(self.step, self.train_seconds, self.running_means)

    # --- periodic work --------------------------------------------------------------------------------
    def periodic(self) -> None:
        """Sample grid, evaluation, checkpoint -- each when due. Their time is not training time."""
        t, step = self.t, self.step
        if self.ddp.main and t.sample_every and step % int(t.sample_every) == 0:
            self.write_grid(self.out_dir / "samples" / f"step-{step:06d}.png")
        at_mark = self.passed_eval_mark()  # asked for explicitly: not bounded by eval_max_minutes
        if self.ddp.main and (at_mark or (t.eval_every and step % int(t.eval_every) == 0 and self.evaluation_fits())):
            self.run_evaluation()
        if t.checkpoint_every and step % int(t.checkpoint_every) == 0:
            self.save()
        self._tick = time.perf_counter()

    @contextlib.contextmanager
    def sampling(self):
        """The model that samples (the EMA when enabled) in eval mode, without autograd, under the run's
        autocast; back in its own mode afterwards."""
        m = self.ema.model if self.ema is not None else self.model
        was_training = m.training
        m.eval()
        try:
            with torch.no_grad(), autocast(self.device, self.amp_dtype):
                yield m
        finally:
            m.train(was_training)

    def draw_samples(self, should_stop: Callable[[], bool] | None = None) -> tuple[torch.Tensor, int]:
        """``trainer.n_samples`` images from the model's default sampler and the run's seed, bounded in
        time by ``trainer.grid_seconds``: the first ``GRID_CHUNK`` images are always drawn and timed; the
        rest follow in one batch when they fit in the bound, else a chunk at a time while the next chunk
        fits. Returns the images and how many were asked for."""
        n, bound = int(self.t.n_samples), self.t.grid_seconds
        labels = grid_labels(n, self.model.num_classes).to(self.device) if self.labels is not None else None
        n = n if labels is None else len(labels)
        g = torch.Generator(device=self.device).manual_seed(int(self.cfg.seed))
        start = time.perf_counter()
        with self.sampling() as m:
            def sample(k: int, at: int) -> torch.Tensor:
                return m.sample(k, g) if labels is None else m.sample(k, g, labels=labels[at:at + k])
            first = n if bound is None else min(n, GRID_CHUNK)
            chunks = [sample(first, 0)]
            per_image = (time.perf_counter() - start) / first
            drawn = first
            while drawn < n and not (should_stop and should_stop()):
                left = float(bound) - (time.perf_counter() - start)
                k = n - drawn if per_image * (n - drawn) <= left else min(GRID_CHUNK, n - drawn)
                if per_image * k > left:
                    break
                chunks.append(sample(k, drawn))
                drawn += k
        return torch.cat(chunks), n

    def write_grid(self, path: Path, tag: str = "samples", should_stop: Callable[[], bool] | None = None) -> None:
        images, asked = self.draw_samples(should_stop)
        k = self.model.num_classes if self.labels is not None else None
        save_grid(images, path, nrow=asked // k if k and asked >= k else None)  # conditional: a row per class
        if self.runlog:
            self.runlog.images(tag, images, self.step)
        if len(images) < asked:
            why = ("interrupted" if should_stop and should_stop()
                   else f"trainer.grid_seconds={self.t.grid_seconds:g} reached")
            self.progress.say(f"{path.name}: {len(images)} of {asked} images ({why})")

    def passed_eval_mark(self) -> bool:
        """Whether the training clock passed one of ``trainer.eval_at_minutes`` since the last call (or since
        the run started or resumed)."""
        before, self._clock_seen = self._clock_seen, self.train_seconds
        return any(before < 60 * float(m) <= self.train_seconds for m in self.t.eval_at_minutes or ())

    def evaluation_fits(self) -> bool:
        """Whether ``trainer.eval_max_minutes`` (the wall clock all periodic evaluations may take; their time
        is not training time) leaves room for one more as long as the last one. Says once when it does not."""
        cap = self.t.eval_max_minutes
        if cap is None or float(cap) * 60 - self.eval_seconds >= self.eval_last:
            return True
        if not self.eval_capped:
            self.eval_capped = True
            self.progress.say(f"{self.cfg.model_name}: no more periodic evaluations from step {self.step} on: they "
                              f"took {self.eval_seconds:.0f} s of the {float(cap) * 60:.0f} s allowed "
                              f"(trainer.eval_max_minutes={float(cap):g})")
        return False

    def run_evaluation(self) -> None:
        """The caller's evaluation callback on the sampling model; a metrics row (with ``eval_seconds``, the
        wall clock of the periodic evaluations so far); best.pt by its first key."""
        start = time.perf_counter()
        with self.sampling() as m:
            if fits_after_training(m):  # e.g. the AE's latent density:
                m.after_training(self.one_pass())  # score what a run finished here would sample
            results = self.evaluate(m)
        if not isinstance(results, Mapping) or not results or not all(
                isinstance(v, (int, float)) for v in results.values()):
            raise ZooError(f"the evaluate callback must return a non-empty dict of numbers, got {results!r}")
        results = {k: float(v) for k, v in results.items()}
        self.eval_last = time.perf_counter() - start
        self.eval_seconds += self.eval_last
        self.runlog.row({"step": self.step, "time": round(self.train_seconds, 3), **results,
                         "eval_seconds": round(self.eval_seconds, 3)})
        metric = next(iter(results))
        if self.best is None or self.best["metric"] != metric or results[metric] < self.best["value"]:
            self.best = {"metric": metric, "value": results[metric], "step": self.step}
            self.save_file(self.out_dir / "checkpoints" / "best.pt")

    # --- checkpoints ------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model_name": self.cfg.model_name, "config": self.cfg.to_dict(), "step": self.step,
            "epoch": self.batches.epoch, "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "rng": checkpoint.rng_state(), "loader": self.batches.state(),
            "accum": {k: v.detach().cpu() for k, v in self.accum.items()}, "accum_n": self.accum_n,
            "train_seconds": self.train_seconds, "skipped": self.skipped, "best": self.best,
            "eval_seconds": self.eval_seconds,
        }

    def save_file(self, path: Path) -> None:
        checkpoint.save(self.state(), path)

    def save(self) -> None:
        """``checkpoints/last.pt`` (and the newest ``trainer.keep_checkpoints`` step files). Called by
        every process: under DDP it first checks that the replicas still hold the same weights."""
        if self.ddp.group:
            distributed.assert_in_sync(self.model, self.device)
        if not self.ddp.main:
            return
        folder = self.out_dir / "checkpoints"
        self.save_file(folder / "last.pt")
        self.saved_step = self.step
        if self.t.keep_checkpoints:
            self.save_file(folder / f"step-{self.step:06d}.pt")
            for old in sorted(folder.glob("step-*.pt"))[: -int(self.t.keep_checkpoints)]:
                old.unlink()

    # --- finish -------------------------------------------------------------------------------------------
    def finish(self, interrupted_by: str | None = None, skip_grid: Callable[[], bool] | None = None) -> RunResult:
        """A finished run: ``after_training``, the last checkpoint, ``samples.png`` (time-bounded; skipped
        if a signal arrives). An interrupted one: the checkpoint, nothing else. A run that a signal reaches
        while it finishes is interrupted too (samples.png skipped or cut short; resuming draws it)."""
        if interrupted_by is None:
            with torch.no_grad():
                self.model.after_training(self.one_pass())
                if self.ema is not None:
                    self.ema.model.after_training(self.one_pass())
        self.save()
        if interrupted_by is not None:
            if self.ddp.main:
                self.progress.close()
                self.progress.say(f"{interrupted_by}: stopped at step {self.step}, checkpoint saved")
            return self.result(interrupted=True)
        if self.ddp.main:
            if skip_grid is not None and skip_grid():
                self.progress.say("samples.png skipped (interrupted); the checkpoint is saved")
            else:
                self.write_grid(self.out_dir / "samples.png", "final", should_stop=skip_grid)
        return self.result(interrupted=skip_grid is not None and skip_grid())

    def result(self, interrupted: bool) -> RunResult:
        return RunResult(self.out_dir, self.step, self.train_seconds, "interrupted" if interrupted else "finished",
                         self.resume_command() if interrupted else None)

    def one_pass(self) -> Iterator:
        """The training images once, in batches, as the model sees them (for ``after_training``); in a
        conditional run each item is a pair ``(x, labels)``."""
        for i in range(0, len(self.data), int(self.t.batch_size)):
            x = self.prepare(self.data[i:i + int(self.t.batch_size)])
            yield x if self.labels is None else (x, self.labels[i:i + int(self.t.batch_size)])

    def resume_command(self) -> str:
        gpus = (f" --gpus {self.ddp.world}" + (" --device cpu" if self.device.type == "cpu" else "")
                if self.ddp.world > 1 else "")
        return f"zoo train --resume --out {shlex.quote(str(self.out_dir))}{gpus}"

    def stopped_at_once(self) -> None:
        """The second Ctrl-C: say which checkpoint is kept and how to resume."""
        if not self.ddp.main:
            return
        self.progress.close()
        if self.saved_step is None:
            self.progress.say("stopped at once; no checkpoint was written yet (nothing to resume)")
        else:
            self.progress.say(f"stopped at once; checkpoints/last.pt from step {self.saved_step} is kept."
                              + (f" Resume with: {self.resume_command()}" if self.resume_hint else ""))

    def close(self) -> None:
        self.progress.close()
        if self.runlog is not None:
            self.runlog.close()
            self.runlog = None
        self.release_lock()


def conditional_labels(cfg: Config, labels, n: int) -> torch.Tensor | None:
    """The labels of a split of ``n`` images for a conditional run (class indices below ``data.num_classes``),
    None for another run."""
    if not cfg.model.get("conditional"):
        return None
    from .registry import unlabelled
    labels = class_labels(cfg.data.name, labels, n)
    if labels is None:
        raise unlabelled(cfg.data)
    k, top = int(cfg.data.num_classes), int(labels.max())
    if top >= k:
        raise ZooError(f"dataset '{cfg.data.name}' has label {top}, but data.num_classes={k}: set "
                       f"data.num_classes={top + 1} or leave it unset (zoo counts the classes)")
    return labels


def grid_labels(n: int, k: int) -> torch.Tensor:
    """Labels of a conditional run's sample grid: one row per class (``n // k`` images each) where ``n``
    allows, else the first ``n`` classes."""
    return torch.arange(k).repeat_interleave(n // k) if n >= k else torch.arange(n)


def diverged(out_dir: Path, step: int, phase, values: dict, window=None) -> TrainingDiverged:
    shown = ", ".join(f"{k}={float(v):.4g}" for k, v in values.items()
                      if not math.isfinite(float(v))) or ", ".join(f"{k}" for k in values)
    where = f"at step {step}" if window is None else f"between steps {window[0]} and {window[1]}"
    last = out_dir / "checkpoints" / "last.pt"
    keep = f"the last good checkpoint is kept at {last}" if last.exists() else "no checkpoint was written yet"
    return TrainingDiverged(f"non-finite loss {where}{f' (phase {phase})' if phase else ''}: {shown}; {keep}. "
                            f"Lower trainer.lr, set trainer.grad_clip, or set trainer.skip_nonfinite=true")

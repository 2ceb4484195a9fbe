"""DDPM: denoising diffusion (Ho et al. 2020) with DDIM sampling (Song et al. 2021).

Three parts, read top to bottom:

1. ``beta_schedule`` -- the noise schedules ``linear``, ``cosine`` and ``sigmoid``.
2. :class:`Diffusion` -- the scheduler object, separate from the network (as in
   diffusers): the forward process ``q(x_t | x_0)``, the posterior
   ``q(x_{t-1} | x_t, x_0)``, the training loss, and the samplers. Every sampler
   here is a *plan*: timesteps plus per-step coefficients ``(c_x0, c_xt, sigma)``
   for the update ``x_prev = c_x0 * x0_hat + c_xt * x_t + sigma * z``, computed
   once in float64. Ancestral DDPM and DDIM are two plans for the same loop, so
   a new sampler needs neither a new loop nor a new network.
3. :class:`DDPM` -- the zoo model: a U-Net from ``zoo_plugins.unet`` plus a
   ``Diffusion``; registered as ``ddpm`` (attention U-Net), ``ddpm-attention`` and
   ``ddpm-convnext``.

Sampling options (``model.sample(n, g, sampler="ddim", steps=50, eta=0.0,
batch_size=1024, progress=True)``; defaults from ``model.sampler``,
``model.sample_steps`` (DDIM), ``model.eta``, ``model.sample_batch_size``):

* ``sampler="ddpm"``: ancestral sampling with variance ``model.variance``
  (``posterior``: beta-tilde, ``beta``: beta) over all T steps; ``steps=K < T``
  runs it on K evenly spaced timesteps with the betas re-derived from alpha-bar
  (Nichol & Dhariwal 2021, section 4).
* ``sampler="ddim"``: ``steps`` evenly spaced timesteps from T-1 down to 0, ``eta``
  from 0 (deterministic) to 1 (with ``steps=T`` it is exactly ancestral DDPM).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo import Key, ZooError, ZooModel, hookimpl
from zoo.contract import check_choices, check_sample_options, randn, to_unit
from zoo_plugins.unet import UNETS, AttentionUNet, ConvNeXtUNet

SCHEDULES = ("linear", "cosine", "sigmoid")
OBJECTIVES = ("eps", "x0", "v")
LOSSES = ("l2", "l1")
SAMPLERS = ("ddpm", "ddim")
VARIANCES = ("posterior", "beta")


# --- 1. noise schedules ---------------------------------------------------------------------
def beta_schedule(name: str, timesteps: int) -> torch.Tensor:
    """Betas ``(T,)`` in float64.

    * ``linear``: 1e-4 -> 0.02 for T=1000 (Ho et al.), both ends scaled by 1000/T
      for other T (Nichol & Dhariwal 2021) so the total noise stays comparable.
    * ``cosine``: alpha-bar(t) = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) * pi/2),
      s = 0.008, betas clipped to 0.999 (Nichol & Dhariwal 2021).
    * ``sigmoid``: alpha-bar(t) from a sigmoid over [-3, 3], tau = 1 (Chen 2023,
      "On the importance of noise scheduling"), betas clipped to 0.999.
    """
    T = int(timesteps)
    if T < 2:
        raise ZooError(f"model.timesteps={timesteps} must be at least 2 (1000 is the usual)")
    if name == "linear":
        scale = 1000.0 / T
        return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64, device="cpu").clamp(max=0.999)
    s = torch.arange(T + 1, dtype=torch.float64, device="cpu") / T
    if name == "cosine":
        f = torch.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
    elif name == "sigmoid":
        start, end, tau = -3.0, 3.0, 1.0
        v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64, device="cpu"))
        f = v_end - torch.sigmoid((s * (end - start) + start) / tau)
    else:
        raise ZooError(f"model.schedule={name!r} is not one of {', '.join(SCHEDULES)}")
    alphas_cumprod = f / f[0]
    return (1 - alphas_cumprod[1:] / alphas_cumprod[:-1]).clamp(min=0.0, max=0.999)


# --- 2. the diffusion process and its samplers ----------------------------------------------
@dataclass
class Plan:
    """A sampler, ready to run: for step ``i`` (``timesteps[i]``, descending)
    ``x0_hat = clip(p_xt[i] * x_t + p_out[i] * net(x_t, t))`` and
    ``x_prev = c_x0[i] * x0_hat + c_xt[i] * x_t + sigma[i] * z``; ``noisy[i]``
    says whether ``z`` is drawn at all (python bools: no device sync)."""
    timesteps: torch.Tensor  # (K,) long
    p_xt: torch.Tensor       # (K,) float32, and the same for the others
    p_out: torch.Tensor
    c_x0: torch.Tensor
    c_xt: torch.Tensor
    sigma: torch.Tensor
    noisy: list

    def to(self, device) -> "Plan":
        moved = {k: v.to(device) if torch.is_tensor(v) else v for k, v in vars(self).items()}
        return Plan(**moved)

    def __len__(self) -> int:
        return len(self.noisy)


def _gather(a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``a[t]`` shaped ``(B, 1, 1, 1)`` to broadcast over images."""
    return a[t].view(-1, 1, 1, 1)


class Diffusion(nn.Module):
    """Gaussian diffusion with T steps: schedule buffers, loss, posterior, sampler plans.

    All buffers are computed in float64 and stored as float32 (non-persistent:
    they follow from the config, so checkpoints hold only the network).
    """

    def __init__(self, timesteps: int = 1000, schedule: str = "linear", objective: str = "eps",
                 loss: str = "l2", variance: str = "posterior", clip_x0: bool = True):
        super().__init__()
        check_choices(objective=(objective, OBJECTIVES), loss=(loss, LOSSES), variance=(variance, VARIANCES))
        self.T, self.objective, self.loss_type, self.variance, self.clip_x0 = \
            int(timesteps), objective, loss, variance, bool(clip_x0)
        betas = beta_schedule(schedule, timesteps)
        abar = torch.cumprod(1 - betas, 0)
        abar_prev = F.pad(abar[:-1], (1, 0), value=1.0)
        self.alphas_cumprod64 = abar  # float64, on the CPU: sampler plans are computed from it
        buffers = {
            "betas": betas,
            "alphas_cumprod": abar,
            "alphas_cumprod_prev": abar_prev,
            "sqrt_alphas_cumprod": abar.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - abar).sqrt(),
            "posterior_variance": betas * (1 - abar_prev) / (1 - abar),
            "posterior_mean_coef1": betas * abar_prev.sqrt() / (1 - abar),
            "posterior_mean_coef2": (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.float(), persistent=False)

    # forward process and posterior
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A draw of ``x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``."""
        return _gather(self.sqrt_alphas_cumprod, t) * x0 + _gather(self.sqrt_one_minus_alphas_cumprod, t) * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
        """Mean and variance of ``q(x_{t-1} | x_t, x_0)``."""
        mean = _gather(self.posterior_mean_coef1, t) * x0 + _gather(self.posterior_mean_coef2, t) * xt
        return mean, _gather(self.posterior_variance, t)

    def predict_x0(self, out: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's estimate of ``x_0`` from its output under ``objective``."""
        p_xt, p_out = self._x0_coefficients(self.alphas_cumprod[t])
        return p_xt.view(-1, 1, 1, 1) * xt + p_out.view(-1, 1, 1, 1) * out

    def _x0_coefficients(self, abar: torch.Tensor):
        """``x0 = p_xt * x_t + p_out * out`` for the objective (eps, x0 or v)."""
        if self.objective == "eps":
            return abar.rsqrt(), -(1 / abar - 1).sqrt()
        if self.objective == "x0":
            return torch.zeros_like(abar), torch.ones_like(abar)
        return abar.sqrt(), -(1 - abar).sqrt()  # v = sqrt(abar) eps - sqrt(1 - abar) x0

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.objective == "eps":
            return noise
        if self.objective == "x0":
            return x0
        return _gather(self.sqrt_alphas_cumprod, t) * noise - _gather(self.sqrt_one_minus_alphas_cumprod, t) * x0

    # training
    def loss(self, net: nn.Module, x0: torch.Tensor) -> torch.Tensor:
        """One timestep per image, uniform in [0, T); MSE (or L1) to the objective's target.
        Uses torch's global RNG (the trainer seeds and checkpoints it)."""
        t = torch.randint(0, self.T, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        out = net(self.q_sample(x0, t, noise), t).float()
        target = self.target(x0, noise, t)
        return F.mse_loss(out, target) if self.loss_type == "l2" else F.l1_loss(out, target)

    # samplers
    def plan(self, sampler: str = "ddpm", steps: int | None = None, eta: float = 0.0,
             variance: str | None = None) -> Plan:
        """The coefficients of ``sampler`` over ``steps`` timesteps (default: all T)."""
        K = self.T if steps is None else int(steps)
        if not 1 <= K <= self.T:
            raise ZooError(f"steps={steps} must be between 1 and model.timesteps={self.T}")
        if sampler not in SAMPLERS:
            raise ZooError(f"sampler={sampler!r} is not one of {', '.join(SAMPLERS)}")
        if eta < 0:
            raise ZooError(f"eta={eta} must be >= 0 (0: deterministic DDIM, 1: DDPM-like noise)")
        ts = torch.linspace(self.T - 1, 0, K, dtype=torch.float64, device="cpu").round().long()
        abar = self.alphas_cumprod64[ts]
        abar_prev = torch.cat([self.alphas_cumprod64[ts[1:]], torch.ones(1, dtype=torch.float64, device="cpu")])
        beta = 1 - abar / abar_prev  # the step's beta on this (possibly respaced) grid
        if sampler == "ddpm":  # posterior q(x_prev | x_t, x0) of the respaced chain
            c_x0 = abar_prev.sqrt() * beta / (1 - abar)
            c_xt = (abar / abar_prev).sqrt() * (1 - abar_prev) / (1 - abar)
            var = beta * (1 - abar_prev) / (1 - abar) if (variance or self.variance) == "posterior" else beta
            sigma = var.sqrt()
        else:  # DDIM, eq. 12 and 16 of Song et al., with eps re-derived from the clipped x0
            sigma = eta * ((1 - abar_prev) / (1 - abar) * beta).sqrt()
            d = (1 - abar_prev - sigma ** 2).clamp(min=0).sqrt()
            c_xt = d / (1 - abar).sqrt()
            c_x0 = abar_prev.sqrt() - c_xt * abar.sqrt()
        sigma[-1] = 0.0  # the last step returns the mean (Algorithm 2: z = 0 at t = 1)
        p_xt, p_out = self._x0_coefficients(abar)
        f32 = lambda v: v.to(torch.float32)  # noqa: E731
        return Plan(ts, f32(p_xt), f32(p_out), f32(c_x0), f32(c_xt), f32(sigma), [bool(s > 0) for s in sigma])

    def denoise(self, net, x: torch.Tensor, plan: Plan, generator: torch.Generator, on_step=None,
                keep: set | None = None) -> tuple[torch.Tensor, list]:
        """Run ``plan`` from ``x = x_T``. Returns ``x_0`` and the states whose
        index (0 = x_T, K = x_0) is in ``keep``. No host syncs in the loop."""
        kept = [x.float().clone()] if keep and 0 in keep else []
        n = x.shape[0]
        for i in range(len(plan)):
            out = net(x, plan.timesteps[i].expand(n)).float()
            x0 = plan.p_xt[i] * x + plan.p_out[i] * out
            if self.clip_x0:
                x0 = x0.clamp(-1.0, 1.0)
            x = plan.c_x0[i] * x0 + plan.c_xt[i] * x
            if plan.noisy[i]:
                x = x + plan.sigma[i] * randn(x.shape, generator, x.device)
            if keep and i + 1 in keep:
                kept.append(x.float().clone())
            if on_step is not None:
                on_step()
        return x, kept


# --- 3. the zoo model -------------------------------------------------------------------------
class DDPM(ZooModel):
    """Denoising diffusion (DDPM) with ancestral and DDIM samplers; attention or ConvNeXt U-Net."""

    family = "diffusion"
    description = "denoising diffusion (Ho et al. 2020): U-Net + DDPM/DDIM samplers, EMA"
    data_range = (-1.0, 1.0)
    sample_options = {
        "sampler": Key(None, "ddpm (ancestral) or ddim [default: model.sampler]", type=str, choices=SAMPLERS,
                       nullable=True),
        "steps": Key(None, "network evaluations; ddpm: all T unless given [default: model.sample_steps for ddim]",
                     type=int, ge=1),
        "eta": Key(None, "DDIM noise: 0 deterministic, 1 DDPM-like [default: model.eta]", type=float, ge=0),
        "batch_size": Key(None, "images per sampling batch [default: model.sample_batch_size]", type=int, ge=1),
        "progress": Key(False, "show a progress bar on a terminal"),
    }
    config = {
        "model": {
            "unet": Key("attention", "the network: attention (Ho et al.'s U-Net) or convnext (no attention)",
                        choices=tuple(UNETS)),
            "dim": Key(64, "channels of the first level; the time MLP is 4 * dim wide", ge=1),
            "dim_mults": Key([1, 2, 2], "channels per level = dim * mult; the image is halved between levels",
                             item=int, ge=1),
            "num_res_blocks": Key(2, "attention U-Net: residual blocks per level (one more going up)", ge=1),
            "attn_resolutions": Key([16], "attention U-Net: self-attention at levels of these sides (pixels)",
                                    item=int, ge=1),
            "attn_heads": Key(4, "attention U-Net: attention heads", ge=1),
            "dropout": Key(0.1, "attention U-Net: dropout in the residual blocks", ge=0, lt=1),
            "groups": Key(32, "attention U-Net: GroupNorm groups (must divide every level's channels)", ge=1),
            "convnext_mult": Key(2, "convnext U-Net: expansion of the block's hidden width", ge=1),
            "timesteps": Key(1000, "diffusion steps T", ge=2),
            "schedule": Key("linear", "noise schedule of the betas", choices=SCHEDULES),
            "objective": Key("eps", "what the network predicts: eps (the noise), x0 or v", choices=OBJECTIVES),
            "loss": Key("l2", "training loss on the prediction", choices=LOSSES),
            "variance": Key("posterior", "ancestral sampler's variance: posterior (beta-tilde) or beta",
                            choices=VARIANCES),
            "clip_x0": Key(True, "clip the predicted x0 to [-1, 1] while sampling"),
            "sampler": Key("ddim", "default sampler (sample grids, zoo sample/eval/compare)", choices=SAMPLERS),
            "sample_steps": Key(100, "default sampler steps (ddpm: all T unless given)", ge=1),
            "eta": Key(0.0, "default DDIM eta: 0 deterministic, 1 DDPM-like noise", ge=0),
            "sample_batch_size": Key(1024, "images per sampling batch", ge=1),
            "compile_sampler": Key(False, "torch.compile the network for sampling"),
        },
        "data": {"image_size": 32},
        "trainer": {"batch_size": 128, "lr": 2e-4, "warmup_steps": 1000, "grad_clip": 1.0, "max_steps": 30000,
                    "log_every": 100, "sample_every": 2500, "checkpoint_every": 2500},
        "ema": {"enabled": True, "decay": 0.9999, "warmup": True},
    }
    # The defaults above are the GPU configuration (`gpu`). `cpu` is sized so that 10-30 minutes on 2 CPU
    # cores give recognisable digits: native 28x28, a narrow U-Net, a short warm-up, an EMA whose horizon fits
    # the run, a 20-minute budget and a cheap sampler. A first guess, to be tuned by measurement: keep the
    # whole CPU recipe here.
    presets = {
        "gpu": {},
        "cpu": {
            "model": {"dim": 32, "dim_mults": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [14],
                      "attn_heads": 4, "groups": 8, "dropout": 0.0, "sample_steps": 20, "sample_batch_size": 256},
            "data": {"image_size": 28},
            "trainer": {"batch_size": 64, "lr": 1e-3, "warmup_steps": 200, "max_steps": None, "max_minutes": 20,
                        "log_every": 50, "sample_every": 500, "checkpoint_every": 500},
            "ema": {"decay": 0.995},
        },
        "tiny": {  # a few hundred CPU steps in well under a minute
            "model": {"dim": 8, "dim_mults": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [8],
                      "attn_heads": 1, "groups": 4, "dropout": 0.0, "sample_steps": 10, "sample_batch_size": 64},
            "trainer": {"batch_size": 16, "lr": 1e-3, "warmup_steps": 20, "max_steps": 200, "log_every": 20,
                        "sample_every": 100, "checkpoint_every": 100, "n_samples": 16},
        },
    }
    preset_help = {
        "gpu": "the full U-Net (dim 64, 32x32, 30k steps): chosen when training on CUDA",
        "cpu": "a narrow U-Net at native 28x28 for 20 minutes: chosen when training on a CPU",
        "tiny": "smoke test: seconds on a CPU, not for results",
    }

    def __init__(self, cfg):
        super().__init__(cfg)
        m = cfg.model
        c, size, _ = self.image_shape
        if m.unet == "attention":
            self.net = AttentionUNet(c, int(m.dim), [int(v) for v in m.dim_mults], int(m.num_res_blocks),
                                     [int(r) for r in m.attn_resolutions], int(m.attn_heads), float(m.dropout),
                                     int(m.groups), size)
        elif m.unet == "convnext":
            self.net = ConvNeXtUNet(c, int(m.dim), [int(v) for v in m.dim_mults], int(m.convnext_mult), size)
        else:
            raise ZooError(f"model.unet={m.unet!r} is not one of {', '.join(UNETS)}")
        self.diffusion = Diffusion(int(m.timesteps), m.schedule, m.objective, m.loss, m.variance, bool(m.clip_x0))
        self.sampling_options({})  # fail at construction on a bad sampler default
        self._compiled = None

    def training_loss(self, x: torch.Tensor, phase: str) -> dict[str, torch.Tensor]:
        return {"loss": self.diffusion.loss(self.net, x)}

    # --- sampling ---------------------------------------------------------------------------
    def sampling_options(self, options: dict) -> dict:
        """Options given to ``sample`` filled in from ``cfg.model``; unknown or bad ones are a ZooError."""
        options = check_sample_options(self, options, source="sampling options")
        m = self.cfg.model
        sampler = options.get("sampler") or m.sampler
        if sampler not in SAMPLERS:
            raise ZooError(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)} (e.g. --sampler ddim --steps 50)")
        steps = options.get("steps")
        if steps is None and sampler == "ddim":  # ancestral sampling runs all T steps unless told
            steps = m.sample_steps
        T = int(m.timesteps)
        if steps is not None and not 1 <= int(steps) <= T:
            raise ZooError(f"steps={steps} must be between 1 and model.timesteps={T}")
        eta = options.get("eta")
        if eta is not None and sampler != "ddim":
            raise ZooError(f"eta={eta} applies to the ddim sampler only (use --sampler ddim)")
        eta = float(m.eta if eta is None else eta)
        if eta < 0:
            raise ZooError(f"eta={eta} must be >= 0 (0: deterministic DDIM, 1: DDPM-like noise)")
        batch_size = int(options.get("batch_size") or m.sample_batch_size)
        if batch_size < 1:
            raise ZooError(f"batch_size={batch_size} must be at least 1")
        return {"sampler": sampler, "steps": None if steps is None else int(steps), "eta": eta,
                "batch_size": batch_size, "progress": bool(options.get("progress", False))}

    def sampling_network(self):
        """The network for sampling: ``torch.compile``d once when ``model.compile_sampler`` is set."""
        if not self.cfg.model.compile_sampler:
            return self.net
        if self._compiled is None:
            object.__setattr__(self, "_compiled", torch.compile(self.net, dynamic=False))  # not a submodule
        return self._compiled

    def _autocast(self):
        """bf16 (or as trainer.precision says) autocast on CUDA; nothing on the CPU."""
        from zoo.device import autocast, resolve_precision
        device = self.device
        return autocast(device, resolve_precision(str(self.cfg.trainer.precision), device))

    def _run(self, n: int, generator: torch.Generator, options: dict, keep=None):
        opts = self.sampling_options(options)
        device = self.device
        plan = self.diffusion.plan(opts["sampler"], opts["steps"], opts["eta"]).to(device)
        net = self.sampling_network()
        bs = opts["batch_size"]
        batches = [min(bs, n - s) for s in range(0, n, bs)]
        from tqdm.auto import tqdm
        bar = tqdm(total=len(batches) * len(plan), desc=f"{opts['sampler']}-{len(plan)}", unit="step",
                   disable=not (opts["progress"] and sys.stderr.isatty()), leave=False)
        images, trajectories = [], []
        with torch.inference_mode(), self._autocast(), bar:
            for b in batches:
                x = randn((b, *self.image_shape), generator, device)
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                x, kept = self.diffusion.denoise(net, x, plan, generator, on_step=bar.update, keep=keep)
                images.append(to_unit(x, self.data_range))
                if keep:
                    trajectories.append(torch.stack([to_unit(k, self.data_range) for k in kept], 1))
        return images, trajectories, len(plan)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, **options) -> torch.Tensor:
        """``n`` images in [0, 1]; options: sampler (ddpm|ddim), steps, eta, batch_size, progress."""
        images, _, _ = self._run(int(n), generator, options)
        return torch.cat(images).contiguous()

    @torch.no_grad()
    def trajectory(self, n: int, generator: torch.Generator, frames: int = 10, **options) -> torch.Tensor:
        """The denoising path of ``n`` samples: ``(n, frames, C, H, W)`` in [0, 1],
        from x_T (pure noise) to x_0, at evenly spaced sampler steps."""
        K = len(self.diffusion.plan(**{k: v for k, v in self.sampling_options(options).items()
                                       if k in ("sampler", "steps", "eta")}))
        if not 2 <= int(frames) <= K + 1:
            raise ZooError(f"frames={frames} must be between 2 and {K + 1} (the sampler's steps + 1)")
        keep = {int(round(i)) for i in torch.linspace(0, K, int(frames)).tolist()}
        _, paths, _ = self._run(int(n), generator, options, keep=keep)
        return torch.cat(paths)


def save_trajectory(frames: torch.Tensor, path) -> None:
    """Save ``(n, frames, C, H, W)`` from :meth:`DDPM.trajectory` as one row per sample."""
    from pathlib import Path

    from einops import rearrange
    from torchvision.utils import save_image
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_image(rearrange(frames, "n f c h w -> (n f) c h w"), path, nrow=frames.shape[1], padding=2, pad_value=1.0)


@hookimpl
def zoo_register_models(register):
    register(DDPM, name="ddpm")
    register(DDPM, name="ddpm-attention", config={"model": {"unet": "attention"}},
             description="DDPM with the attention U-Net of Ho et al. (same as ddpm)")
    register(DDPM, name="ddpm-convnext", config={"model": {"unet": "convnext"}},
             description="DDPM with a ConvNeXt U-Net (no attention)")

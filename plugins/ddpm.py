"""DDPM: denoising diffusion (Ho et al. 2020) with DDIM (Song et al. 2021) and DPM-Solver++(2M) sampling.

Three parts, read top to bottom:

1. ``beta_schedule`` -- the noise schedules ``linear``, ``cosine`` and ``sigmoid``.
2. :class:`Diffusion` -- the scheduler object, separate from the network (as in
   diffusers): the forward process ``q(x_t | x_0)``, the posterior
   ``q(x_{t-1} | x_t, x_0)``, the training loss (optionally min-SNR weighted, with
   uniform or low-discrepancy timesteps), the variational bound on log p(x), and
   the samplers. Every sampler here is a *plan*: timesteps plus per-step
   coefficients ``(c_x0, c_x0_prev, c_xt, sigma)`` for the update
   ``x_prev = c_x0 * x0_hat + c_x0_prev * x0_hat_before + c_xt * x_t + sigma * z``,
   computed once in float64. Ancestral DDPM, DDIM and the multistep DPM-Solver++
   are three plans for the same loop, so a new sampler needs neither a new loop
   nor a new network.
3. :class:`DDPM` -- the zoo model: a U-Net from ``zoo_plugins.unet`` plus a
   ``Diffusion``; registered as ``ddpm`` (attention U-Net), ``ddpm-attention`` and
   ``ddpm-convnext``.

Sampling options (``model.sample(n, g, sampler="ddim", steps=50, eta=0.0,
grid="karras", batch_size=1024, progress=True)``; defaults from ``model.sampler``,
``model.sample_steps`` (DDIM), ``model.dpm_steps`` (DPM-Solver++), ``model.eta``,
``model.grid``, ``model.sample_batch_size``). Every sampler runs on the ``steps``
timesteps of ``grid`` (:func:`sampling_grid`: zoo, linspace, trailing, logsnr or
karras; ``auto``, the default, is each sampler's best: ``BEST_GRID``), then one step
to the clean image:

* ``sampler="ddpm"``: ancestral sampling with variance ``model.variance``
  (``posterior``: beta-tilde, ``beta``: beta) over all T steps; ``steps=K < T``
  runs it on K timesteps with the betas re-derived from alpha-bar
  (Nichol & Dhariwal 2021, section 4).
* ``sampler="ddim"``: ``eta`` from 0 (deterministic) to 1 (with ``steps=T`` it is
  exactly ancestral DDPM).
* ``sampler="dpm++"``: DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), deterministic,
  on the same timesteps as DDIM; first-order on the first step (no
  history yet) and on the last (to the clean image, where the second-order term
  is undefined), second-order in between. Good samples in 10-25 steps.

Class-conditional (``model.conditional: true`` on a dataset with labels, K classes): the U-Net adds a
class embedding of K + 1 rows to its time embedding, the last row the null class ("no label");
training replaces each label by the null class with probability ``model.label_dropout`` (0.1), so
one network learns both p(x | y) and p(x). ``model.sample(n, g, labels=y, guidance=w)`` samples with
classifier-free guidance (Ho & Salimans 2022) in every sampler, on the network's output (eps, x0 or
v: the same combination, as each is affine in the other given x_t)::

    out = out_c + w * (out_c - out_u),   out_c = net(x_t, t, y),   out_u = net(x_t, t, null)

``w = guidance`` >= 0 (default ``model.guidance``); the "guidance scale" s of diffusers and Imagen,
``out_u + s * (out_c - out_u)``, is s = 1 + w. Both passes run as one batched forward of
``[x_t, x_t]`` with ``[y, null]``, with the weights ``sample`` is called with (the EMA, from a run).
At w = 0 there is no unconditional pass at all: it is the plain conditional sampler, bitwise.
Label -1 asks for an unconditional image (the null class alone, unaffected by w).

Likelihood: ``model.log_likelihood(x, timesteps=50, generator=None)`` gives
the variational bound of Ho et al. (section 3.3) in nats per image: an unbiased
stratified estimate from 50 of its T-1 KL terms per image by default,
``timesteps="all"`` for every term.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo import Key, ZooError, ZooModel, hookimpl
from zoo.contract import check_choices, check_sample_options, rand, randn, to_unit
from zoo.progress import within
from zoo_plugins.conditioning import (GUIDANCE, LABEL_DROPOUT, drop_labels, guidance_weight, guided, labels_or_error,
                                      requested_labels, with_labels)
from zoo_plugins.unet import UNETS, AttentionUNet, ConvNeXtUNet

SCHEDULES = ("linear", "cosine", "sigmoid")
OBJECTIVES = ("eps", "x0", "v")
LOSSES = ("l2", "l1")
SAMPLERS = ("ddpm", "ddim", "dpm++")
GRIDS = ("zoo", "linspace", "trailing", "logsnr", "karras")
# model.grid=auto: each sampler's best grid by FID at 10 and 20 steps on a trained `cpu` run
# (benchmarks/results/sampler-grid-cpu); ancestral DDPM takes DDIM's (it is DDIM with eta = 1)
BEST_GRID = {"dpm++": "karras", "ddim": "trailing", "ddpm": "trailing"}
LAMBDA_MIN = -5.1  # the logsnr and karras grids start at half log-SNR >= this (diffusers' lambda_min_clipped)
VARIANCES = ("posterior", "beta")
LOSS_WEIGHTINGS = ("none", "min_snr")
TIMESTEP_SAMPLINGS = ("uniform", "low_discrepancy")
VLB_TERMS = 50  # KL terms per image of the likelihood's default estimate (all T-1 with timesteps="all")


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


def min_snr_weights(alphas_cumprod: torch.Tensor, objective: str, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights per timestep (Hang et al. 2023, "Efficient Diffusion Training
    via Min-SNR Weighting Strategy", arXiv:2303.09556).

    With ``SNR_t = abar_t / (1 - abar_t)``, the x0 error is weighted by
    ``min(SNR_t, gamma)``: high-SNR (nearly clean) timesteps stop dominating.
    Written for the other targets, whose squared error is a multiple of the x0
    error (``|eps - eps_hat|^2 = SNR |x0 - x0_hat|^2`` and
    ``|v - v_hat|^2 = (SNR + 1) |x0 - x0_hat|^2``), the same weighting is
    ``min(SNR, gamma) / SNR`` for eps and ``min(SNR, gamma) / (SNR + 1)`` for v.
    (Derived for the L2 loss; with ``model.loss=l1`` the same weights are applied.)
    """
    snr = alphas_cumprod / (1 - alphas_cumprod)
    clipped = snr.clamp(max=gamma)
    if objective == "eps":
        return clipped / snr
    if objective == "x0":
        return clipped
    return clipped / (snr + 1)


# --- 2. the diffusion process and its samplers ----------------------------------------------
def sampling_grid(name: str, alphas_cumprod: torch.Tensor, steps: int) -> torch.Tensor:
    """The ``steps`` timesteps (descending, long) a sampler calls the network at; every grid is
    followed by one last step to the clean image (alpha-bar = 1). Same formulas as diffusers
    (``DPMSolverMultistepScheduler.set_timesteps``), in numpy like theirs so the rounding agrees:

    * ``zoo``: evenly spaced from T-1 down to 0 (diffusers' DDIM ``linspace``): the last network
      call is at t = 0, where x_t is already the image.
    * ``linspace``: T-1 .. 0 in ``steps + 1`` even points without the 0 (diffusers' DPM-Solver
      default): ends near T/K, then steps to the clean image.
    * ``trailing``: T-1, T-1-T/K, .. T/K-1 (Lin et al. 2024, "Common diffusion noise schedules
      and sample steps are flawed", table 2).
    * ``logsnr``: ``steps`` points uniform in log-SNR from the top down to t = 0, included (Lu et
      al. 2022; diffusers' ``use_lu_lambdas``).
    * ``karras``: Karras et al. 2022's sigmas (rho = 7) from the top down to sigma(0), included,
      with ``sigma = sqrt((1 - abar) / abar)`` (diffusers' ``use_karras_sigmas``).

    The top of ``logsnr`` and ``karras`` is t = T-1, or where the half log-SNR
    ``lambda = -log sigma`` falls to ``LAMBDA_MIN`` = -5.1 if it goes lower: diffusers' recommended
    ``lambda_min_clipped`` for the cosine schedule, whose clipped last beta sends sigma from ~600 to
    ~2e4 in one step -- unclipped, karras-20 would put 13 of its 20 points in t = 987..999. The
    linear schedule stops at lambda = -5.06, so there both grids are diffusers' own.

    ``logsnr`` and ``karras`` pick, for each point, the *nearest* timestep of the discrete schedule
    (linear interpolation in log sigma, then rounded, as diffusers does); the plan then uses that
    timestep's own alpha-bar, so the network's t and the solver's noise level agree (diffusers keeps
    the continuous sigma for the solver). Where rounding makes timesteps coincide (many steps on a
    short schedule) they are pushed down to the next free one, so every grid has ``steps``
    distinct timesteps.
    """
    import numpy as np
    T, K = len(alphas_cumprod), int(steps)
    abar = alphas_cumprod.double().cpu().numpy()
    if name == "zoo":
        return torch.linspace(T - 1, 0, K, dtype=torch.float64, device="cpu").round().long()
    if name == "linspace":
        t = np.linspace(0, T - 1, K + 1).round()[::-1][:-1]
    elif name == "trailing":
        t = (T - np.arange(K) * (T / K)).round() - 1  # = np.arange(T, 0, -T / K), always K long
    elif name in ("logsnr", "karras"):
        sigmas = ((1 - abar) / abar) ** 0.5  # increasing with t
        log_sigmas, ramp = np.log(sigmas), np.linspace(0, 1, K)
        top = min(log_sigmas[-1], -LAMBDA_MIN)
        if name == "logsnr":
            log_sigma = top + ramp * (log_sigmas[0] - top)
        else:
            lo, hi = sigmas[0] ** (1 / 7), math.exp(top) ** (1 / 7)
            log_sigma = np.log((hi + ramp * (lo - hi)) ** 7)
        t = np.interp(log_sigma, log_sigmas, np.arange(T)).round()
    else:
        raise ZooError(f"grid={name!r} is not one of {', '.join(GRIDS)}")
    t = [int(v) for v in t]
    for i in range(K):  # distinct and descending, with room left for the rest down to 0
        t[i] = max(min(t[i], t[i - 1] - 1) if i else t[i], K - 1 - i)
    return torch.tensor(t, dtype=torch.long, device="cpu")


@dataclass
class Plan:
    """A sampler, ready to run: for step ``i`` (``timesteps[i]``, descending)
    ``x0_hat[i] = clip(p_xt[i] * x_t + p_out[i] * net(x_t, t))`` and
    ``x_prev = c_x0[i] * x0_hat[i] + c_x0_prev[i] * x0_hat[i-1] + c_xt[i] * x_t + sigma[i] * z``.
    ``noisy[i]`` says whether ``z`` is drawn at all and ``multistep[i]`` whether the
    previous step's ``x0_hat`` is used (``c_x0_prev`` is zero for one-step samplers);
    both are python bools, so the loop needs no device sync."""
    timesteps: torch.Tensor  # (K,) long
    p_xt: torch.Tensor       # (K,) float32, and the same for the others
    p_out: torch.Tensor
    c_x0: torch.Tensor
    c_x0_prev: torch.Tensor
    c_xt: torch.Tensor
    sigma: torch.Tensor
    noisy: list
    multistep: list

    def to(self, device) -> "Plan":
        moved = {k: v.to(device) if torch.is_tensor(v) else v for k, v in vars(self).items()}
        return Plan(**moved)

    def __len__(self) -> int:
        return len(self.noisy)


def _gather(a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``a[t]`` shaped ``(B, 1, 1, 1)`` to broadcast over images."""
    return a[t].view(-1, 1, 1, 1)


class Diffusion(nn.Module):
    """Gaussian diffusion with T steps: schedule buffers, loss, posterior, sampler plans, likelihood.

    All buffers are computed in float64 and stored as float32 (non-persistent:
    they follow from the config, so checkpoints hold only the network).
    """

    def __init__(self, timesteps: int = 1000, schedule: str = "linear", objective: str = "eps",
                 loss: str = "l2", variance: str = "posterior", clip_x0: bool = True,
                 loss_weighting: str = "none", min_snr_gamma: float = 5.0, timestep_sampling: str = "uniform"):
        super().__init__()
        check_choices(objective=(objective, OBJECTIVES), loss=(loss, LOSSES), variance=(variance, VARIANCES),
                      loss_weighting=(loss_weighting, LOSS_WEIGHTINGS),
                      timestep_sampling=(timestep_sampling, TIMESTEP_SAMPLINGS))
        if not float(min_snr_gamma) > 0:
            raise ZooError(f"model.min_snr_gamma={min_snr_gamma} must be > 0 (5 is the paper's choice)")
        self.T, self.objective, self.loss_type, self.variance, self.clip_x0 = \
            int(timesteps), objective, loss, variance, bool(clip_x0)
        self.loss_weighting, self.min_snr_gamma, self.timestep_sampling = \
            loss_weighting, float(min_snr_gamma), timestep_sampling
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
        if loss_weighting == "min_snr":
            buffers["loss_weights"] = min_snr_weights(abar, objective, self.min_snr_gamma)
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
    def sample_timesteps(self, n: int, device) -> torch.Tensor:
        """``n`` training timesteps in [0, T), each uniform, from torch's global RNG.

        * ``uniform``: independent draws (Ho et al. 2020).
        * ``low_discrepancy``: one shared offset ``u ~ U[0, 1)`` and
          ``t_i = floor(T * ((u + i / n) mod 1))``: each ``t_i`` is still uniform,
          so the loss stays unbiased, but every batch covers [0, T) evenly (one
          timestep per stratum of width T/n), which lowers the variance of the
          loss and its gradient -- the low-discrepancy sampler of Kingma et al.
          2021, "Variational Diffusion Models" (arXiv:2107.00630).
        """
        if self.timestep_sampling == "uniform":
            return torch.randint(0, self.T, (n,), device=device)
        u = torch.rand(1, device=device, dtype=torch.float64)
        grid = torch.arange(n, device=device, dtype=torch.float64) / n
        return ((u + grid).remainder(1.0) * self.T).floor().long().clamp_(max=self.T - 1)

    def loss(self, net: nn.Module, x0: torch.Tensor) -> torch.Tensor:
        """One timestep per image (``sample_timesteps``); MSE (or L1) to the objective's target,
        each image weighted by ``loss_weights[t]`` under ``min_snr``. Uses torch's global RNG
        (the trainer seeds and checkpoints it)."""
        t = self.sample_timesteps(x0.shape[0], x0.device)
        noise = torch.randn_like(x0)
        out = net(self.q_sample(x0, t, noise), t).float()
        target = self.target(x0, noise, t)
        if self.loss_weighting == "none":
            return F.mse_loss(out, target) if self.loss_type == "l2" else F.l1_loss(out, target)
        error = (out - target).square() if self.loss_type == "l2" else (out - target).abs()
        return (error.flatten(1).mean(1) * self.loss_weights[t]).mean()

    # samplers
    def plan(self, sampler: str = "ddpm", steps: int | None = None, eta: float = 0.0,
             variance: str | None = None, grid: str = "zoo") -> Plan:
        """The coefficients of ``sampler`` over ``steps`` timesteps (default: all T).

        Every sampler runs on the timesteps of :func:`sampling_grid` (``grid``), each step
        going to the next one and the last to the clean image (alpha-bar = 1). With all T
        steps every grid is T-1 .. 0."""
        K = self.T if steps is None else int(steps)
        if not 1 <= K <= self.T:
            raise ZooError(f"steps={steps} must be between 1 and model.timesteps={self.T}")
        if sampler not in SAMPLERS:
            raise ZooError(f"sampler={sampler!r} is not one of {', '.join(SAMPLERS)}")
        if eta < 0:
            raise ZooError(f"eta={eta} must be >= 0 (0: deterministic DDIM, 1: DDPM-like noise)")
        ts = sampling_grid(grid, self.alphas_cumprod64, K)
        abar = self.alphas_cumprod64[ts]
        abar_prev = torch.cat([self.alphas_cumprod64[ts[1:]], torch.ones(1, dtype=torch.float64, device="cpu")])
        beta = 1 - abar / abar_prev  # the step's beta on this (possibly respaced) grid
        c_x0_prev = torch.zeros_like(abar)
        if sampler == "ddpm":  # posterior q(x_prev | x_t, x0) of the respaced chain
            c_x0 = abar_prev.sqrt() * beta / (1 - abar)
            c_xt = (abar / abar_prev).sqrt() * (1 - abar_prev) / (1 - abar)
            var = beta * (1 - abar_prev) / (1 - abar) if (variance or self.variance) == "posterior" else beta
            sigma = var.sqrt()
        elif sampler == "ddim":  # eq. 12 and 16 of Song et al., with eps re-derived from the clipped x0
            sigma = eta * ((1 - abar_prev) / (1 - abar) * beta).sqrt()
            d = (1 - abar_prev - sigma ** 2).clamp(min=0).sqrt()
            c_xt = d / (1 - abar).sqrt()
            c_x0 = abar_prev.sqrt() - c_xt * abar.sqrt()
        else:
            c_x0, c_x0_prev, c_xt = dpm_solver_2m(abar, abar_prev)
            sigma = torch.zeros_like(abar)
        sigma[-1] = 0.0  # the last step returns the mean (Algorithm 2: z = 0 at t = 1)
        p_xt, p_out = self._x0_coefficients(abar)
        f32 = lambda v: v.to(torch.float32)  # noqa: E731
        return Plan(ts, f32(p_xt), f32(p_out), f32(c_x0), f32(c_x0_prev), f32(c_xt), f32(sigma),
                    noisy=[bool(s > 0) for s in sigma], multistep=[bool(c != 0) for c in c_x0_prev])

    def denoise(self, net, x: torch.Tensor, plan: Plan, generator: torch.Generator, on_step=None,
                keep: set | None = None) -> tuple[torch.Tensor, list]:
        """Run ``plan`` from ``x = x_T``. Returns ``x_0`` and the states whose
        index (0 = x_T, K = x_0) is in ``keep``. No host syncs in the loop."""
        kept = [x.float().clone()] if keep and 0 in keep else []
        n = x.shape[0]
        x0_before = None  # the previous step's x0_hat, for multistep plans
        for i in range(len(plan)):
            out = net(x, plan.timesteps[i].expand(n)).float()
            x0 = plan.p_xt[i] * x + plan.p_out[i] * out
            if self.clip_x0:
                x0 = x0.clamp(-1.0, 1.0)
            x_next = plan.c_x0[i] * x0 + plan.c_xt[i] * x
            if plan.multistep[i]:
                x_next = x_next + plan.c_x0_prev[i] * x0_before
            if plan.noisy[i]:
                x_next = x_next + plan.sigma[i] * randn(x.shape, generator, x.device)
            x, x0_before = x_next, x0
            if keep and i + 1 in keep:
                kept.append(x.float().clone())
            if on_step is not None:
                on_step()
        return x, kept

    # likelihood
    def vlb_timesteps(self, k: int | None, n: int, generator: torch.Generator, device) -> tuple:
        """Which KL terms of the bound to evaluate for ``n`` images: ``(t, weight)``, both ``(k, n)``.

        The KL terms are indexed 1..T-1 (index 0 is the decoder). ``k=None`` or ``k=T-1``:
        every term once, weight 1 (the full sum). Otherwise stratified sampling, an
        unbiased estimate of the sum: the T-1 indices are cut into ``k`` contiguous
        strata, each image draws one index uniformly in each stratum, and the term is
        weighted by the stratum's size. The strata grow geometrically with t (the first
        ones hold one index each), because the first few steps carry most of the bound
        (Nichol & Dhariwal 2021, fig. 2): there the terms are large and change fast, so
        they are summed exactly, and the sampling variance goes to the small, flat tail."""
        N = self.T - 1
        k = N if k is None else int(k)
        if not 1 <= k <= N:
            raise ZooError(f"timesteps={k} must be between 1 and model.timesteps - 1 = {N} (the number of KL "
                           f"terms evaluated per image; leave it unset for all of them)")
        edges = [0]  # stratum j holds indices edges[j]+1 .. edges[j+1]
        for j in range(1, k + 1):  # (N+1)^(j/k) - 1, at least one index per stratum, room for the rest
            edges.append(min(max(edges[-1] + 1, round((N + 1) ** (j / k)) - 1), N - (k - j)))
        edges = torch.tensor(edges, device=device)
        lo, size = 1 + edges[:-1], edges.diff()
        u = rand((k, n), generator, device, dtype=torch.float64)
        t = lo[:, None] + (u * size[:, None]).floor().long().clamp(max=size[:, None] - 1)
        return t, size.to(torch.float64)[:, None].expand(k, n)

    @torch.inference_mode()
    def log_likelihood(self, net, x0: torch.Tensor, timesteps: int | None = None,
                       generator: torch.Generator | None = None, batch_size: int = 1024) -> torch.Tensor:
        """A lower bound on ``log p(x0)`` in nats per image, ``(B,)`` float64: minus the
        variational bound of Ho et al. 2020 (eq. 5 and section 3.3),
        ``L = L_T + sum_{t=2..T} L_{t-1} + L_0`` (paper indices; here 0-based), with

        * ``L_T = KL(q(x_T | x_0) || N(0, I))``, in closed form;
        * ``L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))`` at one draw of
          ``x_t ~ q(x_t | x_0)``: two Gaussians, ``p`` with the network's posterior
          mean (x0_hat clipped when ``clip_x0``, as in sampling) and the variance of
          ``variance`` (posterior: beta-tilde_t, beta: beta_t);
        * ``L_0 = -log p(x_0 | x_1)``, the discretised Gaussian decoder (eq. 13) with
          mean x0_hat(x_1) and the variance beta-tilde at the second step (the first is
          0), as in Ho et al.'s code.

        ``x0`` must hold 8-bit values mapped to [-1, 1] (k/255 * 2 - 1); zero padding is
        fine (its pixels are decoded like the others, so the bound stays a lower bound on
        the native image's probability). ``timesteps``: the number of KL terms per image
        (None: all T-1, the full bound; fewer: the unbiased stratified estimate of
        :meth:`vlb_timesteps`). Cost: ``timesteps + 1`` network calls per image, run
        ``batch_size`` at a time. The value is a Monte Carlo estimate (one draw of
        ``x_t`` per term), deterministic given ``generator``.
        """
        n, device = x0.shape[0], x0.device
        if generator is None:
            generator = torch.Generator(device=device).manual_seed(0)
        x0 = x0.float()
        x64 = x0.double()
        per_image = lambda v: v.flatten(1).sum(1)  # noqa: E731

        # L_T: the prior term
        abar_T = float(self.alphas_cumprod64[-1])
        prior = per_image(gaussian_kl(abar_T ** 0.5 * x64, 1 - abar_T, torch.zeros_like(x64), 1.0))

        # L_{t-1}, t = 2..T: KL terms, ``chunk`` timesteps for all images per network call
        t_all, weight = self.vlb_timesteps(timesteps, n, generator, device)
        kl_sum = torch.zeros(n, dtype=torch.float64, device=device)
        chunk = max(1, int(batch_size) // n)
        model_var = self.posterior_variance if self.variance == "posterior" else self.betas
        for start in range(0, t_all.shape[0], chunk):
            within(start, t_all.shape[0] + 1)  # the network calls of this batch so far (zoo.progress)
            t = t_all[start:start + chunk].reshape(-1)
            c = t.shape[0] // n
            xs = x0.repeat(c, 1, 1, 1)
            xt = self.q_sample(xs, t, randn(xs.shape, generator, device))
            x0_hat = self._clip(self.predict_x0(net(xt, t).float(), xt, t))
            mean_q, var_q = self.q_posterior(xs, xt, t)
            mean_p, _ = self.q_posterior(x0_hat, xt, t)
            kl = gaussian_kl(mean_q.double(), var_q.double(), mean_p.double(), _gather(model_var, t).double())
            kl_sum += (per_image(kl).view(c, n) * weight[start:start + c]).sum(0)

        # L_0: the discretised Gaussian decoder at the first step
        t0 = torch.zeros(n, dtype=torch.long, device=device)
        x1 = self.q_sample(x0, t0, randn(x0.shape, generator, device))
        x0_hat = self._clip(self.predict_x0(net(x1, t0).float(), x1, t0))
        std = float(self.posterior_variance[1].double().sqrt())  # the mean is x0_hat: q(x_0 | x_1, x_0) = x_0
        decoder = per_image(discretized_gaussian_log_likelihood(x64, x0_hat.double(), std))
        return decoder - kl_sum - prior

    def _clip(self, x0: torch.Tensor) -> torch.Tensor:
        return x0.clamp(-1.0, 1.0) if self.clip_x0 else x0


def gaussian_kl(mean1, var1, mean2, var2) -> torch.Tensor:
    """``KL(N(mean1, var1) || N(mean2, var2))`` elementwise, in nats."""
    var1 = torch.as_tensor(var1, dtype=torch.float64)
    var2 = torch.as_tensor(var2, dtype=torch.float64)
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1)


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, std, levels: int = 256):
    """``log P(bin of x)`` under ``N(mean, std^2)`` integrated over the bin (Ho et al. 2020, eq. 13).

    ``x`` lies on the grid ``k / (levels - 1) * 2 - 1``; the bin of ``x`` is
    ``[x - 1/(levels-1), x + 1/(levels-1)]``, except that the bin of -1 reaches down to
    -inf and that of +1 up to +inf, so the ``levels`` probabilities sum to 1.
    Computed with ``log_ndtr`` on the side of the mean where the bin lies, so that
    bins far in a tail keep their (tiny) log-probability instead of ``log 0``.
    """
    half = 1.0 / (levels - 1)
    x, mean = x.double(), mean.double()
    std = torch.as_tensor(std, dtype=torch.float64, device=x.device)
    upper = (x + half - mean) / std
    lower = (x - half - mean) / std
    upper = torch.where(x > 1 - half, torch.full_like(upper, math.inf), upper)    # last bin: up to +inf
    lower = torch.where(x < -1 + half, torch.full_like(lower, -math.inf), lower)  # first bin: down to -inf
    # P = Phi(upper) - Phi(lower) = Phi(-lower) - Phi(-upper): use the form whose terms are small
    right = (upper + lower) > 0  # the bin lies mostly above the mean (nan-free: never inf + -inf)
    b = torch.where(right, -lower, upper)
    a = torch.where(right, -upper, lower)
    log_b, log_a = torch.special.log_ndtr(b), torch.special.log_ndtr(a)
    return log_b + torch.log(-torch.expm1(log_a - log_b))


def dpm_solver_2m(abar: torch.Tensor, abar_next: torch.Tensor):
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
    Diffusion Probabilistic Models", arXiv:2211.01095, Algorithm 2) as plan coefficients
    ``(c_x0, c_x0_prev, c_xt)``.

    ``abar[i]`` is alpha-bar at the i-th timestep and ``abar_next[i]`` at the one it steps
    to (1 after the last: the clean image). With ``alpha = sqrt(abar)``,
    ``sigma = sqrt(1 - abar)`` and the half log-SNR ``lambda = log(alpha / sigma)``,
    step i goes from ``s = t_i`` to ``t = t_{i+1}`` with ``h_i = lambda_t - lambda_s``:

    * first order (DPM-Solver++(1), the same update as deterministic DDIM):
      ``x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h_i} - 1) x0_hat_i``
    * second order, multistep (Algorithm 2): with ``r_i = h_{i-1} / h_i``,
      ``D_i = (1 + 1 / (2 r_i)) x0_hat_i - 1 / (2 r_i) x0_hat_{i-1}`` and
      ``x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h_i} - 1) D_i``.

    Step 0 is first order (no previous x0_hat yet). The last step goes to
    ``sigma_t = 0``, where ``h = inf`` and ``r = 0``: its second-order term is
    undefined and the first-order update returns ``x0_hat`` itself; that is
    diffusers' ``lower_order_final`` with ``final_sigmas_type="zero"`` (for order 2
    those two agree for any number of steps) and Lu et al.'s "denoise to zero".
    Computed in float64; ``e^{-h}`` is written as ``(sigma_t alpha_s) / (alpha_t sigma_s)``
    so the last step needs no infinities.
    """
    alpha_s, sigma_s = abar.sqrt(), (1 - abar).sqrt()
    alpha_t, sigma_t = abar_next.sqrt(), (1 - abar_next).sqrt()
    c_xt = sigma_t / sigma_s
    phi = alpha_t - c_xt * alpha_s  # = -alpha_t (e^{-h} - 1), as e^{-h} = (sigma_t alpha_s) / (alpha_t sigma_s)
    lam_s = torch.log(alpha_s / sigma_s)
    h = torch.log(alpha_t / sigma_t) - lam_s  # inf on the last step: not used there
    c_x0, c_x0_prev = phi.clone(), torch.zeros_like(phi)
    K = len(abar)
    for i in range(1, K - 1):  # second order: all but the first and the last step
        r = h[i - 1] / h[i]
        c_x0[i] = phi[i] * (1 + 1 / (2 * r))
        c_x0_prev[i] = -phi[i] / (2 * r)
    return c_x0, c_x0_prev, c_xt


# --- 3. the zoo model -------------------------------------------------------------------------
class DDPM(ZooModel):
    """Denoising diffusion (DDPM) with ancestral, DDIM and DPM-Solver++ samplers; attention or ConvNeXt U-Net."""

    family = "diffusion"
    description = "denoising diffusion (Ho et al. 2020): U-Net + DDPM/DDIM/DPM-Solver++ samplers, EMA"
    data_range = (-1.0, 1.0)
    can_condition = True
    null_label = True
    likelihood_options = {  # zoo eval --nll-option / zoo compare --nll-option
        "timesteps": Key(VLB_TERMS, f"KL terms per image: K gives an unbiased stratified estimate of the bound from "
                                    f"K + 1 network calls per image (default {VLB_TERMS}, or all T-1 when fewer); "
                                    f"all = the full bound (T calls per image)", type=(int, str), ge=1,
                         pattern="all"),
        "batch_size": Key(None, "images x timesteps per network call [default: model.sample_batch_size]",
                          type=int, ge=1),
    }
    sample_options = {
        "sampler": Key(None, "ddpm (ancestral), ddim or dpm++ (DPM-Solver++(2M)) [default: model.sampler]",
                       type=str, choices=SAMPLERS, nullable=True),
        "steps": Key(None, "network evaluations; ddpm: all T unless given [default: model.sample_steps for ddim, "
                     "model.dpm_steps for dpm++]", type=int, ge=1),
        "eta": Key(None, "DDIM noise: 0 deterministic, 1 DDPM-like [default: model.eta]", type=float, ge=0),
        "grid": Key(None, "the sampler's timesteps: zoo (T-1 .. 0), linspace, trailing, logsnr, karras, or auto "
                    "(karras for dpm++, trailing for ddim and ddpm) [default: model.grid]", type=str,
                    choices=("auto",) + GRIDS, nullable=True),
        "batch_size": Key(None, "images per sampling batch [default: model.sample_batch_size]", type=int, ge=1),
        "progress": Key(False, "show a progress bar on a terminal"),
        "guidance": Key(None, "conditional runs: classifier-free guidance w, out = out_c + w (out_c - out_u); "
                        "0 = plain conditional sampling; scale s = 1 + w [default: model.guidance]",
                        type=float, ge=0),
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
            "sample_steps": Key(100, "default steps of the ddim sampler (ddpm: all T unless given; "
                                     "dpm++: model.dpm_steps)", ge=1),
            "eta": Key(0.0, "default DDIM eta: 0 deterministic, 1 DDPM-like noise", ge=0),
            "grid": Key("auto", "default time grid of the samplers (docs/evaluation.md): auto (each sampler's best: "
                        "karras for dpm++, trailing for ddim and ddpm), zoo (T-1 .. 0), linspace, trailing, logsnr "
                        "(uniform in log-SNR) or karras (Karras et al.'s sigmas)", choices=("auto",) + GRIDS),
            "sample_batch_size": Key(1024, "images per sampling batch", ge=1),
            "compile_sampler": Key(False, "torch.compile the network for sampling"),
            # --- training recipe and the dpm++ sampler ---
            "loss_weighting": Key("none", "per-timestep loss weight: none, or min_snr (Hang et al. 2023)",
                                  choices=LOSS_WEIGHTINGS),
            "min_snr_gamma": Key(5.0, "gamma of min_snr: the x0 error is weighted by min(SNR, gamma)", gt=0),
            "timestep_sampling": Key("uniform", "training timesteps: uniform (iid) or low_discrepancy (one per "
                                     "stratum of each batch, Kingma et al. 2021)", choices=TIMESTEP_SAMPLINGS),
            "dpm_steps": Key(20, "default steps of the dpm++ sampler", ge=1),
            # --- class conditioning ---
            "conditional": Key(False, "condition on the dataset's class labels: a class embedding (plus a null "
                                      "class) added to the time embedding; sample with classifier-free guidance"),
            "label_dropout": Key(LABEL_DROPOUT, "conditional: probability that a training label becomes the null "
                                                "class (what classifier-free guidance needs; 0: no guidance)",
                                 ge=0, le=1),
            "guidance": Key(GUIDANCE, "conditional: default classifier-free guidance w (out = out_c + w (out_c - "
                                      "out_u); 0 = plain conditional; the scale s of diffusers is 1 + w)", ge=0),
        },
        "data": {"image_size": 32},
        "trainer": {"batch_size": 128, "lr": 2e-4, "warmup_steps": 1000, "grad_clip": 1.0, "max_steps": 30000,
                    "log_every": 100, "sample_every": 2500, "checkpoint_every": 2500},
        "ema": {"enabled": True, "decay": 0.9999, "warmup": True},
    }
    # The defaults above are the GPU configuration (`gpu`, not yet measured on a GPU). `cpu` is the recipe that
    # won the CPU ablations in benchmarks/results/ddpm-recipe-cpu (5-minute runs, one change at a time, then
    # the winners together): native 28x28, dim 32 with one residual block per level (dim 8-24 and 48, and two
    # blocks, scored worse), the v objective (FID 126 -> 40 alone), lr 2e-3 with a 50-step warm-up and a cosine
    # decay over the time budget, batch 32 (more steps beat bigger batches here), an EMA of decay 0.995 (its
    # horizon, ~200 steps, fits the run), and DPM-Solver++ with 20 steps, in batches of 32 (fewer page faults
    # on a CPU than 256: 1.4x faster sampling on one thread). The samplers' default grid (auto) is each one's best of
    # five grids at 10 and 20 steps on a 10-minute `cpu` run (benchmarks/results/sampler-grid-cpu).
    presets = {
        "gpu": {},
        "cpu": {
            "model": {"dim": 32, "dim_mults": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [14],
                      "attn_heads": 4, "groups": 8, "dropout": 0.0, "objective": "v", "schedule": "cosine",
                      "sampler": "dpm++", "dpm_steps": 20, "sample_steps": 20, "sample_batch_size": 32},
            "data": {"image_size": 28},
            "trainer": {"batch_size": 32, "lr": 2e-3, "warmup_steps": 50, "lr_schedule": "cosine",
                        "max_steps": None, "max_minutes": 20, "log_every": 50, "sample_every": 1000,
                        "checkpoint_every": 500},
            "ema": {"decay": 0.995},
        },
        "tiny": {  # 100 steps of ~85 CPU-ms each (batch 16, 71k parameters), 2 small grids: seconds
            "model": {"dim": 8, "dim_mults": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [8],
                      "attn_heads": 1, "groups": 4, "dropout": 0.0, "sample_steps": 10, "sample_batch_size": 64},
            "trainer": {"batch_size": 16, "lr": 1e-3, "warmup_steps": 20, "max_steps": 100, "log_every": 10,
                        "sample_every": 50, "checkpoint_every": 50, "n_samples": 16},
        },
    }
    preset_help = {
        "gpu": "the full U-Net (dim 64, 32x32, 30k steps): chosen when training on CUDA",
        "cpu": "the measured CPU recipe (dim 32, 28x28, v objective, 20 minutes): chosen when training on a CPU",
        "tiny": "smoke test, not for results: 100 steps, about 15 CPU-seconds in all",
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
        if self.num_classes is not None:
            self.net.add_classes(self.num_classes)  # index num_classes is the null class
        self.diffusion = Diffusion(int(m.timesteps), m.schedule, m.objective, m.loss, m.variance, bool(m.clip_x0),
                                   m.loss_weighting, float(m.min_snr_gamma), m.timestep_sampling)
        self.sampling_options({})  # fail at construction on a bad sampler default
        self._compiled = None

    def training_loss(self, x: torch.Tensor, phase: str, labels: torch.Tensor | None = None) -> dict:
        """The diffusion loss; a conditional run's labels become the null class with probability
        ``model.label_dropout`` (torch's global RNG)."""
        y = labels_or_error(self, labels)
        if y is None:
            return {"loss": self.diffusion.loss(self.net, x)}
        return {"loss": self.diffusion.loss(with_labels(self.net, drop_labels(self, y)), x)}

    def null_labels(self, n: int) -> torch.Tensor:
        """``n`` null-class labels (index ``num_classes``: "no label")."""
        return torch.full((n,), self.num_classes, dtype=torch.int64, device=self.device)

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
        if steps is None and sampler == "dpm++":
            steps = m.dpm_steps
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
        grid = options.get("grid") or m.grid
        check_choices(grid=(grid, ("auto",) + GRIDS))
        grid = BEST_GRID[sampler] if grid == "auto" else grid
        return {"sampler": sampler, "steps": None if steps is None else int(steps), "eta": eta, "grid": grid,
                "batch_size": batch_size, "progress": bool(options.get("progress", False)),
                "guidance": guidance_weight(self, options.get("guidance"))}

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

    def _run(self, n: int, generator: torch.Generator, options: dict, keep=None, labels=None):
        opts = self.sampling_options(options)
        device = self.device
        y = requested_labels(self, n, labels)  # -1: the null class
        plan = self.diffusion.plan(opts["sampler"], opts["steps"], opts["eta"], grid=opts["grid"]).to(device)
        net = self.sampling_network()
        bs = opts["batch_size"]
        batches = [min(bs, n - s) for s in range(0, n, bs)]
        from tqdm.auto import tqdm
        bar = tqdm(total=len(batches) * len(plan), desc=f"{opts['sampler']}-{len(plan)}", unit="step",
                   disable=not (opts["progress"] and sys.stderr.isatty()), leave=False)
        images, trajectories = [], []
        done, total = 0, len(batches) * len(plan)

        def on_step():
            nonlocal done
            done += 1
            bar.update()
            within(done, total)  # a progress line while a batch takes minutes, where no bar is shown
        with torch.inference_mode(), self._autocast(), bar:
            for start, b in zip(range(0, n, bs), batches):
                x = randn((b, *self.image_shape), generator, device)
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                guided = self.guided(net, None if y is None else y[start:start + b], opts["guidance"])
                x, kept = self.diffusion.denoise(guided, x, plan, generator, on_step=on_step, keep=keep)
                images.append(to_unit(x, self.data_range))
                if keep:
                    trajectories.append(torch.stack([to_unit(k, self.data_range) for k in kept], 1))
        return images, trajectories, len(plan)

    def guided(self, net, y: torch.Tensor | None, w: float):
        """The network the sampler calls, ``(x, t) -> out``, for labels ``y`` (None: unconditional run):
        :func:`zoo_plugins.conditioning.guided` with the null class ``num_classes``."""
        return guided(net, y, w, self.num_classes)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, labels=None, **options) -> torch.Tensor:
        """``n`` images in [0, 1]; options: sampler (ddpm|ddim|dpm++), steps, eta, batch_size, progress,
        guidance. A conditional run takes ``labels`` (see :meth:`zoo.ZooModel.sample_labels`; -1 is
        unconditional) and guides with ``guidance`` (module docstring)."""
        images, _, _ = self._run(int(n), generator, options, labels=labels)
        return torch.cat(images).contiguous()

    def log_likelihood(self, x: torch.Tensor, timesteps: int | str = VLB_TERMS,
                       generator: torch.Generator | None = None, batch_size: int | None = None,
                       labels: torch.Tensor | None = None) -> dict:
        """``{"nats": (B,), "bound": "vlb"}``: the variational bound on log p(x) of the 8-bit image
        (Ho et al. 2020, section 3.3; see :meth:`Diffusion.log_likelihood`).

        ``x``: a batch as training feeds it (exact k/255 levels in [-1, 1], padded or not).
        ``timesteps``: KL terms per image: K < T-1 gives an unbiased stratified estimate for
        K + 1 network calls (the default, 50: every image's bound in 51 calls instead of T,
        all T-1 terms when T-1 <= 50); ``"all"`` (or None) is the full bound, T calls per image.
        ``generator`` draws the x_t (default: seeded 0, so the same images give the same
        value). ``batch_size``: images x timesteps per network call [model.sample_batch_size].
        Runs in eval mode (no dropout) and fp32, whatever the training precision.

        A conditional run gives the bound on log p(x | y) for ``labels`` (one per image); without labels
        (as ``zoo eval --nll`` calls it) it uses the null class: the unconditional log p(x) the same
        network learned through label dropout (meaningless if ``model.label_dropout`` was 0).
        """
        if timesteps in (None, "all") or (timesteps == VLB_TERMS and self.diffusion.T - 1 <= VLB_TERMS):
            timesteps = None  # all T-1 terms
        elif not isinstance(timesteps, int):
            raise ZooError(f"timesteps={timesteps!r}: give a number of KL terms per image (e.g. 50) or 'all'")
        was_training = self.training
        self.eval()
        try:
            nats = self.diffusion.log_likelihood(self.likelihood_network(len(x), labels), x.to(self.device),
                                                 timesteps, generator,
                                                 int(batch_size or self.cfg.model.sample_batch_size))
        finally:
            self.train(was_training)
        return {"nats": nats, "bound": "vlb"}

    def likelihood_network(self, n: int, labels):
        """The network ``log_likelihood`` calls: labelled by ``labels``, or the null class, when conditional."""
        if self.num_classes is None and labels is None:
            return self.net
        y = self.null_labels(n) if labels is None else self.sample_labels(n, labels)
        return with_labels(self.net, torch.where(y < 0, self.num_classes, y))

    @torch.no_grad()
    def trajectory(self, n: int, generator: torch.Generator, frames: int = 10, labels=None,
                   **options) -> torch.Tensor:
        """The denoising path of ``n`` samples: ``(n, frames, C, H, W)`` in [0, 1],
        from x_T (pure noise) to x_0, at evenly spaced sampler steps."""
        K = len(self.diffusion.plan(**{k: v for k, v in self.sampling_options(options).items()
                                       if k in ("sampler", "steps", "eta", "grid")}))
        if not 2 <= int(frames) <= K + 1:
            raise ZooError(f"frames={frames} must be between 2 and {K + 1} (the sampler's steps + 1)")
        keep = {int(round(i)) for i in torch.linspace(0, K, int(frames)).tolist()}
        _, paths, _ = self._run(int(n), generator, options, keep=keep, labels=labels)
        return torch.cat(paths)


def save_trajectory(frames: torch.Tensor, path) -> None:
    """Save ``(n, frames, C, H, W)`` from :meth:`DDPM.trajectory` as one row per sample."""
    from pathlib import Path

    from einops import rearrange
    from torchvision.utils import save_image
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_image(rearrange(frames, "n f c h w -> (n f) c h w"), path, nrow=frames.shape[1], padding=2, pad_value=1.0)


class ConvNeXtDDPM(DDPM):
    """DDPM with the ConvNeXt U-Net: the same recipe, but its own CPU size. At dim 32 a ConvNeXt step costs
    about twice an attention one (2.1M parameters against 1.1M), and in 5 CPU-minutes dim 16 scored far better
    (benchmarks/results/ddpm-recipe-cpu)."""
    presets = {**DDPM.presets, "cpu": {**DDPM.presets["cpu"], "model": {**DDPM.presets["cpu"]["model"], "dim": 16}}}
    preset_help = {**DDPM.preset_help,
                   "cpu": "the measured CPU recipe (dim 16, 28x28, v objective, 20 minutes): chosen when training "
                          "on a CPU",
                   "tiny": "smoke test, not for results: 100 steps, about 30 CPU-seconds in all"}


@hookimpl
def zoo_register_models(register):
    register(DDPM, name="ddpm")
    register(DDPM, name="ddpm-attention", config={"model": {"unet": "attention"}},
             description="DDPM with the attention U-Net of Ho et al. (same as ddpm)")
    register(ConvNeXtDDPM, name="ddpm-convnext", config={"model": {"unet": "convnext"}},
             description="DDPM with a ConvNeXt U-Net (no attention)")

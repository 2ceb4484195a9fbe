"""Flow matching (rectified flow / I-CFM) with ODE samplers and an exact likelihood.

Time convention (Lipman et al. 2023, Liu et al. 2023, torchcfm): ``x_t = (1 - t) x0 + t x1`` with ``x0 ~ N(0, I)``
the noise at ``t = 0`` and ``x1`` the data at ``t = 1``. The network predicts the velocity ``v(x_t, t)``; its
target is ``u = x1 - x0`` (the linear path's velocity), the loss is the mean squared error. Sampling integrates
``dx/dt = v(x, t)`` from noise at ``t = 0`` to an image at ``t = 1``. (diffusers' and SD3's schedulers count
time the other way, ``sigma = 1 - t``.)

Four parts, read top to bottom:

1. Training pairs: time sampling ``uniform`` or ``logit_normal`` (``t = sigmoid(N(m, s^2))``, Esser et al. 2024,
   SD3), and an optional minibatch optimal-transport coupling (OT-CFM, Tong et al. 2023): the batch's noise is
   re-paired with its images by the exact assignment that minimises the summed squared distance
   (``scipy.optimize.linear_sum_assignment``; scipy is imported only when ``model.ot`` is on).
2. :func:`odeint` -- the ODE solvers, on a tuple of tensors (the image, and the log-density for the likelihood):
   ``euler`` (1 network evaluation per step), ``midpoint`` (2), ``heun`` (2: the explicit trapezoid rule, Heun's
   second-order method; no step skipped at the end, since t = 1 is not singular here) at a fixed number of
   ``steps``, and ``dopri5`` (Dormand & Prince 1980: 5th order with an embedded 4th-order error estimate,
   first-same-as-last, step size control with ``rtol``/``atol`` as in Hairer et al. and torchdiffeq; one step
   size per batch). Every solver counts its network evaluations (NFE); ``FlowMatching.last_nfe`` holds the NFE
   per image of the last ``sample`` call.
3. :func:`ode_log_likelihood` -- the instantaneous change of variables (Chen et al. 2018; FFJORD, Grathwohl et
   al. 2019): ``d log p_t(x_t) / dt = -div v(x_t, t)``, integrated from the data (t = 1) back to the noise
   (t = 0) beside the state: ``log p1(x1) = log N(x0; 0, I) - int_0^1 div v dt``. The divergence is Hutchinson's
   estimator ``eps^T (dv/dx) eps`` with Rademacher probes drawn once per image from the given generator and held
   fixed along the path (unbiased: ``E[eps eps^T] = I``), or exact (``divergence="exact"``: one backward pass per
   dimension -- for small images or tests).
4. :class:`FlowMatching` -- the zoo model, with the U-Nets of ``zoo_plugins.unet`` unchanged (time fed as
   ``1000 t``, the scale their sinusoidal embedding was made for); registered as ``flow`` (attention U-Net),
   ``flow-attention`` and ``flow-convnext``.

Class-conditional exactly as DDPM (``zoo_plugins.ddpm``; the shared pieces are in ``zoo_plugins.conditioning``):
``model.conditional: true`` on a dataset with labels (K classes) adds the U-Net's class embedding of K + 1 rows
(the last the null class) to its time embedding; training replaces each label by the null class with
probability ``model.label_dropout`` (0.1). ``model.sample(n, g, labels=y, guidance=w)`` integrates the guided
velocity ``v = v_c + w (v_c - v_u)`` (classifier-free guidance, Ho & Salimans 2022; diffusers' scale s = 1 + w)
with every solver: each evaluation is one batched forward of ``[x, x]`` with ``[y, null]`` (so NFE counts
evaluations, each a doubled batch), and at w = 0 there is no unconditional pass at all. Label -1 asks for an
unconditional image (the null class alone, unaffected by w).

Hand-written solvers, not torchdiffeq: the fixed-step methods are one Butcher-tableau loop and dopri5 thirty lines
more (73 lines in all, with the NFE counted where the network is called). Measured against torchdiffeq 0.2.5 on
the 3-minute `cpu`-preset U-Net (batch 32, one thread, a shared machine, best of 2): Euler 10 steps 22.5 s here
vs 20.3 s, Heun 10 37.4 vs 40.0 s, midpoint 10 41.1 vs 44.0 s, the same NFE and the same images to 1.4e-6 (sums
in another order); dopri5 at rtol = atol = 1e-3 took 25 evaluations (47.8 s) vs 26 (48.7 s: its first step
size costs one more), images within 5e-3 (another step sequence, both inside the tolerance). The times are equal
within the noise of the shared machine: the network is the time either way. torchdiffeq would add 2,072 lines
and scipy as dependencies, and bring the adjoint method and other solvers that nothing here needs; an NFE count
would still need a wrapper around the network.

Likelihood (``zoo eval --nll``): uniform dequantisation (``zoo.contract.uniform_dequantize``) turns the flow's
continuous density into a log-probability of the 8-bit image; ``bound`` is ``"exact"``: the density of the
dequantised image is the model's exact one, estimated without bias by Hutchinson's probes (the ODE solved to
``rtol``/``atol``). As for every dequantised density, ``E_u log p(v)`` is itself a lower bound on ``log P(k)``.
A conditional run's likelihood is exact too: of log p(x | y) for given labels, and, without labels (as ``zoo
eval --nll`` asks), of the null-class velocity field -- the unconditional flow p(x) that the same network
learned through label dropout (its ODE, not an average of the conditional densities), still reported as
``exact``; with ``model.label_dropout=0`` that field was never trained, so it is a one-line error.
"""
from __future__ import annotations

import copy
import math
import sys

import torch
import torch.nn.functional as F

from zoo import Key, ZooError, ZooModel, hookimpl
from zoo.contract import check_sample_options, randn, to_unit, uniform_dequantize
from zoo.progress import within
from zoo_plugins.conditioning import (drop_labels, guidance_weight, guided, label_dropout, labels_or_error,
                                      requested_labels)
from zoo_plugins.ddpm import DDPM, ConvNeXtDDPM
from zoo_plugins.unet import UNETS, AttentionUNet, ConvNeXtUNet

SAMPLERS = ("euler", "midpoint", "heun", "dopri5")
TIME_SAMPLINGS = ("uniform", "logit_normal")
DIVERGENCES = ("hutchinson", "exact")
TIME_SCALE = 1000.0  # the U-Nets' sinusoidal time embedding expects DDPM-like timesteps in [0, 1000)
MAX_NFE = 10_000     # dopri5 gives up (one-line error) past this many evaluations

# Butcher tableaux of the fixed-step methods: (a: rows of the stage coefficients, b: weights, c: nodes)
TABLEAUX = {
    "euler": ((), (1.0,), (0.0,)),
    "midpoint": (((0.5,),), (0.0, 1.0), (0.0, 0.5)),
    "heun": (((1.0,),), (0.5, 0.5), (0.0, 1.0)),
}
# Dormand-Prince 5(4): stages, 5th-order weights (the solution, FSAL) and 4th-order weights (the error estimate)
DOPRI5_A = ((1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
DOPRI5_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
DOPRI5_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
DOPRI5_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


# --- 1. training pairs -------------------------------------------------------------------------
def sample_time(n: int, mode: str, mean: float = 0.0, std: float = 1.0, device=None) -> torch.Tensor:
    """``n`` training times in (0, 1) from torch's global RNG: ``uniform``, or ``logit_normal``
    (``sigmoid(N(mean, std^2))``: more weight mid-path, Esser et al. 2024)."""
    if mode == "uniform":
        return torch.rand(n, device=device)
    return torch.sigmoid(mean + std * torch.randn(n, device=device))


def ot_pairing(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """``x0`` re-ordered so that ``(x0[i], x1[i])`` is the exact minibatch OT coupling under squared Euclidean
    cost (Tong et al. 2023; POT's ``emd`` gives the same permutation for equal batch weights)."""
    from scipy.optimize import linear_sum_assignment
    cost = torch.cdist(x0.flatten(1).double(), x1.flatten(1).double()).square()
    rows, cols = linear_sum_assignment(cost.cpu().numpy())   # noise rows[i] goes with image cols[i]
    order = torch.empty(len(cols), dtype=torch.long)
    order[torch.as_tensor(cols)] = torch.as_tensor(rows)
    return x0[order.to(x0.device)]


def require_scipy() -> None:
    try:
        import scipy.optimize  # noqa: F401
    except ImportError:
        raise ZooError("model.ot=true needs scipy (minibatch OT coupling): pip install scipy, or set "
                       "model.ot=false") from None


# --- 2. ODE solvers ------------------------------------------------------------------------------
def _comb(x: tuple, h: float, coeffs, ks: list) -> tuple:
    """``x + h * sum_j coeffs[j] * ks[j]`` on a tuple of tensors (zero coefficients skipped)."""
    out = []
    for i, xi in enumerate(x):
        acc = xi
        for c, k in zip(coeffs, ks):
            if c:
                acc = acc + (h * c) * k[i]
        out.append(acc)
    return tuple(out)


def _rk_step(f, t: float, x: tuple, h: float, a, b, c, k0=None) -> tuple[tuple, list]:
    """One explicit Runge-Kutta step; ``k0``: the first stage when already known (FSAL)."""
    ks = [k0 if k0 is not None else f(t, x)]
    for i in range(1, len(c)):
        ks.append(f(t + c[i] * h, _comb(x, h, a[i - 1], ks)))
    return _comb(x, h, b, ks), ks


def _error_ratio(err: tuple, x: tuple, y: tuple, rtol: float, atol: float) -> float:
    """RMS over every element of ``err / (atol + rtol * max(|x|, |y|))`` (Hairer et al., II.4)."""
    total, count = 0.0, 0
    for e, a, b in zip(err, x, y):
        scale = atol + rtol * torch.maximum(a.abs(), b.abs())
        total += float((e / scale).double().square().sum())
        count += e.numel()
    return math.sqrt(total / max(count, 1))


def odeint(f, x, t0: float, t1: float, method: str = "euler", steps: int = 10, rtol: float = 1e-5,
           atol: float = 1e-5, on_step=None) -> tuple[tuple, int]:
    """Solve ``dx/dt = f(t, x)`` from ``t0`` to ``t1`` (either direction). ``x``: a tuple of tensors; ``f(t, x)``
    (``t`` a python float) returns a tuple like it. Returns ``(x(t1), nfe)``, ``nfe`` the calls of ``f``.

    Fixed-step methods take ``steps`` equal steps; ``dopri5`` adapts its step to ``rtol``/``atol``.
    ``on_step(nfe)`` is called after each accepted step."""
    x = tuple(x)
    if method in TABLEAUX:
        a, b, c = TABLEAUX[method]
        h = (t1 - t0) / steps
        for i in range(steps):
            x, _ = _rk_step(f, t0 + i * h, x, h, a, b, c)
            if on_step is not None:
                on_step((i + 1) * len(b))
        return x, steps * len(b)
    if method != "dopri5":
        raise ZooError(f"sampler {method!r} is not one of {', '.join(SAMPLERS)}")
    return _dopri5(f, x, t0, t1, rtol, atol, on_step)


def _dopri5(f, x: tuple, t0: float, t1: float, rtol: float, atol: float, on_step) -> tuple[tuple, int]:
    span, t = t1 - t0, t0
    h = math.copysign(min(0.05, abs(span)), span)
    k0, nfe = f(t, x), 1
    while (t1 - t) * span > 0:
        last = abs(h) >= abs(t1 - t)
        h = t1 - t if last else h
        y, ks = _rk_step(f, t, x, h, DOPRI5_A, DOPRI5_B, DOPRI5_C, k0)
        nfe += len(DOPRI5_C) - 1
        err = _comb(tuple(torch.zeros_like(v) for v in x), h, [p - q for p, q in zip(DOPRI5_B, DOPRI5_B4)], ks)
        ratio = _error_ratio(err, x, y, rtol, atol)
        if ratio <= 1.0:  # accept: the last stage is f(t + h, y), the next step's first (FSAL)
            t, x, k0 = t1 if last else t + h, y, ks[-1]
            if on_step is not None:
                on_step(nfe)
        if nfe > MAX_NFE:
            raise ZooError(f"dopri5 needed over {MAX_NFE} network evaluations (rtol={rtol}, atol={atol}): "
                           f"loosen the tolerances or use a fixed-step sampler")
        h = h * min(10.0, max(0.2, 0.9 * (ratio if ratio > 0 else 1e-10) ** -0.2))
    return x, nfe


# --- 3. likelihood -------------------------------------------------------------------------------
def divergence(v: torch.Tensor, x: torch.Tensor, probes: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * sum_k probes[k] . (dv/dx)^T probes[k]`` per image, ``(B,)``: with Rademacher probes and
    ``scale = 1/K`` Hutchinson's estimate of ``tr(dv/dx)``; with the D one-hot basis vectors and ``scale = 1``
    the exact trace. ``v = velocity(x)`` must be built with ``x.requires_grad``; images must not interact
    (no batch statistics), which holds for the U-Nets in eval mode."""
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for k, eps in enumerate(probes):
        (vjp,) = torch.autograd.grad(v, x, eps, retain_graph=k + 1 < len(probes))
        total += (vjp * eps).flatten(1).sum(1).double()
    return total * scale


def divergence_probes(x: torch.Tensor, mode: str, k: int, generator: torch.Generator | None) -> tuple:
    """``(probes (K, B, ...), scale)`` for :func:`divergence`: ``k`` Rademacher probes per image drawn on
    ``generator``, or the exact basis (K = elements per image)."""
    if mode == "exact":
        d = x[0].numel()
        basis = torch.eye(d, device=x.device, dtype=x.dtype).view(d, 1, *x.shape[1:])
        return basis.expand(d, *x.shape), 1.0
    if mode != "hutchinson":
        raise ZooError(f"divergence={mode!r} is not one of {', '.join(DIVERGENCES)}")
    bits = torch.randint(0, 2, (k, *x.shape), generator=generator, device=generator.device if generator else None)
    return (bits.to(x.device, x.dtype) * 2 - 1), 1.0 / k


def ode_log_likelihood(velocity, x1: torch.Tensor, generator=None, divergence_mode: str = "hutchinson",
                       probes: int = 1, method: str = "dopri5", steps: int = 50, rtol: float = 1e-5,
                       atol: float = 1e-5) -> tuple[torch.Tensor, int]:
    """``(log p1(x1) (B,) float64 nats, nfe)`` under the flow ``dx/dt = velocity(x, t)`` from ``x0 ~ N(0, I)``
    at t = 0: ``x1`` is carried back to t = 0 while the divergence is integrated beside it (module docstring).
    ``nfe`` counts network evaluations (each with its backward passes for the divergence)."""
    eps, scale = divergence_probes(x1, divergence_mode, int(probes), generator)

    def f(t: float, state: tuple) -> tuple:
        with torch.enable_grad():
            x = state[0].detach().requires_grad_(True)
            v = velocity(x, t)
            div = divergence(v, x, eps, scale)
        return v.detach(), div

    zero = torch.zeros(x1.shape[0], dtype=torch.float64, device=x1.device)
    (x0, integral), nfe = odeint(f, (x1.detach(), zero), 1.0, 0.0, method, steps, rtol, atol)
    d = x0[0].numel()
    log_prior = -0.5 * x0.double().square().flatten(1).sum(1) - 0.5 * d * math.log(2 * math.pi)
    return log_prior + integral, nfe   # integral = int_1^0 div dt = -int_0^1 div dt


# --- 4. the zoo model ------------------------------------------------------------------------------
UNET_KEYS = ("unet", "dim", "dim_mults", "num_res_blocks", "attn_resolutions", "attn_heads", "dropout", "groups",
             "convnext_mult")
CONDITIONING_KEYS = ("conditional", "label_dropout", "guidance")  # DDPM's keys, the same meaning


def build_unet(m, channels: int, size: int):
    """The U-Net ``model.unet`` names, sized by ``model.*`` as for DDPM."""
    if m.unet == "attention":
        return AttentionUNet(channels, int(m.dim), [int(v) for v in m.dim_mults], int(m.num_res_blocks),
                             [int(r) for r in m.attn_resolutions], int(m.attn_heads), float(m.dropout),
                             int(m.groups), size)
    if m.unet == "convnext":
        return ConvNeXtUNet(channels, int(m.dim), [int(v) for v in m.dim_mults], int(m.convnext_mult), size)
    raise ZooError(f"model.unet={m.unet!r} is not one of {', '.join(UNETS)}")


def _without(preset: dict, *keys: str) -> dict:
    return {k: copy.deepcopy(v) for k, v in preset.items() if k not in keys}


class FlowMatching(ZooModel):
    """Flow matching on the linear path (rectified flow / I-CFM), velocity objective, ODE samplers."""

    family = "flow"
    description = "flow matching (rectified flow, Lipman/Liu et al. 2023): U-Net velocity, Euler/Heun/dopri5, exact NLL"
    data_range = (-1.0, 1.0)
    can_condition = True
    null_label = True
    sample_options = {
        "sampler": Key(None, "euler, midpoint, heun (fixed steps) or dopri5 (adaptive) [default: model.sampler]",
                       type=str, choices=SAMPLERS, nullable=True),
        "steps": Key(None, "solver steps of euler/midpoint/heun; network evaluations per image = steps (euler) or "
                     "2 * steps (midpoint, heun) [default: model.sample_steps]", type=int, ge=1),
        "rtol": Key(None, "dopri5 relative tolerance [default: model.rtol]", type=float, gt=0),
        "atol": Key(None, "dopri5 absolute tolerance [default: model.atol]", type=float, gt=0),
        "batch_size": Key(None, "images per sampling batch [default: model.sample_batch_size]", type=int, ge=1),
        "progress": Key(False, "show a progress bar on a terminal"),
        "guidance": copy.deepcopy(DDPM.sample_options["guidance"]),
    }
    likelihood_options = {  # zoo eval --nll-option / zoo compare --nll-option
        "solver": Key("dopri5", "ODE solver from the data to the noise", choices=SAMPLERS),
        "steps": Key(50, "steps of a fixed-step solver (euler, midpoint, heun)", ge=1),
        "rtol": Key(1e-5, "dopri5 relative tolerance", gt=0),
        "atol": Key(1e-5, "dopri5 absolute tolerance", gt=0),
        "divergence": Key("hutchinson", "hutchinson (Rademacher probes: one backward pass per probe) or exact "
                          "(one backward pass per dimension: small images only)", choices=DIVERGENCES),
        "probes": Key(1, "Hutchinson probes per image (held fixed along the path)", ge=1),
    }
    config = {
        "model": {
            **{k: DDPM.config["model"][k] for k in UNET_KEYS},
            "time_sampling": Key("uniform", "training times: uniform, or logit_normal (sigmoid of a normal, "
                                 "Esser et al. 2024)", choices=TIME_SAMPLINGS),
            "logit_mean": Key(0.0, "logit_normal: mean of the normal"),
            "logit_std": Key(1.0, "logit_normal: standard deviation of the normal", gt=0),
            "ot": Key(False, "minibatch optimal-transport coupling of noise and images (OT-CFM, Tong et al. 2023; "
                             "needs scipy)"),
            "sampler": Key("heun", "default ODE solver (sample grids, zoo sample/eval/compare)", choices=SAMPLERS),
            "sample_steps": Key(25, "default steps of euler/midpoint/heun", ge=1),
            "rtol": Key(1e-4, "default dopri5 relative tolerance for sampling", gt=0),
            "atol": Key(1e-4, "default dopri5 absolute tolerance for sampling", gt=0),
            "sample_batch_size": Key(1024, "images per sampling batch", ge=1),
            **{k: copy.deepcopy(DDPM.config["model"][k]) for k in CONDITIONING_KEYS},
        },
        "data": {"image_size": 32},
        "trainer": copy.deepcopy(DDPM.config["trainer"]),
        "ema": copy.deepcopy(DDPM.config["ema"]),
    }
    # `gpu` is the defaults (DDPM's GPU U-Net, not yet measured on a GPU). `cpu` is DDPM's measured CPU recipe
    # (the same U-Net, lr, batch, EMA and 20-minute budget) with logit-normal time sampling and the midpoint
    # method at 10 steps (20 NFE, DDPM's DPM-Solver++ budget), as flow's own ablations chose
    # (benchmarks/results/flow-recipe-cpu: logit-normal 21.4 against uniform 26.5 at 5 minutes; size, lr and
    # batch stayed DDPM's; OT coupling gained 3 FID, within the noise, and needs scipy, so it stays an option;
    # at 20 NFE midpoint 12.8, Euler 13.6, Heun 14.9, and dopri5 12.5 at 98 NFE).
    presets = {
        "gpu": {},
        "cpu": {
            "model": {**_without(DDPM.presets["cpu"]["model"], "objective", "schedule", "dpm_steps"),
                      "time_sampling": "logit_normal", "sampler": "midpoint", "sample_steps": 10},
            **{k: copy.deepcopy(v) for k, v in DDPM.presets["cpu"].items() if k != "model"},
        },
        "tiny": {
            "model": {**DDPM.presets["tiny"]["model"], "sample_steps": 4},
            "trainer": copy.deepcopy(DDPM.presets["tiny"]["trainer"]),
        },
    }
    preset_help = {
        "gpu": "the full U-Net (dim 64, 32x32, 30k steps): chosen when training on CUDA",
        "cpu": "DDPM's CPU recipe (dim 32, 28x28, 20 minutes), logit-normal times, midpoint at 20 NFE: chosen "
               "when training on a CPU",
        "tiny": "smoke test, not for results: 100 steps, about 15 CPU-seconds in all",
    }

    def __init__(self, cfg):
        super().__init__(cfg)
        m = cfg.model
        c, size, _ = self.image_shape
        self.net = build_unet(m, c, size)
        if self.num_classes is not None:
            self.net.add_classes(self.num_classes)  # index num_classes is the null class
        if m.ot:
            require_scipy()
        self.sampling_options({})  # fail at construction on a bad sampler default
        self.last_nfe: float | None = None  # network evaluations per image of the last sample() call

    def velocity(self, x: torch.Tensor, t, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The network's velocity at ``x`` and time ``t`` (a float or a ``(B,)`` tensor in [0, 1]); ``labels``
        (``(B,)`` in ``0..num_classes``, the last the null class) for a conditional run, None for the null class."""
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device).expand(x.shape[0])
        return self.net(x, t * TIME_SCALE, labels).float()

    def training_loss(self, x: torch.Tensor, phase: str, labels: torch.Tensor | None = None) -> dict:
        """MSE between the predicted and the path's velocity ``x1 - x0`` at ``x_t = (1 - t) x0 + t x1``; a
        conditional run's labels become the null class with probability ``model.label_dropout``."""
        m = self.cfg.model
        y = labels_or_error(self, labels)
        if y is not None:
            y = drop_labels(self, y)
        x0 = torch.randn_like(x)
        if m.ot:
            x0 = ot_pairing(x0, x)
        t = sample_time(x.shape[0], m.time_sampling, float(m.logit_mean), float(m.logit_std), x.device)
        tb = t.view(-1, 1, 1, 1)
        xt = (1 - tb) * x0 + tb * x
        return {"loss": F.mse_loss(self.velocity(xt, t, y), x - x0)}

    # --- sampling ---------------------------------------------------------------------------------
    def sampling_options(self, options: dict) -> dict:
        """Options given to ``sample`` filled in from ``cfg.model``; unknown or bad ones are a ZooError."""
        options = check_sample_options(self, options, source="sampling options")
        m = self.cfg.model
        sampler = options.get("sampler") or m.sampler
        if sampler not in SAMPLERS:
            raise ZooError(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)} (e.g. --sampler heun --steps 10)")
        fixed = {k: options[k] for k in ("steps",) if options.get(k) is not None and sampler == "dopri5"}
        adaptive = {k: options[k] for k in ("rtol", "atol") if options.get(k) is not None and sampler != "dopri5"}
        if fixed or adaptive:
            bad, value = next(iter({**fixed, **adaptive}.items()))
            raise ZooError(f"{bad}={value} does not apply to sampler {sampler} (steps: euler, midpoint, heun; "
                           f"rtol/atol: dopri5)")
        return {"sampler": sampler, "steps": int(options.get("steps") or m.sample_steps),
                "rtol": float(options.get("rtol") or m.rtol), "atol": float(options.get("atol") or m.atol),
                "batch_size": int(options.get("batch_size") or m.sample_batch_size),
                "progress": bool(options.get("progress", False)),
                "guidance": guidance_weight(self, options.get("guidance"))}

    def _autocast(self):
        from zoo.device import autocast, resolve_precision
        device = self.device
        return autocast(device, resolve_precision(str(self.cfg.trainer.precision), device))

    def field(self, y: torch.Tensor | None, w: float):
        """The velocity field ``(x, t) -> v`` (``t`` a float) the sampler integrates: for labels ``y`` (None: an
        unconditional run) with guidance ``w`` (:func:`zoo_plugins.conditioning.guided`)."""
        if y is None:
            return self.velocity
        net = guided(self.velocity, y, w, self.num_classes)
        return lambda x, t: net(x, torch.full((x.shape[0],), float(t), device=x.device))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, labels=None, **options) -> torch.Tensor:
        """``n`` images in [0, 1]; options: sampler (euler|midpoint|heun|dopri5), steps, rtol, atol, batch_size,
        progress, guidance. A conditional run takes ``labels`` (see :meth:`zoo.ZooModel.sample_labels`; -1 is
        unconditional) and guides with ``guidance`` (module docstring). Sets ``last_nfe`` (evaluations of the
        velocity field per image, averaged over batches; with guidance each is one doubled-batch forward)."""
        opts = self.sampling_options(options)
        n, bs = int(n), opts["batch_size"]
        y = requested_labels(self, n, labels)
        from tqdm.auto import tqdm
        per_batch = opts["steps"] * len(TABLEAUX[opts["sampler"]][1]) if opts["sampler"] in TABLEAUX else 0
        bar = tqdm(desc=f"{opts['sampler']}", unit="nfe", disable=not (opts["progress"] and sys.stderr.isatty()),
                   leave=False)
        images, evaluations = [], 0
        with torch.inference_mode(), self._autocast(), bar:
            for start in range(0, n, bs):
                b = min(bs, n - start)
                x = randn((b, *self.image_shape), generator, self.device)

                def on_step(nfe):
                    bar.update(nfe - bar.n)
                    within(nfe, per_batch or MAX_NFE)
                field = self.field(None if y is None else y[start:start + b], opts["guidance"])
                (x,), nfe = odeint(lambda t, s, field=field: (field(s[0], t),), (x,), 0.0, 1.0, opts["sampler"],
                                   opts["steps"], opts["rtol"], opts["atol"], on_step)
                bar.reset()
                evaluations += nfe * b
                images.append(to_unit(x, self.data_range))
        self.last_nfe = evaluations / max(n, 1)
        return torch.cat(images).contiguous()

    def log_likelihood(self, x: torch.Tensor, generator: torch.Generator | None = None,
                       labels: torch.Tensor | None = None, **options) -> dict:
        """``{"nats": (B,), "bound": "exact", "nfe": float}``: log P of each 8-bit image from the flow's density
        of its uniform dequantisation (module docstring). Options: ``likelihood_options`` (solver, steps, rtol,
        atol, divergence, probes). ``generator`` draws the dequantisation and the probes (default: seeded 0).
        Runs in eval mode and fp32, with autograd on for the divergence.

        A conditional run gives log p(x | y) for ``labels`` (one per image, or one for all); without labels (as
        ``zoo eval --nll`` calls it) the exact density of the null-class velocity field: the unconditional
        p(x) the same network learned through label dropout -- a one-line error if ``model.label_dropout`` was
        0 (that field was never trained)."""
        from zoo.contract import check_likelihood_options
        o = {k: key.default for k, key in self.likelihood_options.items()}
        o.update(check_likelihood_options(self, options))
        velocity = self.likelihood_field(len(x), labels)
        g = generator if generator is not None else torch.Generator(self.device).manual_seed(0)
        was_training = self.training
        self.eval()
        try:
            v, log_jacobian = uniform_dequantize(x.to(self.device).float().clone(), self.data_range, g)
            logp, nfe = ode_log_likelihood(velocity, v, g, o["divergence"], o["probes"], o["solver"],
                                           o["steps"], o["rtol"], o["atol"])
        finally:
            self.train(was_training)
        return {"nats": logp + log_jacobian, "bound": "exact", "nfe": nfe}

    def likelihood_field(self, n: int, labels):
        """The velocity ``log_likelihood`` integrates: labelled by ``labels``, or the null class, when conditional."""
        if self.num_classes is None and labels is None:
            return self.velocity
        if labels is None and not label_dropout(self) > 0:
            raise ZooError("this conditional flow trained with model.label_dropout=0, so it has no unconditional "
                           "density: give labels= for log p(x | y) (zoo eval --nll gives none)")
        y = requested_labels(self, n, -1 if labels is None else labels)
        return lambda x, t: self.velocity(x, t, y)


class ConvNeXtFlow(FlowMatching):
    """Flow matching with the ConvNeXt U-Net; its `cpu` size is DDPM-ConvNeXt's (dim 16), the rest of the `cpu`
    recipe is the attention flow's (measured with the attention U-Net only)."""
    presets = {**FlowMatching.presets, "cpu": {**FlowMatching.presets["cpu"], "model": {
        **FlowMatching.presets["cpu"]["model"], "dim": ConvNeXtDDPM.presets["cpu"]["model"]["dim"]}}}
    preset_help = {**FlowMatching.preset_help,
                   "cpu": "DDPM-ConvNeXt's CPU recipe (dim 16, 28x28, 20 minutes), logit-normal times, midpoint at "
                          "20 NFE: chosen when training on a CPU",
                   "tiny": "smoke test, not for results: 100 steps, about 30 CPU-seconds in all"}


@hookimpl
def zoo_register_models(register):
    register(FlowMatching, name="flow")
    register(FlowMatching, name="flow-attention", config={"model": {"unet": "attention"}},
             description="flow matching with the attention U-Net of Ho et al. (same as flow)")
    register(ConvNeXtFlow, name="flow-convnext", config={"model": {"unet": "convnext"}},
             description="flow matching with a ConvNeXt U-Net (no attention)")

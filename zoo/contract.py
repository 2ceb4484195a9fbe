"""The model contract: what a zoo model plugin implements.

This is the one module a plugin author reads. A model is a ``torch.nn.Module``
subclass of :class:`ZooModel`. The shared trainer (``zoo/trainer.py``) owns the
loop, devices, precision, EMA, checkpoints and logging; a model only says

* how to build itself from the resolved config   -> ``__init__(cfg)``
* which optimizers it has                         -> ``configure_optimizers()``
* in which order they step for one batch          -> ``phases()``
* the loss(es) for a batch in one phase           -> ``training_loss(x, phase)``
* how to draw images                              -> ``sample(n, generator)``

and optionally ``reconstruct(x)`` (autoencoders), ``after_training(batches)``
(e.g. fit a latent density once training is over) and ``log_likelihood(x)``
(the log-probability of each image: ``zoo eval --nll`` turns it into bits/dim,
and ``zoo compare`` shows it as a column -- see :meth:`ZooModel.log_likelihood`).

Class-conditional models (``can_condition = True``) get the class labels: when a run
is conditional (``model.conditional: true`` on a dataset with labels), ``self.num_classes``
is the number of classes (else ``None``), the trainer calls
``training_loss(x, phase, labels=y)`` with ``y`` the batch's labels (int64, ``(B,)``,
on the device), and ``sample(n, generator, labels=y)`` is asked for those classes.
An unconditional run -- and every plugin that does not declare ``can_condition`` --
is called exactly as before: ``training_loss(x, phase)`` and ``sample(n, generator)``.

One trainer step takes one batch ``x`` (already on the device, shape
``(B, C, H, W)``, float, scaled to ``data_range``) and, for every
``(optimizer_name, repeats)`` in ``phases()``, runs ``repeats`` times:
zero grads -> ``training_loss(x, phase)["loss"].backward()`` -> clip -> step.
An autoencoder has one phase; a GAN has ``[("d", k), ("g", 1)]``; a diffusion
model has one phase and an EMA. Nothing else is special-cased.

Randomness inside ``training_loss`` (noise, timesteps, dropout) uses torch's
global RNG, which the trainer seeds and checkpoints, so resumed runs are
bitwise identical on CPU. ``sample`` must use only the ``generator`` it is given,
so the same seed always gives the same images.

Class attributes describe the model to the registry:

``family``       short family name shown by ``zoo list`` ("vae", "gan", ...)
``description``  one line for ``zoo list``
``config``       default config overrides: ``{"model": {...}, "trainer": {...},
                 "data": {...}, "ema": {...}}``. Every key a model reads from
                 ``cfg.model`` is declared here, best as a :class:`zoo.Key`
                 (default, one line of help, valid values: every config layer
                 is checked against it); a plain value is a default with no help.
                 Unknown keys are rejected with a suggestion.
``presets``      named overrides, e.g. ``{"tiny": {...}}`` -- every built-in
                 ships ``tiny``: a few hundred CPU steps in under a minute.
                 Presets named ``cpu`` and ``gpu`` are special: with no
                 ``--preset``, zoo picks the one that fits the device.
``preset_help``  one line per preset for ``zoo list``, e.g.
                 ``{"tiny": "smoke test: seconds on a CPU, not for results"}``.
``data_range``   the range the model wants its input in: ``(-1, 1)`` or ``(0, 1)``.
``sample_options`` the options ``sample(n, generator, **options)`` accepts, each a
                 :class:`zoo.Key` (default, one line of help, valid values), e.g.
                 ``{"steps": Key(None, "sampling steps (default: model.sample_steps)",
                 type=int, ge=1)}``. ``zoo sample/eval/compare --option KEY=VALUE``
                 pass them, checked against these declarations before any work;
                 ``zoo list MODEL`` shows them. A model with none declares ``{}``.
``can_condition``  True when the model supports ``model.conditional: true`` (class labels);
                 ``zoo list`` says so. Such a model reads ``self.num_classes`` (``None``:
                 this run is unconditional) and accepts ``labels=`` in ``training_loss``
                 and ``sample``; :meth:`ZooModel.sample_labels` checks requested labels.
``null_label``   True when the model also samples unconditionally from a conditional
                 run (label ``-1``: trained with label dropout, e.g. for classifier-free
                 guidance).
``likelihood_options`` the same for ``log_likelihood(x, **options)`` (e.g. the
                 number of importance samples); ``zoo eval --nll --nll-option KEY=VALUE``
                 passes them, checked the same way.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import nn

from .config import Key

# The plugin API version (``zoo.API_VERSION``) lives in zoo/hookspecs.py, next to the hooks: no torch there.


class ZooModel(nn.Module):
    family: ClassVar[str] = "other"
    description: ClassVar[str] = ""
    config: ClassVar[dict] = {}
    presets: ClassVar[dict[str, dict]] = {}
    preset_help: ClassVar[dict[str, str]] = {}
    data_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    sample_options: ClassVar[dict[str, Key]] = {}
    likelihood_options: ClassVar[dict[str, Key]] = {}
    can_condition: ClassVar[bool] = False
    null_label: ClassVar[bool] = False

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        c, h, w = cfg.data.channels, cfg.data.image_size, cfg.data.image_size
        self.image_shape: tuple[int, int, int] = (int(c), int(h), int(w))
        self.num_classes: int | None = conditional_classes(cfg) if self.can_condition else None

    # --- training -----------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by name; names are used by ``phases()``. Called after the
        model is on its device. Default: one AdamW over all parameters with
        ``trainer.lr``, ``trainer.betas`` and ``trainer.weight_decay``."""
        return {"main": self.adamw(self.parameters())}

    def phases(self) -> Sequence[tuple[str, int]]:
        """``(optimizer_name, repeats)`` run in order for each batch."""
        return [("main", 1)]

    def training_loss(self, x: torch.Tensor, phase: str) -> dict[str, torch.Tensor]:
        """Losses for batch ``x`` in ``phase``. Must contain ``"loss"`` (a scalar
        that is back-propagated); other scalar entries are logged as they are.
        A conditional run also passes ``labels=`` (int64 ``(B,)``, 0 .. num_classes - 1)."""
        raise NotImplementedError

    def lr_factor(self, step: int) -> float:
        """Multiplier on every optimizer's learning rate at ``step`` (after the
        trainer's warm-up). Override for a schedule."""
        return 1.0

    def after_training(self, batches: Iterable[torch.Tensor]) -> None:
        """Called once when training ends with an iterator over the training
        data (one pass, model input range). Whatever it fits must live in
        buffers so that it is saved with the weights."""

    # --- inference ----------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, **options) -> torch.Tensor:
        """``n`` images, float in [0, 1], shape ``(n, *self.image_shape)``,
        drawn with ``generator`` only. ``options`` are sampler settings a model
        may accept (e.g. ``sampler="ddim", steps=50``) and must otherwise reject.
        A conditional run also takes ``labels=``: see :meth:`sample_labels`."""
        raise NotImplementedError

    def sample_labels(self, n: int, labels=None, device=None) -> torch.Tensor:
        """The ``(n,)`` int64 labels a conditional ``sample(n, generator, labels=...)`` draws, on ``device``
        (default: the model's). ``labels``: ``None`` gives every class in turn (``arange(n) % num_classes``:
        balanced and deterministic), an int gives that class n times, a sequence or tensor gives one per
        image. ``-1`` asks for an unconditional image where the model declares ``null_label``. A label out
        of range, a count that is not ``n``, or labels for an unconditional run are one-line
        :class:`zoo.ZooError` s."""
        return check_labels(self, n, labels, device or self.device)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` (model range in, [0, 1] out). Optional."""
        raise NotImplementedError(f"{type(self).__name__} does not reconstruct")

    def log_likelihood(self, x: torch.Tensor, generator: torch.Generator | None = None, **options) -> dict:
        """Optional: the log-probability of each 8-bit image in ``x``, in nats.

        ``x`` is a batch exactly as training feeds it: ``(B, C, H, W)`` float on the model's device, in
        ``data_range``, every value exactly ``k / 255`` (k = 0..255) mapped to ``data_range``, at the
        dataset's native size or zero-padded to ``data.image_size`` (the harness refuses runs that resize).
        ``generator`` (a seeded ``torch.Generator`` on the model's device) is the only randomness to use
        (dequantisation noise, latent samples, timesteps), so the same seed gives the same value.
        ``options`` are the model's declared ``likelihood_options``.

        Returns ``{"nats": (B,) tensor, "bound": str}``: ``nats[i]`` is log P(x_i) of the DISCRETE image
        (a probability, so <= 0) or a lower bound on it, and ``bound`` says which: ``"exact"``, ``"elbo"``,
        ``"iwae-K"`` (importance-weighted with K samples) or ``"vlb"`` (a diffusion variational bound).
        A model may add ``"also": {bound_name: (B,) tensor}`` -- looser bounds it got along the way (a VAE's
        ELBO next to its IWAE bound); the harness reports those too.

        A continuous density p(v) turns into one with uniform dequantisation -- log P(k) >=
        E_u[log p(v)] + D log((hi - lo) / 256), v = lo + (hi - lo) (k + u) / 256, u ~ U[0, 1)^D --
        which :func:`uniform_dequantize` does; a discretised decoder gives P(k) directly.

        ``zoo eval RUN --nll`` reports the held-out images' ``bits_per_dim`` = -mean(nats) / (D ln 2),
        D the dataset's native C*H*W, and ``zoo compare`` shows it in a ``bits/dim`` column: a model
        that implements this method gets both for free. Default: not implemented (AEs, GANs: no density).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement log_likelihood()")

    # --- helpers for plugins ------------------------------------------------------
    def adamw(self, params, lr: float | None = None, betas=None, weight_decay=None) -> torch.optim.Optimizer:
        """AdamW from the trainer config, fused on CUDA and foreach elsewhere."""
        t = self.cfg.trainer
        params = [p for p in params if p.requires_grad]
        on_cuda = bool(params) and params[0].is_cuda
        return torch.optim.AdamW(
            params,
            lr=t.lr if lr is None else lr,
            betas=tuple(t.betas if betas is None else betas),
            weight_decay=t.weight_decay if weight_decay is None else weight_decay,
            fused=True if on_cuda else None,
            foreach=None if on_cuda else True,
        )

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


def conditional_classes(cfg: Any) -> int | None:
    """Classes of a conditional run (``model.conditional`` true and the dataset's ``data.num_classes``),
    else ``None``."""
    model, data = cfg.get("model") or {}, cfg.get("data") or {}
    if not model.get("conditional", False):
        return None
    k = data.get("num_classes")
    return int(k) if k else None


def check_labels(model: "ZooModel", n: int, labels, device) -> torch.Tensor:
    """:meth:`ZooModel.sample_labels` for ``model``; see there."""
    from .errors import ZooError
    k = model.num_classes
    name = getattr(model.cfg, "model_name", None) or type(model).__name__.lower()
    if k is None:
        if labels is None:
            raise ZooError(f"model '{name}' is not conditional in this run: it takes no labels")
        raise ZooError(f"model '{name}' was trained without labels, so it cannot draw label(s) {_show(labels)}; "
                       f"train it with --set model.conditional=true to condition it")
    if labels is None:
        return torch.arange(n, device=device) % k
    y = torch.as_tensor(labels, dtype=torch.int64).to(device)
    y = y.expand(n).clone() if y.dim() == 0 else y.reshape(-1)
    if y.numel() != n:
        raise ZooError(f"{y.numel()} labels for {n} images: give one label, or one per image")
    low = -1 if model.null_label else 0
    bad = y[(y < low) | (y >= k)]
    if bad.numel():
        allowed = f"0..{k - 1}" + (" or -1 (unconditional)" if model.null_label else "")
        raise ZooError(f"label {int(bad[0])} is out of range: model '{name}' has {k} classes ({allowed})")
    return y


def _show(labels) -> str:
    t = torch.as_tensor(labels).reshape(-1)
    return ", ".join(str(int(v)) for v in t[:5]) + (", ..." if t.numel() > 5 else "")


def randn(shape, generator: torch.Generator, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normal noise drawn on ``generator``'s device, then moved to ``device``."""
    out = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    return out if device is None else out.to(device)


def rand(shape, generator: torch.Generator, device=None, dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) noise drawn on ``generator``'s device, then moved to ``device``."""
    out = torch.rand(shape, generator=generator, device=generator.device, dtype=dtype)
    return out if device is None else out.to(device)


def to_unit(x: torch.Tensor, data_range=(-1.0, 1.0)) -> torch.Tensor:
    """Map model-range images to [0, 1] (clamped, float32)."""
    lo, hi = data_range
    return ((x.float() - lo) / (hi - lo)).clamp_(0.0, 1.0)


def check_sample_options(model_or_cls, options: Mapping[str, Any], source: str = "--option",
                         name: str | None = None) -> dict:
    """``options`` checked against the model's declared ``sample_options`` and converted to their types:
    an unknown name or a bad value is a one-line :class:`zoo.ZooError`. Returns a new dict. ``name``:
    the registered model name for messages (default: from the model's config or class)."""
    from .errors import ZooError, did_you_mean
    declared = getattr(model_or_cls, "sample_options", {}) or {}
    cls = model_or_cls if isinstance(model_or_cls, type) else type(model_or_cls)
    name = name or getattr(getattr(model_or_cls, "cfg", None), "model_name", None) or getattr(cls, "name", None) \
        or cls.__name__.lower()
    out = {}
    for key, value in options.items():
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ZooError(f"model '{name}' has no sampling option '{key}'{did_you_mean(key, declared)} "
                           f"(its options: {known}; `zoo list {name}` describes them)")
        out[key] = declared[key].check(key, value, source)
    return out


def has_log_likelihood(model_or_cls) -> bool:
    """Whether a model (class or instance) implements :meth:`ZooModel.log_likelihood`."""
    cls = model_or_cls if isinstance(model_or_cls, type) else type(model_or_cls)
    return getattr(cls, "log_likelihood", None) is not ZooModel.log_likelihood


def fits_after_training(model_or_cls) -> bool:
    """Whether a model (class or instance) overrides :meth:`ZooModel.after_training` (fits something on the
    training images once training ends, like the AE's latent density)."""
    cls = model_or_cls if isinstance(model_or_cls, type) else type(model_or_cls)
    return cls.after_training is not ZooModel.after_training


def likelihood_option_names(model_or_cls) -> set[str] | None:
    """The option names ``log_likelihood`` accepts: its declared ``likelihood_options``, else the keyword
    arguments of its signature (``generator`` aside); None when it takes ``**options`` (anything goes)."""
    import inspect
    cls = model_or_cls if isinstance(model_or_cls, type) else type(model_or_cls)
    declared = getattr(cls, "likelihood_options", {}) or {}
    if declared:
        return set(declared)
    params = list(inspect.signature(cls.log_likelihood).parameters.values())[2:]   # self, x
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.name != "generator"}


def check_likelihood_options(model_or_cls, options: Mapping[str, Any], source: str = "--nll-option",
                             name: str | None = None) -> dict:
    """``options`` for ``log_likelihood`` checked against the model's ``likelihood_options`` (one-line
    :class:`zoo.ZooError` for an unknown name or a bad value; returns them converted).

    A model that declares none but names keyword arguments in its ``log_likelihood`` signature gets
    its names checked (values pass as given); one that takes ``**options`` gets them unchecked."""
    from .errors import ZooError, did_you_mean
    cls = model_or_cls if isinstance(model_or_cls, type) else type(model_or_cls)
    declared = getattr(cls, "likelihood_options", {}) or {}
    name = name or getattr(getattr(model_or_cls, "cfg", None), "model_name", None) or getattr(cls, "name", None) \
        or cls.__name__.lower()
    known = likelihood_option_names(cls)
    if known is None:
        return dict(options)
    out = {}
    for key, value in options.items():
        if key not in known:
            raise ZooError(f"model '{name}' has no likelihood option '{key}'{did_you_mean(key, known)} "
                           f"(its options: {', '.join(sorted(known)) or 'none'})")
        out[key] = declared[key].check(key, value, source) if declared else value
    return out


def uniform_dequantize(x: torch.Tensor, data_range, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform dequantisation of 8-bit images for a continuous density (Theis et al. 2016).

    ``x``: images whose values are exactly ``k / 255`` mapped to ``data_range = (lo, hi)``. Returns
    ``(v, log_jacobian)``: ``v = lo + (hi - lo) (k + u) / 256`` with ``u ~ U[0, 1)`` drawn on
    ``generator``, and the per-image constant ``D log((hi - lo) / 256)`` (D = elements per image), so that
    ``log p(v) + log_jacobian`` is an unbiased estimate of a lower bound on log P(k) for any density p
    on the model's range: log P(k) = log E_u[p(v)] + log_jacobian >= E_u[log p(v)] + log_jacobian."""
    from .errors import ZooError
    lo, hi = (float(v) for v in data_range)
    k = (x.double() - lo) / (hi - lo) * 255
    levels = k.round()
    if bool((k - levels).abs().max() > 1e-3) or bool(levels.min() < 0) or bool(levels.max() > 255):
        raise ZooError(f"log_likelihood needs 8-bit images (values k/255 mapped to data_range {data_range}); "
                       f"these are not -- were they resized?")
    u = rand(x.shape, generator, x.device, dtype=torch.float64)
    v = lo + (hi - lo) * (levels + u) / 256
    d = x[0].numel()
    return v.to(x.dtype), torch.full((x.shape[0],), d * math.log((hi - lo) / 256), device=x.device,
                                     dtype=torch.float64)


def check_choices(section: str = "model", **values: tuple[Any, Sequence[str]]) -> None:
    """One-line error for a config value outside its choices: ``check_choices(arch=(m.arch, ARCHS))``."""
    from .errors import ZooError
    for key, (value, allowed) in values.items():
        if value not in allowed:
            raise ZooError(f"{section}.{key}={value!r} is not one of {', '.join(allowed)}")

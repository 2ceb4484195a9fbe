"""Reusable checks that a model plugin keeps zoo's model contract (``zoo/contract.py``).

Call them from your plugin's pytest suite::

    from zoo.testing import check_model_contract

    def test_my_model_keeps_the_contract():
        check_model_contract("my-vae")                       # builds the `tiny` preset
        check_model_contract("my-vae", sets=["data.name=fashion-mnist", "model.latent=8"])

Each check fails with an ``AssertionError`` that names the model and what is wrong.
They run on the CPU in seconds with a ``tiny`` preset, on a small batch of the
configured dataset's real images (pass ``images=`` -- uint8 ``(N, C, H, W)`` -- to
use your own). Nothing here knows any particular model.
"""
from __future__ import annotations

import copy
import io
from typing import Iterable

import torch

from .contract import ZooModel
from .errors import ZooError

__all__ = ["check_model_contract"]


def check_model_contract(name: str, *, preset: str | None = "tiny", sets: Iterable[str] = (),
                         images: torch.Tensor | None = None, batch_size: int = 16, steps: int = 10,
                         n_samples: int = 4) -> ZooModel:
    """Check model ``name`` (a registered model) against the contract; returns the model built.

    What is checked:

    * it is registered with a description and ships ``preset``; the config resolves;
    * it can be built on the ``meta`` device (``zoo list`` counts parameters that way)
      and for real; ``data_range`` is ``(lo, hi)`` with ``lo < hi``;
    * ``configure_optimizers`` / ``phases``: every phase names an optimizer, repeats >= 1,
      every trainable parameter is optimized;
    * ``training_loss(x, phase)`` for every phase returns a dict with a finite scalar
      ``"loss"`` that back-propagates finite gradients into that phase's parameters;
      every other entry is a finite scalar;
    * ``sample(n, generator)``: shape ``(n, C, H, W)``, float32, within [0, 1], finite;
      the same seed gives the same images, another seed other images; torch's global
      RNG is left alone; unknown sampling options are rejected;
    * ``reconstruct`` (when implemented): same shape, within [0, 1];
    * ``steps`` optimizer steps on one fixed batch lower the loss (one-phase models;
      for several phases: all losses stay finite);
    * after ``after_training``, a fresh model loaded from a ``weights_only`` round trip of
      ``state_dict()`` -- and a deep copy, as the trainer's EMA makes -- draws the same
      samples: nothing sampling depends on lives outside the state dict.
    """
    from .data import load_images, to_model_input
    from .registry import complete_data_config, create_model, model_config, registry

    def fail(what: str) -> AssertionError:
        return AssertionError(f"model '{name}': {what}")

    entry = registry().model(name)
    if not entry.description:
        raise fail("has no description (set the class attribute `description`, shown by `zoo list`)")
    if preset is not None and preset not in entry.presets:
        raise fail(f"ships no '{preset}' preset (presets: {', '.join(entry.presets) or 'none'})")
    cfg = model_config(name, preset=preset, sets=list(sets))
    complete_data_config(cfg)

    # construction: on the meta device (cheap parameter counting), then for real
    with torch.device("meta"):
        meta_model = create_model(name, copy.deepcopy(cfg))
    if sum(p.numel() for p in meta_model.parameters()) == 0:
        raise fail("has no parameters")
    torch.manual_seed(0)
    model = create_model(name, copy.deepcopy(cfg))
    lo, hi = (float(v) for v in model.data_range)
    if not lo < hi:
        raise fail(f"data_range {model.data_range} is not (lo, hi) with lo < hi")
    shape = tuple(model.image_shape)

    # a real batch in the model's range
    if images is None:
        images = load_images(cfg.data, "train")[:batch_size]
    x = to_model_input(images[:batch_size], int(cfg.data.image_size), int(cfg.data.channels),
                       model.data_range, cfg.data.resize)
    if tuple(x.shape[1:]) != shape:
        raise fail(f"image_shape {shape} does not match the data's {tuple(x.shape[1:])}")

    # optimizers and phases
    optimizers = model.configure_optimizers()
    phases = [(str(p), int(r)) for p, r in model.phases()]
    if not phases:
        raise fail("phases() is empty")
    for phase, repeats in phases:
        if phase not in optimizers:
            raise fail(f"phase '{phase}' has no optimizer (configure_optimizers() gave {sorted(optimizers)})")
        if repeats < 1:
            raise fail(f"phase '{phase}' repeats {repeats} times (must be >= 1)")
    optimized = {id(p) for o in optimizers.values() for g in o.param_groups for p in g["params"]}
    idle = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in optimized]
    if idle:
        raise fail(f"trainable parameters in no optimizer: {', '.join(idle[:5])}")

    # training_loss for every phase
    model.train()
    for phase, _ in phases:
        opt = optimizers[phase]
        opt.zero_grad(set_to_none=True)
        out = model.training_loss(x, phase)
        if not isinstance(out, dict) or "loss" not in out:
            raise fail(f"training_loss(x, '{phase}') must return a dict with 'loss', got {type(out).__name__}")
        for key, value in out.items():
            if not (torch.is_tensor(value) and value.dim() == 0 and value.is_floating_point()):
                raise fail(f"training_loss(x, '{phase}')['{key}'] is not a float scalar tensor: {value!r}")
            if not torch.isfinite(value.detach()):
                raise fail(f"training_loss(x, '{phase}')['{key}'] is not finite: {float(value)}")
        if not out["loss"].requires_grad:
            raise fail(f"training_loss(x, '{phase}')['loss'] does not require grad (detached?)")
        out["loss"].backward()
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            raise fail(f"the loss of phase '{phase}' gives no gradient to that phase's parameters")
        if not all(bool(torch.isfinite(gr).all()) for gr in grads):
            raise fail(f"the loss of phase '{phase}' gives non-finite gradients")
        opt.zero_grad(set_to_none=True)

    # sampling
    def draw(m: ZooModel, seed: int) -> torch.Tensor:
        return m.sample(n_samples, torch.Generator().manual_seed(seed))

    model.eval()
    rng = torch.get_rng_state()
    first = draw(model, 0)
    if not torch.equal(torch.get_rng_state(), rng):
        raise fail("sample() used torch's global RNG: draw noise only with the `generator` it is given")
    if not torch.is_tensor(first) or tuple(first.shape) != (n_samples, *shape):
        raise fail(f"sample({n_samples}, g) has shape {tuple(getattr(first, 'shape', ()))}, "
                   f"expected {(n_samples, *shape)}")
    if first.dtype != torch.float32:
        raise fail(f"sample() returned {first.dtype}, expected torch.float32 (zoo.contract.to_unit does it)")
    if not bool(torch.isfinite(first).all()) or first.min() < 0 or first.max() > 1:
        raise fail(f"sample() values must be finite and within [0, 1], got [{float(first.min())}, "
                   f"{float(first.max())}]")
    if not torch.equal(first, draw(model, 0)):
        raise fail("sample() with the same seed gave different images")
    if torch.equal(first, draw(model, 1)):
        raise fail("sample() with another seed gave the same images")
    try:
        model.sample(1, torch.Generator().manual_seed(0), no_such_option=1)
    except (ZooError, TypeError, ValueError):
        pass
    else:
        raise fail("sample() accepted an unknown option; reject what you do not understand")

    try:
        rec = model.reconstruct(x)
    except NotImplementedError:
        rec = None
    if rec is not None and (tuple(rec.shape) != tuple(x.shape) or rec.min() < 0 or rec.max() > 1):
        raise fail(f"reconstruct(x) must give {tuple(x.shape)} images in [0, 1], got {tuple(rec.shape)} "
                   f"in [{float(rec.min())}, {float(rec.max())}]")

    # a few optimizer steps on one fixed batch
    model.train()

    def loss_at(phase: str, seed: int = 1234) -> torch.Tensor:
        torch.manual_seed(seed)  # the same noise/timesteps for the before/after comparison
        return model.training_loss(x, phase)["loss"].detach()  # (with grad: a loss may need autograd inside)

    before = {phase: loss_at(phase) for phase, _ in phases}
    torch.manual_seed(0)
    for _ in range(steps):
        for phase, repeats in phases:
            for _ in range(repeats):
                optimizers[phase].zero_grad(set_to_none=True)
                model.training_loss(x, phase)["loss"].backward()
                optimizers[phase].step()
    after = {phase: loss_at(phase) for phase, _ in phases}
    for phase, value in after.items():
        if not torch.isfinite(value):
            raise fail(f"the '{phase}' loss is not finite after {steps} steps on one batch: {float(value)}")
    if len(phases) == 1:
        (phase, _), = phases
        if not after[phase] < before[phase]:
            raise fail(f"{steps} optimizer steps on one fixed batch did not lower the loss "
                       f"({float(before[phase]):.5g} -> {float(after[phase]):.5g})")

    # after_training, then everything sampling needs must be in the state dict
    with torch.no_grad():
        model.after_training(iter([x[: len(x) // 2], x[len(x) // 2:]]))
    model.eval()
    reference = draw(model, 0)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    torch.manual_seed(1)  # a different initialisation: only the state dict may make them equal
    fresh = create_model(name, copy.deepcopy(cfg))
    fresh.load_state_dict(state)
    if not torch.equal(draw(fresh.eval(), 0), reference):
        raise fail("a fresh model loaded from state_dict() samples differently: sampling depends on "
                   "state outside the state dict (keep fitted values in buffers)")
    if not torch.equal(draw(copy.deepcopy(model), 0), reference):
        raise fail("a deep copy (as the trainer's EMA makes) samples differently")
    return model

"""Reusable checks for zoo plugins, and a registry of your own for a test.

Call them from your plugin's pytest suite::

    from zoo.testing import check_dataset, check_extractor, check_model_contract

    def test_my_model_keeps_the_contract():
        check_model_contract("my-vae")                       # builds the `tiny` preset
        check_model_contract("my-vae", sets=["data.name=fashion-mnist", "model.latent=8"])

    def test_my_dataset():
        check_dataset("my-digits", split="test")

    def test_my_extractor():
        check_extractor("my-features")

Each check fails with an ``AssertionError`` that names the plugin's model, dataset or extractor and
what is wrong. They run on the CPU in seconds. Nothing here knows any particular plugin.

:func:`registry_with` (and the pytest fixture ``zoo_registry``, which zoo installs as a pytest
plugin) gives a test a fresh registry holding only the plugins it names.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import torch

from .contract import ZooModel
from .errors import ZooError

if TYPE_CHECKING:  # pragma: no cover
    from torch_fidelity import FeatureExtractorBase

    from .registry import Registry

__all__ = ["check_model_contract", "check_dataset", "check_extractor", "registry_with"]


def check_model_contract(name: str, *, preset: str | None = "tiny", sets: Iterable[str] = (),
                         images: torch.Tensor | None = None, batch_size: int = 16, steps: int = 10,
                         n_samples: int = 4) -> ZooModel:
    """Check model ``name`` (a registered model) against the contract; returns the model built.

    Each clause is one function of :data:`MODEL_CLAUSES`, checked in this order; a failure names the model
    and the clause (``model 'my-vae' (sample): ...``):

    * ``registration``: it is registered with a description and ships ``preset``; the config resolves;
    * ``construction``: it can be built on the ``meta`` device (``zoo list`` counts parameters that way)
      and for real; ``data_range`` is ``(lo, hi)`` with ``lo < hi``;
    * ``input``: a real batch of the configured data, in the model's range, has ``image_shape``;
    * ``optimizers``: ``configure_optimizers`` / ``phases``: every phase names an optimizer, repeats >= 1,
      every trainable parameter is optimized;
    * ``training_loss``: ``training_loss(x, phase)`` for every phase returns a dict with a finite scalar
      ``"loss"`` that back-propagates finite gradients into that phase's parameters; every other entry
      is a finite scalar;
    * ``sample``: ``sample(n, generator)`` has shape ``(n, C, H, W)``, float32, within [0, 1], finite;
      the same seed gives the same images, another seed other images; torch's global RNG is left alone;
      unknown sampling options are rejected;
    * ``reconstruct`` (when implemented): same shape, within [0, 1];
    * ``learning``: ``steps`` optimizer steps on one fixed batch lower the loss (one-phase models; for
      several phases: all losses stay finite);
    * ``state_dict``: after ``after_training``, a fresh model loaded from a ``weights_only`` round trip of
      ``state_dict()`` -- and a deep copy, as the trainer's EMA makes -- draws the same samples: nothing
      sampling depends on lives outside the state dict;
    * ``conditional`` (models with ``can_condition``): built again with ``model.conditional=true`` and
      ``data.num_classes=10``, ``num_classes`` is 10; ``training_loss(x, phase, labels=y)`` gives a finite
      loss for ``steps`` optimizer steps (an untrained network may ignore its labels); ``after_training``
      takes ``(x, labels)`` pairs; then ``sample(n, g, labels=...)`` has the shape and device of the model;
      the same seed and labels give the same images, other labels other images; label 10, or a label count
      that is not ``n``, is a one-line ZooError.
    """
    subject = _Subject(name, preset, list(sets), images, batch_size, steps, n_samples)
    for clause in MODEL_CLAUSES:
        subject.clause = clause.__name__.removeprefix("_check_")
        clause(subject)
    return subject.model


@dataclass
class _Subject:
    """The model under :func:`check_model_contract`, with what its clauses share (filled in as they pass)."""
    name: str
    preset: str | None
    sets: list
    images: torch.Tensor | None
    batch_size: int
    steps: int
    n_samples: int
    # filled in by the clauses, in order
    clause: str = field(default="", init=False)
    cfg: Any = field(default=None, init=False)
    model: ZooModel | None = field(default=None, init=False)
    x: torch.Tensor | None = field(default=None, init=False)
    optimizers: dict = field(default_factory=dict, init=False)
    phases: list = field(default_factory=list, init=False)

    def fail(self, what: str) -> AssertionError:
        return AssertionError(f"model '{self.name}' ({self.clause}): {what}")

    def draw(self, model: ZooModel, seed: int) -> torch.Tensor:
        return model.sample(self.n_samples, torch.Generator().manual_seed(seed))

    def loss_at(self, phase: str, seed: int = 1234) -> torch.Tensor:
        torch.manual_seed(seed)  # the same noise/timesteps for the before/after comparison
        return self.model.training_loss(self.x, phase)["loss"].detach()  # (with grad: a loss may need autograd)


def _check_registration(s: _Subject) -> None:
    from .registry import complete_data_config, model_config, registry
    entry = registry().model(s.name)
    if not entry.description:
        raise s.fail("has no description (set the class attribute `description`, shown by `zoo list`)")
    if s.preset is not None and s.preset not in entry.presets:
        raise s.fail(f"ships no '{s.preset}' preset (presets: {', '.join(entry.presets) or 'none'})")
    s.cfg = model_config(s.name, preset=s.preset, sets=s.sets)
    complete_data_config(s.cfg)


def _check_construction(s: _Subject) -> None:
    """On the meta device (cheap parameter counting), then for real."""
    from .registry import create_model
    with torch.device("meta"):
        meta_model = create_model(s.name, copy.deepcopy(s.cfg))
    if sum(p.numel() for p in meta_model.parameters()) == 0:
        raise s.fail("has no parameters")
    torch.manual_seed(0)
    s.model = create_model(s.name, copy.deepcopy(s.cfg))
    lo, hi = (float(v) for v in s.model.data_range)
    if not lo < hi:
        raise s.fail(f"data_range {s.model.data_range} is not (lo, hi) with lo < hi")


def _check_input(s: _Subject) -> None:
    """A real batch in the model's range has the model's ``image_shape``."""
    from .data import load_images, to_model_input
    data = s.cfg.data
    images = s.images if s.images is not None else load_images(data, "train")[:s.batch_size]
    s.x = to_model_input(images[:s.batch_size], int(data.image_size), int(data.channels), s.model.data_range,
                         data.resize)
    shape = tuple(s.model.image_shape)
    if tuple(s.x.shape[1:]) != shape:
        raise s.fail(f"image_shape {shape} does not match the data's {tuple(s.x.shape[1:])}")


def _check_optimizers(s: _Subject) -> None:
    s.optimizers = s.model.configure_optimizers()
    s.phases = [(str(p), int(r)) for p, r in s.model.phases()]
    if not s.phases:
        raise s.fail("phases() is empty")
    for phase, repeats in s.phases:
        if phase not in s.optimizers:
            raise s.fail(f"phase '{phase}' has no optimizer (configure_optimizers() gave {sorted(s.optimizers)})")
        if repeats < 1:
            raise s.fail(f"phase '{phase}' repeats {repeats} times (must be >= 1)")
    optimized = {id(p) for o in s.optimizers.values() for g in o.param_groups for p in g["params"]}
    idle = [n for n, p in s.model.named_parameters() if p.requires_grad and id(p) not in optimized]
    if idle:
        raise s.fail(f"trainable parameters in no optimizer: {', '.join(idle[:5])}")


def _check_training_loss(s: _Subject) -> None:
    s.model.train()
    for phase, _ in s.phases:
        opt = s.optimizers[phase]
        opt.zero_grad(set_to_none=True)
        out = s.model.training_loss(s.x, phase)
        if not isinstance(out, dict) or "loss" not in out:
            raise s.fail(f"training_loss(x, '{phase}') must return a dict with 'loss', got {type(out).__name__}")
        for key, value in out.items():
            if not (torch.is_tensor(value) and value.dim() == 0 and value.is_floating_point()):
                raise s.fail(f"training_loss(x, '{phase}')['{key}'] is not a float scalar tensor: {value!r}")
            if not torch.isfinite(value.detach()):
                raise s.fail(f"training_loss(x, '{phase}')['{key}'] is not finite: {float(value)}")
        if not out["loss"].requires_grad:
            raise s.fail(f"training_loss(x, '{phase}')['loss'] does not require grad (detached?)")
        out["loss"].backward()
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            raise s.fail(f"the loss of phase '{phase}' gives no gradient to that phase's parameters")
        if not all(bool(torch.isfinite(gr).all()) for gr in grads):
            raise s.fail(f"the loss of phase '{phase}' gives non-finite gradients")
        opt.zero_grad(set_to_none=True)


def _check_sample(s: _Subject) -> None:
    model, n, shape = s.model.eval(), s.n_samples, tuple(s.model.image_shape)
    rng = torch.get_rng_state()
    first = s.draw(model, 0)
    if not torch.equal(torch.get_rng_state(), rng):
        raise s.fail("sample() used torch's global RNG: draw noise only with the `generator` it is given")
    if not torch.is_tensor(first) or tuple(first.shape) != (n, *shape):
        raise s.fail(f"sample({n}, g) has shape {tuple(getattr(first, 'shape', ()))}, expected {(n, *shape)}")
    if first.dtype != torch.float32:
        raise s.fail(f"sample() returned {first.dtype}, expected torch.float32 (zoo.contract.to_unit does it)")
    if not bool(torch.isfinite(first).all()) or first.min() < 0 or first.max() > 1:
        raise s.fail(f"sample() values must be finite and within [0, 1], got [{float(first.min())}, "
                     f"{float(first.max())}]")
    if not torch.equal(first, s.draw(model, 0)):
        raise s.fail("sample() with the same seed gave different images")
    if torch.equal(first, s.draw(model, 1)):
        raise s.fail("sample() with another seed gave the same images")
    try:
        model.sample(1, torch.Generator().manual_seed(0), no_such_option=1)
    except (ZooError, TypeError, ValueError):
        pass
    else:
        raise s.fail("sample() accepted an unknown option; reject what you do not understand")


def _check_reconstruct(s: _Subject) -> None:
    try:
        rec = s.model.reconstruct(s.x)
    except NotImplementedError:
        return
    if rec is not None and (tuple(rec.shape) != tuple(s.x.shape) or rec.min() < 0 or rec.max() > 1):
        raise s.fail(f"reconstruct(x) must give {tuple(s.x.shape)} images in [0, 1], got {tuple(rec.shape)} "
                     f"in [{float(rec.min())}, {float(rec.max())}]")


def _check_learning(s: _Subject) -> None:
    """A few optimizer steps on one fixed batch."""
    s.model.train()
    before = {phase: s.loss_at(phase) for phase, _ in s.phases}
    torch.manual_seed(0)
    for _ in range(s.steps):
        for phase, repeats in s.phases:
            for _ in range(repeats):
                s.optimizers[phase].zero_grad(set_to_none=True)
                s.model.training_loss(s.x, phase)["loss"].backward()
                s.optimizers[phase].step()
    after = {phase: s.loss_at(phase) for phase, _ in s.phases}
    for phase, value in after.items():
        if not torch.isfinite(value):
            raise s.fail(f"the '{phase}' loss is not finite after {s.steps} steps on one batch: {float(value)}")
    if len(s.phases) == 1:
        (phase, _), = s.phases
        if not after[phase] < before[phase]:
            raise s.fail(f"{s.steps} optimizer steps on one fixed batch did not lower the loss "
                         f"({float(before[phase]):.5g} -> {float(after[phase]):.5g})")


def _check_state_dict(s: _Subject) -> None:
    """After ``after_training``, everything sampling needs must be in the state dict."""
    from .registry import create_model
    model, x = s.model, s.x
    with torch.no_grad():
        model.after_training(iter([x[: len(x) // 2], x[len(x) // 2:]]))
    model.eval()
    reference = s.draw(model, 0)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    torch.manual_seed(1)  # a different initialisation: only the state dict may make them equal
    fresh = create_model(s.name, copy.deepcopy(s.cfg))
    fresh.load_state_dict(state)
    if not torch.equal(s.draw(fresh.eval(), 0), reference):
        raise s.fail("a fresh model loaded from state_dict() samples differently: sampling depends on "
                     "state outside the state dict (keep fitted values in buffers)")
    if not torch.equal(s.draw(copy.deepcopy(model), 0), reference):
        raise s.fail("a deep copy (as the trainer's EMA makes) samples differently")


def _check_conditional(s: _Subject) -> None:
    """A model with ``can_condition``, built with ``model.conditional=true`` and 10 classes: labels reach
    ``training_loss`` and ``sample``; same seed and labels, same images; other labels, other images; a label
    out of range is a one-line ZooError."""
    from .registry import create_model, model_config, registry
    if not getattr(registry().model(s.name).cls, "can_condition", False):
        return
    cfg = model_config(s.name, preset=s.preset, sets=[*s.sets, "model.conditional=true", "data.num_classes=10"])
    torch.manual_seed(0)
    model = create_model(s.name, cfg)
    if model.num_classes != 10:
        raise s.fail(f"built with model.conditional=true and 10 classes, num_classes is {model.num_classes!r} "
                     f"(ZooModel.__init__ sets it: call super().__init__(cfg))")
    y = torch.arange(len(s.x), device=model.device) % 10
    optimizers = model.configure_optimizers()
    model.train()
    for _ in range(s.steps):  # trained first: a network whose output layer starts at zero ignores its labels
        for phase, repeats in model.phases():
            for _ in range(repeats):
                loss = model.training_loss(s.x, phase, labels=y)["loss"]
                if not (torch.is_tensor(loss) and loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad):
                    raise s.fail(f"training_loss(x, '{phase}', labels=y) must give a finite scalar loss with grad")
                optimizers[phase].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[phase].step()
    with torch.no_grad():  # a conditional run's after_training gets (x, labels) pairs (e.g. per-class fits)
        model.after_training(iter([(s.x, y)]))
    model.eval()
    n, shape = s.n_samples, tuple(model.image_shape)

    def draw(labels, seed=0):
        return model.sample(n, torch.Generator().manual_seed(seed), labels=labels)
    first = draw(torch.full((n,), 3, device=model.device))
    if tuple(first.shape) != (n, *shape) or first.device != model.device:
        raise s.fail(f"sample({n}, g, labels=...) gave {tuple(first.shape)} on {first.device}, expected "
                     f"{(n, *shape)} on {model.device}")
    if not torch.equal(first, draw(3)) or not torch.equal(first, draw([3] * n)):
        raise s.fail("sample() with the same seed and labels (a tensor, an int, a list) gave different images")
    if torch.equal(first, draw(4)):
        raise s.fail("sample() with labels 3 and 4 gave the same images: the labels are ignored")
    for bad, what in ((10, "label 10 with 10 classes"), ([3] * (n + 1), f"{n + 1} labels for {n} images")):
        try:
            draw(bad)
        except ZooError as e:
            if "\n" in str(e):
                raise s.fail(f"{what} must be a one-line ZooError, got: {e}") from None
        else:
            raise s.fail(f"sample() accepted {what}: check labels with self.sample_labels(n, labels)")


MODEL_CLAUSES = (_check_registration, _check_construction, _check_input, _check_optimizers, _check_training_loss,
                 _check_sample, _check_reconstruct, _check_learning, _check_state_dict, _check_conditional)
"""The clauses of the model contract, in the order :func:`check_model_contract` checks them."""


def check_dataset(name: str, *, split: str | None = None, root: str | os.PathLike | None = None,
                  sets: Iterable[str] = (), n: int = 16) -> torch.Tensor:
    """Check dataset ``name`` (a registered dataset) against zoo's loader contract; returns the split's
    images. ``split``/``root`` default to ``data.split``/``data.root`` in ``sets`` (``--set`` style, e.g.
    ``ZOO_TEST_SETS``), else ``train`` and ``$ZOO_DATA``.

    What is checked:

    * it is registered with a description, ``channels`` and ``image_size`` >= 1, and ``split`` among
      its ``splits``; the extractor it declares (if any) is registered;
    * ``zoo.load_dataset(name, split, root)`` gives uint8 ``(N, C, H, W)`` with ``N >= 1`` and
      ``C == channels``; labels, when the loader returns them, are ``N`` integers (below the registered
      ``num_classes``, when it is given);
    * loading twice gives the same images in the same order (holdouts depend on it);
    * zoo's pipeline maps a batch to the registered ``image_size`` in the model range;
    * with no files (an empty folder, downloads off) the loader raises :class:`zoo.ZooError` -- a
      one-line message naming the missing files -- or finds the data elsewhere; any other exception
      fails the check.
    """
    from .config import parse_set
    from .data import class_labels, load_dataset, to_model_input
    from .registry import registry

    def fail(what: str) -> AssertionError:
        return AssertionError(f"dataset '{name}': {what}")

    data = parse_set(list(sets)).get("data", {})
    split = split or data.get("split") or "train"
    root = root if root is not None else data.get("root")
    reg = registry()
    entry = reg.dataset(name)
    if not entry.description:
        raise fail("has no description (pass description=... to register; `zoo list` shows it)")
    if entry.channels < 1 or entry.image_size < 1:
        raise fail(f"channels={entry.channels} and image_size={entry.image_size} must be >= 1")
    if not entry.splits or not all(isinstance(s, str) for s in entry.splits):
        raise fail(f"splits must be a non-empty tuple of names, got {entry.splits!r}")
    if split not in entry.splits:
        raise fail(f"has no split '{split}' (splits: {', '.join(entry.splits)})")
    if entry.extractor is not None and reg.extractors and entry.extractor not in reg.extractors:
        raise fail(f"declares extractor '{entry.extractor}', which is not registered "
                   f"(known: {', '.join(sorted(reg.extractors))})")

    try:
        images, labels = load_dataset(name, split, root, with_labels=True)
        labels = class_labels(name, labels, len(images))
    except ZooError as e:  # zoo's own checks of what the loader returns (uint8 images, integer labels)
        if str(e).startswith(f"dataset '{name}' loader returned"):
            raise fail(str(e).removeprefix(f"dataset '{name}' ")) from None
        raise
    if len(images) == 0:
        raise fail(f"split '{split}' holds no images")
    if images.shape[1] != entry.channels:
        raise fail(f"the loader returns {tuple(images.shape)}: {images.shape[1]} channels, registered "
                   f"channels={entry.channels} (images are (N, C, H, W), not (N, H, W, C))")
    if labels is not None and entry.num_classes:
        if not int(labels.max()) < entry.num_classes:
            raise fail(f"labels {int(labels.min())}..{int(labels.max())} are not class indices "
                       f"0..{entry.num_classes - 1} (registered num_classes={entry.num_classes})")
    again = load_dataset(name, split, root)
    if not torch.equal(images, again):
        raise fail("loading the split twice gave other images (or another order): make the loader deterministic")
    x = to_model_input(images[:n], entry.image_size, entry.channels, (-1.0, 1.0), "pad")
    if tuple(x.shape[1:]) != (entry.channels, entry.image_size, entry.image_size) or not torch.isfinite(x).all():
        raise fail(f"zoo's pipeline gave {tuple(x.shape)} from a batch of {tuple(images[:n].shape)}")

    with tempfile.TemporaryDirectory() as empty, _environ(ZOO_OFFLINE="1"):
        try:
            out = entry.loader(Path(empty), split, False)
        except ZooError:
            pass
        except Exception as e:  # noqa: BLE001 - the point of the check
            raise fail(f"with no files the loader raised {type(e).__name__}: {e} -- raise zoo.ZooError naming "
                       f"the missing files and how to point zoo at them (data.root / ZOO_DATA)") from None
        else:
            found = out[0] if isinstance(out, tuple) else out
            if not (torch.is_tensor(found) and found.dtype == torch.uint8 and found.dim() == 4 and len(found)):
                raise fail(f"with no files the loader returned {type(found).__name__} instead of raising "
                           f"zoo.ZooError")
    return images


def check_extractor(name: str, *, options: dict | None = None, images: torch.Tensor | None = None,
                    n: int = 16) -> FeatureExtractorBase:
    """Check feature extractor ``name`` (a registered extractor) as zoo's evaluation harness uses it;
    returns the extractor. ``options`` are passed to its factory; ``images`` (uint8 ``(N, C, H, W)``)
    default to seeded noise of the extractor's input size.

    What is checked:

    * it is registered with a description; ``factory(**options)`` returns a
      ``torch_fidelity.FeatureExtractorBase``; ``input_channels`` (if set) is 1 or 3 and ``input_size``
      (if set) an int >= 1;
    * it names a feature layer for every metric zoo computes (``fid``, ``kid``, ``prc``, ``isc``) and
      computes it;
    * every layer gives finite ``(N, D)`` features; the same images give the same features; an image's
      features do not depend on the rest of its batch (no batch statistics: eval mode); different
      images give different ``fid`` features.
    """
    from torch_fidelity import FeatureExtractorBase

    from .extractors import extract_features, layer
    from .registry import registry

    def fail(what: str) -> AssertionError:
        return AssertionError(f"extractor '{name}': {what}")

    entry = registry().extractor(name)
    if not entry.description:
        raise fail("has no description (pass description=... to register; `zoo list` shows it)")
    try:
        ext = entry.factory(**(options or {}))
    except ZooError:
        raise
    except Exception as e:  # noqa: BLE001
        raise fail(f"factory(**{options or {}}) raised {type(e).__name__}: {e}") from None
    if not isinstance(ext, FeatureExtractorBase):
        raise fail(f"factory returned {type(ext).__name__}, not a torch_fidelity.FeatureExtractorBase")
    ext = ext.eval().requires_grad_(False)
    channels, size = getattr(ext, "input_channels", 3), getattr(ext, "input_size", None)
    if channels not in (1, 3):
        raise fail(f"input_channels={channels!r} must be 1 or 3")
    if size is not None and not (isinstance(size, int) and size >= 1):
        raise fail(f"input_size={size!r} must be an int >= 1 (or unset: the data's size)")
    layers = {}
    for metric in ("fid", "kid", "prc", "isc"):
        try:
            layers[metric] = layer(ext, metric)
        except Exception as e:  # noqa: BLE001
            raise fail(f"no feature layer for '{metric}' (zoo eval computes it): {type(e).__name__}: {e}") from None
    if images is None:
        side = size or 32
        images = torch.randint(0, 256, (n, channels, side, side), generator=torch.Generator().manual_seed(0),
                               dtype=torch.uint8)
    feats = extract_features(ext, images, size)
    for key, value in feats.items():
        if value.dim() != 2 or len(value) != len(images):
            raise fail(f"layer '{key}' gave {tuple(value.shape)} for {len(images)} images, expected (N, D)")
        if not torch.isfinite(value).all():
            raise fail(f"layer '{key}' gave non-finite features")
    again = extract_features(ext, images, size)
    alone = extract_features(ext, images[:2], size)
    for key, value in feats.items():
        if not torch.allclose(again[key], value, rtol=1e-4, atol=1e-5):
            raise fail(f"the same images gave other '{key}' features")
        if not torch.allclose(alone[key], value[:2], rtol=1e-3, atol=1e-4):
            raise fail(f"an image's '{key}' features depend on the rest of its batch (batch statistics? "
                       f"return the extractor in eval mode)")
    fid = feats[layers["fid"]]
    if len(images) > 1 and torch.allclose(fid, fid[:1].expand_as(fid)):
        raise fail("different images gave the same 'fid' features")
    return ext


@contextlib.contextmanager
def registry_with(*plugins: Any, **named: Any) -> Iterator[Registry]:
    """A fresh :class:`zoo.registry.Registry` holding only the given plugins, used as zoo's registry
    (``zoo.create_model``, ``zoo.load_dataset``, the checks above, in-process CLI calls) inside the
    block; the previous registry comes back afterwards.

    ``plugins``: entry-point names of installed plugins (``"datasets"``, ``"extractors"`` and ``"metrics"`` are
    zoo's built-in datasets, extractors and metrics, ``"vae"`` its VAE, ...) or plugin objects (a module or an object
    with ``@hookimpl`` methods, named by its ``__name__`` or class); ``named``: ``name=plugin_object``.
    Failures are recorded in ``reg.failures`` as usual (``ZOO_PLUGINS`` / ``ZOO_DISABLE_PLUGINS`` do not
    apply)::

        with registry_with("datasets", my_plugin_module) as reg:
            assert not reg.failures
            check_dataset("my-digits")
    """
    from .registry import Registry, use_registry
    reg = Registry()
    names = [p for p in plugins if isinstance(p, str)]
    reg.load_entry_points(only=names, skip=())
    unknown = sorted(set(names) - {p.name for p in reg.attempted})
    if unknown:
        raise ZooError(f"no installed zoo plugin (entry point in group zoo.plugins) is named "
                       f"{', '.join(repr(u) for u in unknown)}")
    objects = [(p, getattr(p, "__name__", None) or type(p).__name__.lower()) for p in plugins if not isinstance(p, str)]
    reg.add_plugins(objects + [(p, name) for name, p in named.items()])
    before = use_registry(reg)
    try:
        yield reg
    finally:
        use_registry(before)


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

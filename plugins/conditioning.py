"""Class conditioning shared by the families: the VAE, AE and GAN label networks, and the null class and
classifier-free guidance of the U-Net families, DDPM and flow matching (their class embedding is in
``zoo_plugins.unet``).

* :class:`LabelBias` and :func:`run_with_label` -- a label given to a network as a learned per-class
  bias on the output of its first weighted layer. For a linear first layer that is exactly
  concatenating a one-hot label to the input (``[x, onehot(y)] @ W = x @ W_x + W_y[y]``); for a
  convolution it is the same away from the borders (one-hot planes concatenated as channels). The
  network itself is untouched, so an unconditional model keeps its parameters and state_dict keys.
* :func:`projection_score` -- the projection discriminator of Miyato & Koyama ("cGANs with Projection
  Discriminator", ICLR 2018): ``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>``.
* :func:`one_hot` and :func:`labels_or_error` -- small checks used by every family.
* Null class and classifier-free guidance (Ho & Salimans 2022), for models whose network takes labels
  ``0..K`` with ``K`` the null class ("no label"): :func:`drop_labels` (label dropout in training),
  :func:`requested_labels` (``sample``'s labels, -1 mapped to the null class), :func:`guidance_weight`
  (the ``guidance`` option checked) and :func:`guided` (``out_c + w (out_c - out_u)`` in one batched pass).

Every network here is an ``nn.Sequential`` (possibly nested) so that its layers can be run one by one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo import ZooError

WEIGHTED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
GUIDANCE = 1.0  # default classifier-free guidance w (scale s = 1 + w) of conditional runs
LABEL_DROPOUT = 0.1  # default probability that a training label becomes the null class


def layers(net: nn.Module) -> list[nn.Module]:
    """The leaf layers of a (nested) ``nn.Sequential``, in the order they run."""
    out = []
    for module in net.children() if isinstance(net, nn.Sequential) else [net]:
        out.extend(layers(module) if isinstance(module, nn.Sequential) else [module])
    return out


def first_weighted(net: nn.Module) -> nn.Module:
    """The first linear or convolutional layer of ``net``."""
    for layer in layers(net):
        if isinstance(layer, WEIGHTED):
            return layer
    raise ZooError(f"{type(net).__name__} has no linear or conv layer to condition on a label")


class LabelBias(nn.Embedding):
    """``num_classes`` learned biases for the output of ``net``'s first weighted layer, initialised
    uniformly at that layer's weight scale (the scale a one-hot column of its weight would have)."""

    def __init__(self, num_classes: int, net: nn.Module):
        layer = first_weighted(net)
        width = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
        super().__init__(int(num_classes), width)
        bound = float(layer.weight.detach().float().std()) * 3 ** 0.5
        nn.init.uniform_(self.weight, -bound, bound)


def run_with_label(net: nn.Module, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``net(x)`` with ``bias`` ``(B, width)`` added to the output of its first weighted layer."""
    added = False
    for layer in layers(net):
        x = layer(x)
        if not added and isinstance(layer, WEIGHTED):
            x = x + bias.to(x.dtype).view(*bias.shape, *[1] * (x.dim() - 2))
            added = True
    return x


def projection_embedding(discriminator: nn.Module, num_classes: int) -> nn.Embedding:
    """The class embedding of a projection discriminator, as wide as phi(x) (Xavier-uniform, as Miyato &
    Koyama's code). The discriminator must be an ``nn.Sequential`` ending in ``Linear(width, 1), Flatten(0)``."""
    ok = isinstance(discriminator, nn.Sequential) and len(discriminator) > 2 \
        and isinstance(discriminator[-2], nn.Linear) and discriminator[-2].out_features == 1
    if not ok:
        raise ZooError(f"a conditional GAN needs a discriminator nn.Sequential ending in Linear(width, 1), "
                       f"Flatten(0) for its projection, got {type(discriminator).__name__}")
    embed = nn.Embedding(int(num_classes), discriminator[-2].in_features)
    nn.init.xavier_uniform_(embed.weight)
    return embed


def projection_score(discriminator: nn.Sequential, embed: nn.Embedding, x: torch.Tensor,
                     labels: torch.Tensor) -> torch.Tensor:
    """``psi(phi(x)) + <embed(y), phi(x)>`` for a discriminator whose last two layers are
    ``Linear(width, 1)`` (psi) and ``Flatten(0)``: phi is everything before them."""
    features = discriminator[:-2](x)
    return discriminator[-2:](features) + (embed(labels).to(features.dtype) * features.flatten(1)).sum(1)


def one_hot(labels: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    return F.one_hot(labels.long(), num_classes).to(dtype)


def labels_or_error(model, labels) -> torch.Tensor | None:
    """The training labels a model uses: ``None`` for an unconditional run, else ``labels`` checked
    (given, integer, shape ``(B,)``). One-line :class:`zoo.ZooError` otherwise."""
    name = getattr(model.cfg, "model_name", None) or type(model).__name__.lower()
    k = model.num_classes
    if k is None:
        if labels is not None:
            raise ZooError(f"model '{name}' is not conditional in this run, so training_loss takes no labels "
                           f"(train with --set model.conditional=true on a dataset with labels)")
        return None
    if labels is None:
        raise ZooError(f"model '{name}' is conditional ({k} classes): training_loss needs labels=, "
                       f"one int64 label per image")
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32):
        raise ZooError(f"labels must be int64 shaped (B,), got {labels.dtype} {tuple(labels.shape)}")
    return labels.long()


# --- null class and classifier-free guidance ------------------------------------------------------
def label_dropout(model) -> float:
    """``model.label_dropout`` of a run (the default for configs written before it existed)."""
    return float(model.cfg.model.get("label_dropout", LABEL_DROPOUT))


def drop_labels(model, y: torch.Tensor) -> torch.Tensor:
    """Training labels ``y`` with each replaced by the null class (``model.num_classes``) with probability
    ``model.label_dropout`` (torch's global RNG; nothing drawn when it is 0)."""
    p = label_dropout(model)
    if p > 0:
        y = torch.where(torch.rand(y.shape, device=y.device) < p, model.num_classes, y)
    return y


def requested_labels(model, n: int, labels) -> torch.Tensor | None:
    """The ``(n,)`` labels ``sample`` draws (:meth:`zoo.ZooModel.sample_labels`, -1 as the null class), or
    None for an unconditional run asked for no labels."""
    if model.num_classes is None and labels is None:
        return None
    y = model.sample_labels(n, labels, model.device)
    return torch.where(y < 0, model.num_classes, y)


def guidance_weight(model, given: float | None) -> float:
    """The guidance w to sample with: ``given``, else ``model.guidance``; 0 for an unconditional run."""
    w = float(model.cfg.model.get("guidance", GUIDANCE) if given is None else given)
    if w < 0:
        raise ZooError(f"guidance={w} must be >= 0 (0: plain conditional sampling; scale s = 1 + w)")
    if model.num_classes is None:
        if given:
            raise ZooError(f"guidance={given}: this run is unconditional, so there is nothing to guide "
                           f"(train with --set model.conditional=true, or drop --guidance)")
        return 0.0
    if w > 0 and not label_dropout(model) > 0:
        raise ZooError(f"guidance={w} needs a null class, but this run trained with model.label_dropout=0: "
                       f"sample with --guidance 0 (or set model.guidance=0)")
    return w


def with_labels(net, y: torch.Tensor):
    """``(x, t) -> net(x, t, y)``, ``y`` repeated to the batch (the likelihood stacks timesteps of the
    same images)."""
    return lambda x, t: net(x, t, y.repeat(x.shape[0] // y.shape[0]))


def guided(net, y: torch.Tensor | None, w: float, null: int):
    """``(x, t) -> out`` for ``net(x, t, labels)`` (``t`` a ``(B,)`` tensor), labels ``y`` (None: an
    unconditional run, ``net`` itself) and guidance ``w``; ``null`` is the null class.

    w = 0, or only null labels: one conditional pass, nothing else. Otherwise one batched forward of
    ``[x, x]`` with ``[y, null]`` and ``out_c + w (out_c - out_u)``; a null label keeps ``out_c``."""
    if y is None:
        return net
    is_null = y == null
    if w == 0 or bool(is_null.all()):
        return with_labels(net, y)
    both = torch.cat([y, torch.full_like(y, null)])
    keep = is_null.view(-1, 1, 1, 1)

    def call(x, t):
        out_c, out_u = net(torch.cat([x, x]), torch.cat([t, t]), both).float().chunk(2)
        return torch.where(keep, out_c, out_c + w * (out_c - out_u))
    return call

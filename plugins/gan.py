"""GANs: the shared adversarial machinery, the MLP GAN and LSGAN.

A generative adversarial network (Goodfellow et al., "Generative Adversarial
Nets", NeurIPS 2014) trains a generator G, mapping noise z to images, against a
discriminator D that scores images as real or generated. zoo's trainer runs
``phases() = [("d", model.d_steps), ("g", 1)]`` on every batch: ``d_steps``
discriminator updates, then one generator update, each with its own Adam.

Losses (``model.loss``), on D's raw scores ("logits"):

* ``bce`` -- the standard GAN with the non-saturating generator loss:
  D minimises ``BCE(D(x), 1) + BCE(D(G(z)), 0)``, G minimises ``BCE(D(G(z)), 1)``.
* ``ls`` -- least squares (Mao et al., "Least Squares Generative Adversarial
  Networks", ICCV 2017): D minimises ``1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2``,
  G minimises ``1/2 (D(G(z)) - 1)^2`` (batch means).

Knobs: ``model.z_dim`` (noise size), ``model.noise`` (``uniform`` on [-1, 1] as
in the classic recipe, or ``normal``), ``model.d_steps`` (discriminator steps per
generator step) and ``model.label_smoothing`` (one-sided: real targets become
``1 - s``, Salimans et al. 2016). Logged besides the losses: ``d_real`` and
``d_fake``, D's mean output on real and generated images (probabilities for
``bce``, raw scores for ``ls``; the targets are 1 and 0).

Class-conditional (``model.conditional: true``, every GAN here, DCGAN included): the generator
gets the label as a one-hot vector concatenated to z -- implemented as the equivalent learned
per-class bias on its first layer's output (``zoo_plugins.conditioning``) -- and the discriminator is
a projection discriminator (Miyato & Koyama, ICLR 2018): ``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>``,
phi the layers before the last linear one, psi that layer. In training, the generated images of a
batch take the real batch's labels (the data's class balance). The unconditional networks, their
parameters and state_dict keys are unchanged; the new ones are ``generator_label`` and ``projection``.

:class:`GANBase` holds all of that; a family only builds its two networks
(``build``). This module registers the MLP GAN of the classic MNIST recipe --
G: noise 96 -> 1024 -> 1024 -> 784 (ReLU, Tanh out), D: 784 -> 256 -> 256 -> 1
(LeakyReLU 0.2), Adam lr 3e-4, betas (0.5, 0.999) -- as ``gan`` (BCE) and, as a
named variant with ``model.loss: ls``, as ``lsgan``. ``zoo_plugins.dcgan`` reuses
the base with convolutional networks. ``lsgan`` trains at lr 1e-3 (measured: at 3e-4 it
collapses).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo import Key, ZooError, ZooModel, hookimpl
from zoo.config import merge
from zoo.contract import rand, randn, to_unit
from zoo_plugins.conditioning import (LabelBias, labels_or_error, projection_embedding, projection_score,
                                      run_with_label)

LOSSES = ("bce", "ls")
NOISES = ("uniform", "normal")


# --- losses ---------------------------------------------------------------------------------
def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """D's loss from its scores on real and generated images; real targets are ``1 - smoothing``."""
    real, fake = real.float(), fake.float()
    target = 1.0 - smoothing
    if kind == "bce":
        return (F.binary_cross_entropy_with_logits(real, torch.full_like(real, target))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    return 0.5 * (real - target).pow(2).mean() + 0.5 * fake.pow(2).mean()


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """G's loss from D's scores on generated images (non-saturating for ``bce``)."""
    fake = fake.float()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    return 0.5 * (fake - 1.0).pow(2).mean()


# --- the shared base ------------------------------------------------------------------------
class GANBase(ZooModel):
    """Alternating GAN training; subclasses implement ``build() -> (generator, discriminator)``.

    The generator maps ``(B, z_dim)`` noise to ``(B, C, H, W)`` images in [-1, 1];
    the discriminator maps images to ``(B,)`` or ``(B, 1)`` scores.
    """

    family = "gan"
    data_range = (-1.0, 1.0)
    can_condition = True
    config = {
        "model": {
            "loss": Key("bce", "bce: the non-saturating GAN loss; ls: least squares (LSGAN)", choices=LOSSES),
            "z_dim": Key(96, "noise size", ge=1),
            "noise": Key("uniform", "noise distribution: uniform on [-1, 1] or normal", choices=NOISES),
            "d_steps": Key(1, "discriminator steps per generator step", ge=1),
            "label_smoothing": Key(0.0, "one-sided: real targets are 1 - label_smoothing (0.1 is usual)",
                                   ge=0, lt=1),
            "conditional": Key(False, "condition on the dataset's class labels: the label goes to the generator "
                                      "(one-hot with z) and a projection discriminator (Miyato & Koyama 2018)"),
        },
        "trainer": {"batch_size": 128, "lr": 3e-4, "betas": [0.5, 0.999], "max_steps": 20000,
                    "log_every": 100, "sample_every": 1000, "checkpoint_every": 2000},
        "data": {"image_size": 28},
    }

    def __init__(self, cfg):
        super().__init__(cfg)
        m = cfg.model
        self.z_dim = int(m.z_dim)
        self.generator, self.discriminator = self.build()
        if self.num_classes is not None:  # after build: the networks start as the unconditional ones do
            self.generator_label = LabelBias(self.num_classes, self.generator)
            self.projection = projection_embedding(self.discriminator, self.num_classes)

    def build(self) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    # training
    def configure_optimizers(self):
        # AdamW with the default weight_decay 0 is Adam; lr and betas come from cfg.trainer
        d, g = list(self.discriminator.parameters()), list(self.generator.parameters())
        if self.num_classes is not None:
            d, g = d + list(self.projection.parameters()), g + list(self.generator_label.parameters())
        return {"d": self.adamw(d), "g": self.adamw(g)}

    def phases(self):
        return [("d", int(self.cfg.model.d_steps)), ("g", 1)]

    def noise(self, n: int, device) -> torch.Tensor:
        """Training noise from torch's global RNG (seeded and checkpointed by the trainer)."""
        if self.cfg.model.noise == "uniform":
            return torch.rand(n, self.z_dim, device=device) * 2 - 1
        return torch.randn(n, self.z_dim, device=device)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z), or G(z, y) with labels."""
        return self.generator(z) if y is None else run_with_label(self.generator, z, self.generator_label(y))

    def score(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """D(x), or the projection discriminator's D(x, y) with labels."""
        return self.discriminator(x) if y is None else projection_score(self.discriminator, self.projection, x, y)

    def training_loss(self, x, phase, labels=None):
        y = labels_or_error(self, labels)
        kind = self.cfg.model.loss
        z = self.noise(x.shape[0], x.device)
        if phase == "d":
            with torch.no_grad():
                fake = self.generate(z, y)
            real_score, fake_score = self.score(x, y).float(), self.score(fake, y).float()
            loss = discriminator_loss(kind, real_score, fake_score, float(self.cfg.model.label_smoothing))
            shown = torch.sigmoid if kind == "bce" else (lambda s: s)
            return {"loss": loss, "d_real": shown(real_score).mean().detach(),
                    "d_fake": shown(fake_score).mean().detach()}
        return {"loss": generator_loss(kind, self.score(self.generate(z, y), y))}

    # inference
    @torch.no_grad()
    def sample(self, n, generator, labels=None, **options):
        if options:
            raise ZooError(f"{self.cfg.model_name or 'gan'} sampling takes no options, "
                           f"got {', '.join(sorted(options))}")
        if self.cfg.model.noise == "uniform":
            z = rand((n, self.z_dim), generator, self.device) * 2 - 1
        else:
            z = randn((n, self.z_dim), generator, self.device)
        y = None if self.num_classes is None and labels is None else self.sample_labels(n, labels)
        return to_unit(self.generate(z, y), self.data_range)


def with_defaults(base: dict, extra: dict) -> dict:
    """``base`` config updated by ``extra`` (new keys allowed): a subclass's ``config``. A plain value in
    ``extra`` for a key ``base`` declares becomes its new default (help and valid values kept)."""
    return merge(base, extra, strict=False)


# --- the MLP GAN ----------------------------------------------------------------------------
class GAN(GANBase):
    """MLP generator and discriminator (the classic MNIST GAN)."""

    description = "GAN (Goodfellow et al. 2014): MLP generator and discriminator, BCE losses"
    config = with_defaults(GANBase.config, {
        "model": {
            "g_hidden": Key([1024, 1024], "generator: widths between the noise and the image", item=int, ge=1),
            "d_hidden": Key([256, 256], "discriminator: widths between the image and the score", item=int, ge=1),
        },
    })
    presets = {
        "tiny": {"model": {"z_dim": 32, "g_hidden": [128, 128], "d_hidden": [64, 64]},
                 "trainer": {"batch_size": 64, "lr": 1e-3, "max_steps": 200, "log_every": 10,
                             "sample_every": 100, "checkpoint_every": 0, "n_samples": 16}},
    }
    preset_help = {"tiny": "smoke test: seconds on a CPU, not for results"}

    def build(self):
        c, h, w = self.image_shape
        m = self.cfg.model
        g_layers: list[nn.Module] = []
        width = self.z_dim
        for size in m.g_hidden:
            g_layers += [nn.Linear(width, int(size)), nn.ReLU()]
            width = int(size)
        g_layers += [nn.Linear(width, c * h * w), nn.Tanh(), nn.Unflatten(1, (c, h, w))]
        d_layers: list[nn.Module] = [nn.Flatten()]
        width = c * h * w
        for size in m.d_hidden:
            d_layers += [nn.Linear(width, int(size)), nn.LeakyReLU(0.2)]
            width = int(size)
        d_layers += [nn.Linear(width, 1), nn.Flatten(0)]
        return nn.Sequential(*g_layers), nn.Sequential(*d_layers)


@hookimpl
def zoo_register_models(register):
    register(GAN, name="gan")
    # lr 1e-3: at the GAN's 3e-4 this LSGAN's discriminator wins and the generator collapses to one blurred
    # digit (MNIST FID 72 after 3,000 steps; 1e-4 is worse, 129); at 1e-3 FID is 27.6 (mnist extractor, 1,000
    # samples, benchmarks/results/mnist-study-cpu/README.md)
    register(GAN, name="lsgan", config={"model": {"loss": "ls"}, "trainer": {"lr": 1e-3}},
             description="LSGAN (Mao et al. 2017): the MLP GAN with least-squares losses")

"""Variational autoencoder (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014).

The encoder outputs the mean and log-variance of a diagonal Gaussian
``q(z | x)``; a code is drawn with the reparameterisation ``z = mu + sigma * eps``
and decoded to the parameters of ``p(x | z)``. Training minimises the negative
evidence lower bound with a weight ``beta`` on the KL term (beta-VAE, Higgins et
al. ICLR 2017; ``model.beta = 1`` is the plain VAE)::

    loss = rec + beta * kl,   rec = -log p(x | z),   kl = KL(q(z | x) || N(0, I))  (closed form)

Logged per image, in nats: ``rec``, ``kl`` (never negative) and ``elbo = -(rec + kl)``
(the bound itself, whatever ``beta`` is; higher is better).

Likelihoods (``model.likelihood``), both on images scaled to [0, 1]:

* ``bernoulli`` -- pixel probabilities ``sigmoid(logits)``, ``rec`` = binary cross-entropy
  summed over pixels (the paper's MNIST setting; MNIST's grey levels act as soft targets).
* ``gaussian`` -- mean ``sigmoid(logits)`` and a fixed standard deviation ``model.sigma``:
  ``rec = sum((x - mean)^2) / (2 sigma^2) + D log(sigma sqrt(2 pi))``, i.e. a scaled MSE.
  That is a continuous density, so ``rec`` can be negative and the ELBO positive.

Samples are decoder means for codes drawn from the prior N(0, I).

Architectures (``model.arch``): ``mlp`` -- 784 -> 400 -> 20 (mu and log sigma^2) and
20 -> 400 -> 784 with ReLU, as in the paper's MNIST experiments; ``conv`` -- the conv
encoder/decoder of ``zoo_plugins.ae``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoo import Key, ZooError, ZooModel, hookimpl
from zoo.contract import randn
from zoo_plugins.ae import ConvDecoder, ConvEncoder, check_conv_size, mlp

ARCHS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")


class VAE(ZooModel):
    """Variational autoencoder with a Bernoulli or Gaussian decoder and a beta on the KL term."""

    family = "vae"
    description = "VAE (Kingma & Welling 2014): MLP or conv, Bernoulli/Gaussian likelihood, beta on the KL"
    data_range = (0.0, 1.0)
    config = {
        "model": {
            "arch": Key("mlp", "mlp: fully connected encoder and decoder; conv: two stride-2 convs each",
                        choices=ARCHS),
            "hidden": Key([400], "mlp: widths between the image and the code (mirrored by the decoder)",
                          item=int, ge=1),
            "latent": Key(20, "code size", ge=1),
            "width": Key(32, "conv: channels of the first conv (the second has twice that)", ge=1),
            "likelihood": Key("bernoulli", "decoder likelihood: bernoulli (BCE) or gaussian (MSE with a fixed "
                                           "model.sigma)", choices=LIKELIHOODS),
            "sigma": Key(0.1, "gaussian likelihood: the decoder's standard deviation on [0, 1] images", gt=0),
            "beta": Key(1.0, "weight of the KL term (1: the ELBO; > 1: beta-VAE)", ge=0),
        },
        "trainer": {"batch_size": 128, "lr": 1e-3, "max_steps": 10000, "log_every": 100,
                    "sample_every": 1000, "checkpoint_every": 2000},
        "data": {"image_size": 28},
    }
    presets = {
        "tiny": {"model": {"hidden": [128], "latent": 8, "width": 8},
                 "trainer": {"batch_size": 64, "lr": 2e-3, "max_steps": 200, "log_every": 10,
                             "sample_every": 100, "checkpoint_every": 0, "n_samples": 16}},
    }
    preset_help = {"tiny": "smoke test: seconds on a CPU, not for results"}

    def __init__(self, cfg):
        super().__init__(cfg)
        m = cfg.model
        c, h, w = self.image_shape
        self.latent = int(m.latent)
        if m.arch == "mlp":
            sizes = [c * h * w, *[int(s) for s in m.hidden]]
            self.encoder = nn.Sequential(nn.Flatten(), mlp(sizes + [2 * self.latent]))
            self.decoder = nn.Sequential(mlp([self.latent, *sizes[::-1]]), nn.Unflatten(1, (c, h, w)))
        else:
            check_conv_size("vae", h)
            self.encoder = ConvEncoder(c, h, int(m.width), 2 * self.latent)
            self.decoder = ConvDecoder(self.latent, c, h, int(m.width))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x), in float32."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes -> the decoder's mean image in [0, 1]."""
        return torch.sigmoid(self.decoder(z).float())

    def nll(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) per image, in nats."""
        x = x.float()
        if self.cfg.model.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        sigma = float(self.cfg.model.sigma)
        sq = (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1)
        return sq / (2 * sigma ** 2) + x[0].numel() * math.log(sigma * math.sqrt(2 * math.pi))

    def training_loss(self, x, phase):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        rec = self.nll(self.decoder(z).float(), x).mean()
        # KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1 - log s^2) / 2; expm1 keeps each term >= 0 in floats
        kl = 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar).sum(1).mean()
        loss = rec + float(self.cfg.model.beta) * kl
        return {"loss": loss, "rec": rec.detach(), "kl": kl.detach(), "elbo": -(rec + kl).detach()}

    @torch.no_grad()
    def sample(self, n, generator, **options):
        if options:
            raise ZooError(f"vae sampling takes no options, got {', '.join(sorted(options))}")
        return self.decode(randn((n, self.latent), generator, self.device))

    @torch.no_grad()
    def reconstruct(self, x):
        return self.decode(self.encode(x)[0])


@hookimpl
def zoo_register_models(register):
    register(VAE, name="vae")

"""Autoencoder, made generative by a density fitted to its codes.

An autoencoder (Hinton & Salakhutdinov, "Reducing the dimensionality of data
with neural networks", Science 2006) maps an image to a small code and back and
is trained to reconstruct its input: loss = squared error summed over pixels,
averaged over the batch (``mse``, the same error per pixel, is logged beside it).

It has no prior to sample from, so zoo makes it generative the honest way, as
in the "ex-post density estimation" of Ghosh et al. ("From variational to
deterministic autoencoders", ICLR 2020): once training is over
(``after_training``) it encodes the training set once and fits a density to
the codes -- a full-covariance Gaussian (``model.latent_density: gaussian``) or
a Gaussian mixture with ``model.components`` components fitted by EM
(``gmm``) -- and ``sample`` decodes draws from that density. The fitted density
lives in buffers, so it is saved in the checkpoint with the weights.
**Before the fit** (the sample grids drawn during training) the buffers hold a
standard normal, so codes are drawn from N(0, I) until ``after_training`` runs.

Class-conditional (``model.conditional: true``): the autoencoder itself is trained exactly as
without labels; ``after_training`` gets ``(images, labels)`` pairs and also fits one density per class
to that class's codes (``model.latent_density``, buffers ``class_density.<c>.*``), and
``sample(n, g, labels=y)`` decodes draws from each image's class density -- conditioning with no
retraining, as in ex-post density estimation. Before the fit every class draws from N(0, I).

Architectures (``model.arch``):

* ``mlp`` -- 784 -> 128 -> 64 -> 12 -> code -> 12 -> 64 -> 128 -> 784 with Tanh
  activations and a Tanh output (``model.hidden``, ``model.latent``; the classic
  small MNIST autoencoder with a 3-number code).
* ``conv`` -- two stride-2 4x4 convolutions (``model.width``, 2x that) and a
  linear layer to the code; the decoder mirrors it with transposed convolutions.

The conv encoder/decoder and the MLP builder here are shared with the VAE
(``zoo_plugins.vae``).
"""
from __future__ import annotations

import math
import warnings
from typing import Iterable

import torch
from torch import nn

from zoo import Key, ZooError, ZooModel, hookimpl
from zoo.contract import randn, to_unit
from zoo_plugins.conditioning import labels_or_error

ARCHS = ("mlp", "conv")
DENSITIES = ("gaussian", "gmm")


# --- building blocks (also used by zoo_plugins.vae) -------------------------------------------
def mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def check_conv_size(name: str, size: int) -> None:
    if size % 4:
        raise ZooError(f"{name} with model.arch=conv needs data.image_size divisible by 4, got {size} "
                       f"(e.g. 28 or 32), or use model.arch=mlp")


class ConvEncoder(nn.Sequential):
    """``(C, S, S) -> (w, S/2, S/2) -> (2w, S/4, S/4) -> out_dim`` (4x4 stride-2 convs, ReLU)."""

    def __init__(self, channels: int, size: int, width: int, out_dim: int):
        q = size // 4
        super().__init__(
            nn.Conv2d(channels, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * width * q * q, out_dim),
        )


class ConvDecoder(nn.Sequential):
    """The mirror of :class:`ConvEncoder`: ``latent -> (2w, S/4, S/4) -> (w, S/2, S/2) -> (C, S, S)``,
    no activation at the end."""

    def __init__(self, latent: int, channels: int, size: int, width: int):
        q = size // 4
        super().__init__(
            nn.Linear(latent, 2 * width * q * q), nn.ReLU(), nn.Unflatten(1, (2 * width, q, q)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),
        )


# --- the latent density ---------------------------------------------------------------------
def fit_gmm(x: torch.Tensor, k: int, generator: torch.Generator, iters: int = 200, tol: float = 1e-7):
    """Fit a ``k``-component full-covariance Gaussian mixture to the rows of ``x`` by EM.

    Returns ``(log_weights (k,), means (k, d), scale_tril (k, d, d))`` in float64.
    Initial means are ``k`` distinct rows drawn with ``generator`` (so the fit is
    reproducible and leaves torch's global RNG alone), initial covariances the
    data's. A small ridge (1e-6 of the average variance) keeps every covariance
    positive definite. ``k = 1`` is the plain maximum-likelihood Gaussian.
    """
    x = x.double()
    n, d = x.shape
    if n < max(2, k):
        raise ZooError(f"cannot fit a {k}-component latent density to {n} codes (lower model.components)")
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    cov = torch.cov(x.T).reshape(d, d)
    ridge = 1e-6 * cov.diagonal().mean().clamp(min=1e-12) * eye
    means = x[torch.randperm(n, generator=generator)[:k].to(x.device)]
    covs = (cov + ridge).expand(k, d, d).clone()
    log_w = torch.full((k,), -math.log(k), dtype=x.dtype, device=x.device)
    previous = -math.inf
    for _ in range(iters):
        # E step: responsibilities r[n, k] = p(component k | x_n)
        scale_tril = torch.linalg.cholesky(covs)
        log_p = torch.distributions.MultivariateNormal(means, scale_tril=scale_tril).log_prob(x[:, None, :])
        joint = log_p + log_w
        log_norm = torch.logsumexp(joint, dim=1, keepdim=True)
        r = (joint - log_norm).exp()
        # M step: weights, means and covariances weighted by r
        nk = r.sum(0).clamp(min=1e-10)
        log_w = (nk / n).log()
        means = (r.T @ x) / nk[:, None]
        diff = x[:, None, :] - means
        covs = torch.einsum("nk,nki,nkj->kij", r, diff, diff) / nk[:, None, None] + ridge
        ll = float(log_norm.mean())
        if ll - previous < tol * max(1.0, abs(ll)):
            break
        previous = ll
    return log_w, means, torch.linalg.cholesky(covs)


class LatentDensity(nn.Module):
    """A Gaussian mixture over codes, held in buffers (saved with the weights).

    Starts as one standard normal (the other components get zero weight); :meth:`fit` replaces it.
    """

    def __init__(self, dim: int, components: int):
        super().__init__()
        log_w = torch.full((components,), -math.inf)
        log_w[0] = 0.0
        self.register_buffer("log_weights", log_w)
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("scale_tril", torch.eye(dim).expand(components, dim, dim).clone())
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, codes: torch.Tensor, seed: int) -> None:
        g = torch.Generator().manual_seed(int(seed))
        log_w, means, scale_tril = fit_gmm(codes, len(self.means), g)
        self.log_weights.copy_(log_w)
        self.means.copy_(means)
        self.scale_tril.copy_(scale_tril)
        self.fitted.fill_(True)

    @torch.no_grad()
    def fit_one(self, mean: torch.Tensor, scale_tril: torch.Tensor) -> None:
        """One Gaussian with this mean and Cholesky factor (the other components get zero weight)."""
        self.log_weights.fill_(-math.inf)
        self.log_weights[0] = 0.0
        self.means.zero_()
        self.means[0].copy_(mean)
        self.scale_tril.copy_(scale_tril.expand_as(self.scale_tril))
        self.fitted.fill_(True)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` codes (float32, on this module's device) drawn with ``generator`` only."""
        device = self.means.device
        with torch.autocast(device.type, enabled=False):
            probs = self.log_weights.float().softmax(0).to(generator.device)
            which = torch.multinomial(probs, n, replacement=True, generator=generator).to(device)
            eps = randn((n, self.means.shape[1], 1), generator, device)
            return self.means[which].float() + (self.scale_tril[which].float() @ eps).squeeze(-1)


# --- the model ------------------------------------------------------------------------------
class Autoencoder(ZooModel):
    """Autoencoder with a latent density fitted after training (Gaussian or GMM)."""

    family = "ae"
    description = "autoencoder (MLP or conv); samples decode a Gaussian/GMM fitted to its training codes"
    data_range = (-1.0, 1.0)
    can_condition = True
    config = {
        "model": {
            "arch": Key("mlp", "mlp: 784-128-64-12-code Tanh layers (the classic); conv: two stride-2 convs",
                        choices=ARCHS),
            "hidden": Key([128, 64, 12], "mlp: widths between the image and the code (mirrored by the decoder)",
                          item=int, ge=1),
            "latent": Key(3, "code size", ge=1),
            "width": Key(32, "conv: channels of the first conv (the second has twice that)", ge=1),
            "latent_density": Key("gaussian", "density fitted to the training codes after training, sampled "
                                              "from: gaussian (full covariance) or gmm", choices=DENSITIES),
            "components": Key(10, "gmm: mixture components", ge=1),
            "conditional": Key(False, "sample by class: after training, fit model.latent_density to each "
                                      "class's codes (the autoencoder is trained as without labels)"),
        },
        "trainer": {"batch_size": 128, "lr": 1e-3, "max_steps": 10000, "log_every": 100,
                    "sample_every": 1000, "checkpoint_every": 2000},
        "data": {"image_size": 28},
    }
    presets = {
        "tiny": {"model": {"width": 8, "components": 4},
                 "trainer": {"batch_size": 64, "lr": 2e-3, "max_steps": 200, "log_every": 10,
                             "sample_every": 100, "checkpoint_every": 0, "n_samples": 16}},
    }
    preset_help = {"tiny": "smoke test: seconds on a CPU, not for results"}

    def __init__(self, cfg):
        super().__init__(cfg)
        m = cfg.model
        c, h, w = self.image_shape
        latent = int(m.latent)
        if m.arch == "mlp":
            sizes = [c * h * w, *[int(s) for s in m.hidden], latent]
            self.encoder = nn.Sequential(nn.Flatten(), mlp(sizes, nn.Tanh))
            self.decoder = nn.Sequential(mlp(sizes[::-1], nn.Tanh), nn.Unflatten(1, (c, h, w)))
        else:
            check_conv_size("ae", h)
            self.encoder = ConvEncoder(c, h, int(m.width), latent)
            self.decoder = ConvDecoder(latent, c, h, int(m.width))
        k = 1 if m.latent_density == "gaussian" else int(m.components)
        self.density = LatentDensity(latent, k)
        if self.num_classes is not None:
            self.class_density = nn.ModuleList(LatentDensity(latent, k) for _ in range(self.num_classes))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes -> images in the model range (-1, 1)."""
        return torch.tanh(self.decoder(z))

    def training_loss(self, x, phase, labels=None):
        labels_or_error(self, labels)  # checked, not used: the codes are fitted per class after training
        rec = self.decode(self.encode(x)).float()
        sq = (rec - x.float()).pow(2).flatten(1)
        loss = sq.sum(1).mean()
        return {"loss": loss, "mse": sq.mean().detach()}

    @torch.no_grad()
    def after_training(self, batches: Iterable) -> None:
        """Encode the training set once and fit ``model.latent_density`` to the codes; a conditional run
        (items ``(images, labels)``) also fits one to each class's codes."""
        if self.num_classes is None:
            codes = torch.cat([self.encode(x).float() for x in batches])
            self.density.fit(codes, seed=int(self.cfg.seed))
            return
        pairs = [item if isinstance(item, (tuple, list)) else (item, None) for item in batches]
        if any(y is None for _, y in pairs):
            raise ZooError("a conditional ae fits its class densities on (images, labels) pairs: "
                           "after_training got images without labels")
        codes = torch.cat([self.encode(x).float() for x, _ in pairs])
        labels = torch.cat([torch.as_tensor(y).reshape(-1) for _, y in pairs]).to(codes.device)
        self.density.fit(codes, seed=int(self.cfg.seed))
        shared = None
        for c, density in enumerate(self.class_density):
            mine = codes[labels == c]
            if len(mine) >= max(2, len(density.means)):
                density.fit(mine, seed=int(self.cfg.seed) + 1 + c)
                continue
            # too few codes for the mixture: one Gaussian at the class's mean with all codes' covariance
            warnings.warn(f"ae: class {c} has {len(mine)} training images, too few for a {len(density.means)}-"
                          f"component density: it gets one Gaussian at its mean with the covariance of all codes",
                          stacklevel=2)
            if shared is None:
                _, mean, shared = fit_gmm(codes, 1, torch.Generator().manual_seed(int(self.cfg.seed)))
            density.fit_one(mine.mean(0) if len(mine) else mean[0], shared[0])

    @torch.no_grad()
    def sample(self, n, generator, labels=None, **options):
        if options:
            raise ZooError(f"ae sampling takes no options, got {', '.join(sorted(options))}")
        if self.num_classes is None and labels is None:
            return to_unit(self.decode(self.density.sample(n, generator)), self.data_range)
        y = self.sample_labels(n, labels)
        codes = torch.empty(n, self.density.means.shape[1], device=self.device)
        for c in y.unique().tolist():  # ascending: the same labels draw the same codes
            rows = (y == c).nonzero().squeeze(1)
            codes[rows] = self.class_density[c].sample(len(rows), generator)
        return to_unit(self.decode(codes), self.data_range)

    @torch.no_grad()
    def reconstruct(self, x):
        return to_unit(self.decode(self.encode(x)), self.data_range)


@hookimpl
def zoo_register_models(register):
    register(Autoencoder, name="ae")

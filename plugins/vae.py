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

Likelihood (``log_likelihood``, behind ``zoo eval --nll``): the log-probability of the 8-bit image,
bounded two ways from the same K draws (``--nll-option samples=K``, default 64) -- the ELBO and
the tighter importance-weighted bound of Burda et al. (ICLR 2016),
``log P(x) >= E log (1/K) sum_k p(x, z_k) / q(z_k | x)``, which grows with K towards log P(x).
The decoder is a density on [0, 1] and the image is discrete, so each draw also dequantises:
``y = (k + u) / 256``, u ~ U[0, 1) (Theis et al. 2016), and ``log P(k) >= log p(y) - D log 256``.
The bernoulli decoder's BCE is NOT a normalised density for grey levels:
``int_0^1 lam^y (1 - lam)^(1 - y) dy = 1 / C(lam) <= 1/2``, so -BCE would be a loose bound (by at
least one bit per pixel). The evaluation uses the same decoder output as the proper density it
defines on [0, 1], the continuous Bernoulli of Loaiza-Ganem & Cunningham (NeurIPS 2019):
``p(y | lam) = C(lam) lam^y (1 - lam)^(1 - y)``, i.e. ``l exp(l y) / (exp(l) - 1)`` for the logit l.
Training is unchanged (it still minimises BCE), so the bound is that of the decoder as trained, read
as a continuous Bernoulli. The gaussian decoder is already a density (its mass outside [0, 1] is
simply lost, which keeps the bound valid).

Class-conditional (``model.conditional: true``, a CVAE: Sohn et al., NeurIPS 2015): the label goes to
the encoder, q(z | x, y), and to the decoder, p(x | z, y), as a one-hot vector concatenated to each
network's input -- implemented as the equivalent learned per-class bias on the first layer's output
(``zoo_plugins.conditioning``), so the networks, and an unconditional VAE's checkpoints, are unchanged.
The prior stays N(0, I); ``sample(n, g, labels=y)`` decodes prior codes with the asked labels. Without
labels, ``reconstruct`` uses each image's best class (highest ELBO at the posterior mean) and
``log_likelihood`` bounds the marginal log p(x) = log (1/K) sum_y p(x | y) (uniform classes: K times
the work); ``log_likelihood(x, labels=y)`` bounds log p(x | y).

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
from zoo.contract import randn, uniform_dequantize
from zoo_plugins.ae import ConvDecoder, ConvEncoder, check_conv_size, mlp
from zoo_plugins.conditioning import LabelBias, labels_or_error, run_with_label

ARCHS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")


class VAE(ZooModel):
    """Variational autoencoder with a Bernoulli or Gaussian decoder and a beta on the KL term."""

    family = "vae"
    description = "VAE (Kingma & Welling 2014): MLP or conv, Bernoulli/Gaussian likelihood, beta on the KL"
    data_range = (0.0, 1.0)
    can_condition = True
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
            "conditional": Key(False, "condition on the dataset's class labels (a CVAE: the label goes to the "
                                      "encoder and the decoder)"),
        },
        "trainer": {"batch_size": 128, "lr": 1e-3, "max_steps": 10000, "log_every": 100,
                    "sample_every": 1000, "checkpoint_every": 2000},
        "data": {"image_size": 28},
    }
    likelihood_options = {
        "samples": Key(64, "importance samples K per image: the bound is iwae-K (Burda et al. 2016), reported "
                           "with the ELBO of the same draws; 1 gives the ELBO alone", ge=1),
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
        if self.num_classes is not None:  # after the networks: their initialisation stays the unconditional one
            self.encoder_label = LabelBias(self.num_classes, self.encoder)
            self.decoder_label = LabelBias(self.num_classes, self.decoder)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x) (q(z | x, y) with labels ``y``), in float32."""
        out = self.encoder(x) if y is None else run_with_label(self.encoder, x, self.encoder_label(y))
        mu, logvar = out.float().chunk(2, dim=1)
        return mu, logvar

    def logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's output for codes ``z`` (and labels ``y``), float32."""
        return (self.decoder(z) if y is None else run_with_label(self.decoder, z, self.decoder_label(y))).float()

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (and labels) -> the decoder's mean image in [0, 1]."""
        return torch.sigmoid(self.logits(z, y))

    def nll(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) per image, in nats."""
        x = x.float()
        if self.cfg.model.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        sigma = float(self.cfg.model.sigma)
        sq = (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1)
        return sq / (2 * sigma ** 2) + x[0].numel() * math.log(sigma * math.sqrt(2 * math.pi))

    def training_loss(self, x, phase, labels=None):
        y = labels_or_error(self, labels)
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        rec = self.nll(self.logits(z, y), x).mean()
        kl = kl_to_prior(mu, logvar).mean()
        loss = rec + float(self.cfg.model.beta) * kl
        return {"loss": loss, "rec": rec.detach(), "kl": kl.detach(), "elbo": -(rec + kl).detach()}

    @torch.no_grad()
    def sample(self, n, generator, labels=None, **options):
        if options:
            raise ZooError(f"vae sampling takes no options, got {', '.join(sorted(options))}")
        z = randn((n, self.latent), generator, self.device)
        y = None if self.num_classes is None and labels is None else self.sample_labels(n, labels)
        return self.decode(z, y)

    @torch.no_grad()
    def best_labels(self, x: torch.Tensor) -> torch.Tensor:
        """Each image's class with the highest ELBO at the posterior mean (conditional runs)."""
        scores = []
        for c in range(self.num_classes):
            y = torch.full((len(x),), c, dtype=torch.int64, device=x.device)
            mu, logvar = self.encode(x, y)
            scores.append(-(self.nll(self.logits(mu, y), x) + kl_to_prior(mu, logvar)))
        return torch.stack(scores, 1).argmax(1)

    def log_density(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(y | z) per image (nats, float64) for continuous y in [0, 1]: the continuous Bernoulli
        density for the bernoulli decoder, the Gaussian for the gaussian one."""
        if self.cfg.model.likelihood == "bernoulli":
            return continuous_bernoulli_log_prob(logits.double(), y.double()).flatten(1).sum(1)
        return -self.nll(logits.double(), y.double())

    @torch.no_grad()
    def log_likelihood(self, x, generator=None, samples: int = 64, labels=None):
        """Bounds on log P(x) of the 8-bit images ``x`` (in [0, 1]): ``{"nats": iwae-K, "bound": "iwae-K",
        "also": {"elbo": ...}}`` from K draws of (z ~ q(z | x), u ~ U[0, 1)^D) per image (see the module
        docstring); with ``samples=1``, the ELBO alone. A conditional run bounds log P(x | y) for
        ``labels``, and without them the marginal over uniform classes, log (1/C) sum_y P(x | y), from
        K draws per class (each class's estimate of P(x | y) is unbiased, so their mean is too)."""
        k = int(samples)
        g = generator if generator is not None else torch.Generator(self.device).manual_seed(0)
        x = x.to(self.device).float()
        if self.num_classes is None or labels is not None:
            y = None if labels is None else self.sample_labels(len(x), labels)
            log_w = self.log_weights(x, y, k, g)
            elbo = log_w.mean(1)
        else:
            per_class = [self.log_weights(x, torch.full((len(x),), c, dtype=torch.int64, device=self.device), k, g)
                         for c in range(self.num_classes)]
            log_w = torch.cat(per_class, 1)
            elbo = torch.logsumexp(torch.stack([w.mean(1) for w in per_class], 1), 1) - math.log(len(per_class))
        if k == 1 and log_w.shape[1] == 1:
            return {"nats": elbo, "bound": "elbo"}
        return {"nats": torch.logsumexp(log_w, 1) - math.log(log_w.shape[1]), "bound": f"iwae-{k}",
                "also": {"elbo": elbo}}

    def log_weights(self, x: torch.Tensor, y: torch.Tensor | None, k: int, g: torch.Generator) -> torch.Tensor:
        """``(B, k)`` importance log-weights log p(x, z) / q(z | x) (given labels ``y``) of ``k`` draws."""
        mu, logvar = self.encode(x, y)
        std = (0.5 * logvar).exp()
        q = torch.distributions.Normal(mu.double(), std.double())
        log_w = []
        per_chunk = max(1, 4096 // len(x))   # draws decoded together, so a chunk is ~4096 images
        for start in range(0, k, per_chunk):
            c = min(per_chunk, k - start)
            z = mu + std * randn((c, *mu.shape), g, self.device)                    # (c, B, latent)
            v, log_jacobian = uniform_dequantize(x.expand(c, *x.shape).flatten(0, 1), self.data_range, g)
            labels = None if y is None else y.repeat(c)
            log_px = self.log_density(self.logits(z.flatten(0, 1), labels), v) + log_jacobian
            log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z.double()).sum(-1)
            log_w.append(log_px.view(c, -1) + log_pz - q.log_prob(z.double()).sum(-1))
        return torch.cat(log_w).T                                                     # (B, K)

    @torch.no_grad()
    def reconstruct(self, x, labels=None):
        """Decoded posterior means; a conditional run uses ``labels``, else each image's best class."""
        if self.num_classes is None and labels is None:
            return self.decode(self.encode(x)[0])
        y = self.best_labels(x) if labels is None else self.sample_labels(len(x), labels, x.device)
        return self.decode(self.encode(x, y)[0], y)


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, s^2) || N(0, 1)) per row = sum (mu^2 + s^2 - 1 - log s^2) / 2; expm1 keeps each term >= 0
    in floats."""
    return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar).sum(1)


def continuous_bernoulli_log_prob(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log of the continuous Bernoulli density (Loaiza-Ganem & Cunningham 2019) with logit l at y in
    [0, 1]: ``y l - log((exp(l) - 1) / l)``, stable for any l. (torch.distributions.ContinuousBernoulli
    clamps its probabilities, which is off by up to tenths of a nat per pixel for |l| > ~35, and
    a trained BCE decoder's logits reach that.)"""
    a = logits.abs()
    log_norm = torch.where(a < 1e-4, logits / 2 + logits * logits / 24,   # Taylor series near l = 0
                           torch.relu(logits) + torch.log(-torch.expm1(-a)) - torch.log(a))
    return y * logits - log_norm


@hookimpl
def zoo_register_models(register):
    register(VAE, name="vae")

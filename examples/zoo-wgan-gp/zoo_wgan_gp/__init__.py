"""WGAN-GP for zoo: a Wasserstein GAN with gradient penalty (Gulrajani et al. 2017).

An example of a third-party zoo plugin: a separate package whose
``pyproject.toml`` names this module in the ``zoo.plugins`` entry-point group::

    [project.entry-points."zoo.plugins"]
    wgan-gp = "zoo_wgan_gp"

Once installed, ``zoo list`` shows ``wgan-gp`` and ``zoo train wgan-gp`` trains it
through zoo's shared trainer like any built-in model.

The method, as in the paper (Algorithm 1):

* the critic ``D`` has no sigmoid and **no BatchNorm** (the penalty is taken per
  sample, which batch statistics would break), and minimises
  ``D(fake) - D(real) + lambda * GP`` with ``lambda = 10``;
* ``GP = E[(||grad D(x_hat)||_2 - 1)^2]`` at ``x_hat`` uniformly on straight lines
  between real and generated images;
* ``n_critic = 5`` critic updates per generator update -- zoo's
  ``phases() = [("critic", 5), ("g", 1)]`` -- and the generator minimises
  ``-D(G(z))``;
* Adam with ``lr = 1e-4`` and ``betas = (0.5, 0.9)``.

One difference from the paper's loop: zoo hands a model one real batch per
step, so the five critic updates of a step see the same real images (each with
fresh generated images and fresh interpolation points).
"""
from __future__ import annotations

import torch
from torch import nn

from zoo import Key, ZooError, ZooModel, hookimpl
from zoo.contract import randn, to_unit

__version__ = "0.1.0"
ZOO_API = 1  # the zoo plugin API this plugin is written against


@torch.compiler.disable  # runs eagerly under `trainer.compile=true`: compiled graphs do not double-backward
def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``E[(||grad_x critic(x_hat)||_2 - 1)^2]``, ``x_hat = eps * real + (1 - eps) * fake``, ``eps ~ U[0, 1]``.

    The gradient is built with ``create_graph=True`` so that the penalty itself
    can be back-propagated into the critic's weights (a double backward). It is
    computed in float32 with autocast switched off: the trainer runs
    ``training_loss`` under bf16/fp16 autocast on CUDA, and a gradient of a
    gradient in half precision is too coarse for a penalty that targets norm 1.
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = torch.lerp(fake.detach().float(), real.detach().float(), eps).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        score = critic(x_hat).float()
        (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
        return (torch.linalg.vector_norm(grad.flatten(1), dim=1) - 1).pow(2).mean()


class Generator(nn.Module):
    """``z -> (4w, s/4, s/4) -> (2w, s/2, s/2) -> (w, s, s) -> image`` (the paper's MNIST
    generator shape, with 4x4 stride-2 transposed convolutions and no normalisation)."""

    def __init__(self, z_dim: int, width: int, channels: int, size: int):
        super().__init__()
        self.q, self.width = size // 4, width
        self.fc = nn.Sequential(nn.Linear(z_dim, 4 * width * self.q * self.q), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, channels, 3, 1, 1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, 4 * self.width, self.q, self.q))


class Critic(nn.Module):
    """Strided convolutions with LeakyReLU and a linear score -- no BatchNorm, no sigmoid."""

    def __init__(self, width: int, channels: int, size: int):
        super().__init__()
        q = size // 4
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(4 * width * q * q, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class WGANGP(ZooModel):
    """Wasserstein GAN with gradient penalty (Gulrajani et al. 2017)."""

    family = "gan"
    description = "WGAN-GP: Wasserstein GAN with gradient penalty (Gulrajani et al. 2017)"
    data_range = (-1.0, 1.0)
    # Each model.* key declared once: default, one line of help, valid values (zoo checks every layer of the
    # config against them; `zoo show-config wgan-gp --explain` prints them).
    config = {
        "model": {
            "z_dim": Key(128, "noise size", ge=1),
            "width": Key(64, "channels of the first critic layer and the last generator layer", ge=1),
            "gp_weight": Key(10.0, "lambda: weight of the gradient penalty (the paper: 10)", ge=0),
            "n_critic": Key(5, "critic updates per generator update (the paper: 5)", ge=1),
        },
        "trainer": {"lr": 1e-4, "betas": [0.5, 0.9], "batch_size": 64, "max_steps": 10000},
    }
    presets = {
        # a CPU smoke run: tens of seconds, blurry digits at best
        "tiny": {"model": {"z_dim": 32, "width": 8},
                 "trainer": {"batch_size": 32, "max_steps": 30, "log_every": 5, "sample_every": 0,
                             "checkpoint_every": 0, "n_samples": 16}},
    }
    preset_help = {"tiny": "smoke test: 30 steps in seconds on a CPU, blurry digits at best"}  # `zoo list`

    def __init__(self, cfg):
        super().__init__(cfg)
        m = cfg.model
        channels, size = self.image_shape[0], self.image_shape[1]
        if size % 4:
            raise ZooError(f"wgan-gp needs data.image_size divisible by 4, got {size} (e.g. 28 or 32)")
        self.z_dim = int(m.z_dim)
        self.generator = Generator(self.z_dim, int(m.width), channels, size)
        self.critic = Critic(int(m.width), channels, size)

    def configure_optimizers(self):
        # AdamW with weight_decay 0 (the default) is Adam; lr/betas come from cfg.trainer
        return {"critic": self.adamw(self.critic.parameters()), "g": self.adamw(self.generator.parameters())}

    def phases(self):
        return [("critic", int(self.cfg.model.n_critic)), ("g", 1)]

    def training_loss(self, x, phase):
        z = torch.randn(x.shape[0], self.z_dim, device=x.device)
        if phase == "critic":
            with torch.no_grad():
                fake = self.generator(z)
            real_score, fake_score = self.critic(x).mean(), self.critic(fake).mean()
            gp = gradient_penalty(self.critic, x, fake)
            loss = fake_score - real_score + float(self.cfg.model.gp_weight) * gp
            # real - fake is the critic's estimate of the Wasserstein distance: the curve to watch
            return {"loss": loss, "wasserstein": (real_score - fake_score).detach().float(), "gp": gp.detach()}
        return {"loss": -self.critic(self.generator(z)).mean()}

    @torch.no_grad()
    def sample(self, n, generator, **options):
        if options:
            raise ZooError(f"wgan-gp sampling takes no options, got {', '.join(sorted(options))}")
        z = randn((n, self.z_dim), generator, self.device)
        return to_unit(self.generator(z), self.data_range)


@hookimpl
def zoo_register_models(register):
    register(WGANGP, name="wgan-gp")

"""DCGAN: a convolutional GAN (Radford, Metz & Chintala, "Unsupervised Representation
Learning with Deep Convolutional Generative Adversarial Networks", ICLR 2016).

Only the networks differ from ``zoo_plugins.gan``, whose :class:`GANBase` supplies
the losses, the alternating D/G steps and the noise (read that file for those).
Sized for MNIST as in the classic small-DCGAN recipe:

* discriminator: 5x5 conv (``model.d_width``) -> LeakyReLU 0.2 -> 2x2 max-pool ->
  5x5 conv (2x ``d_width``) -> LeakyReLU -> max-pool -> FC ``model.d_hidden`` ->
  LeakyReLU -> FC 1 (no BatchNorm);
* generator: FC ``model.g_hidden`` -> FC to ``(g_width, S/4, S/4)`` (7x7x128 for MNIST)
  -> 4x4 stride-2 transposed conv to ``g_width / 2`` channels -> transposed conv to
  the image, Tanh; BatchNorm and ReLU after every layer but the last.

Weights start from N(0, 0.02) (BatchNorm scales from N(1, 0.02)) and Adam uses
lr 2e-4, betas (0.5, 0.999), as in the paper. ``model.loss: bce|ls`` picks the loss
independently of the architecture (``ls`` gives a least-squares DCGAN). ``model.conditional: true``
conditions it as every GAN here (the label one-hot with z, a projection discriminator: ``zoo_plugins.gan``).
"""
from __future__ import annotations

from torch import nn

from zoo import Key, ZooError, hookimpl
from zoo_plugins.gan import GANBase, with_defaults


def dcgan_init(module: nn.Module) -> None:
    """The paper's initialisation: conv/linear weights ~ N(0, 0.02), BatchNorm scales ~ N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGAN(GANBase):
    """Convolutional discriminator and transposed-convolution generator with BatchNorm."""

    description = "DCGAN (Radford et al. 2016): conv D, transposed-conv G with BatchNorm; model.loss bce|ls"
    config = with_defaults(GANBase.config, {
        "model": {
            "g_hidden": Key(1024, "generator: width of the first fully connected layer", ge=1),
            "g_width": Key(128, "generator: channels at S/4 x S/4 (halved at S/2)", ge=2),
            "d_width": Key(32, "discriminator: channels of the first conv (the second has twice that)", ge=1),
            "d_hidden": Key(1024, "discriminator: width of the fully connected layer before the score", ge=1),
        },
        "trainer": {"lr": 2e-4, "max_steps": 10000},
    })
    # The defaults are the paper-sized nets (7.8M parameters): the `gpu` preset. On a CPU they ran 486 steps in 3
    # minutes, so `cpu` narrows the generator's fully connected layers, where most of the weights and FLOPs are.
    presets = {
        "gpu": {},
        "cpu": {"model": {"g_hidden": 256, "g_width": 64, "d_hidden": 256}},
        "tiny": {"model": {"z_dim": 32, "g_hidden": 128, "g_width": 16, "d_width": 8, "d_hidden": 64},
                 "trainer": {"batch_size": 32, "lr": 1e-3, "max_steps": 200, "log_every": 10,
                             "sample_every": 100, "checkpoint_every": 0, "n_samples": 16}},
    }
    preset_help = {
        "gpu": "the paper-sized nets (7.8M parameters): chosen when training on CUDA",
        "cpu": "narrower nets (about 1M parameters): chosen when training on a CPU",
        "tiny": "smoke test: seconds on a CPU, not for results",
    }

    def build(self):
        c, size, _ = self.image_shape
        m = self.cfg.model
        if size % 4 or size < 20:
            raise ZooError(f"dcgan needs data.image_size divisible by 4 and at least 20, got {size} (e.g. 28 or 32)")
        q, gw, dw = size // 4, int(m.g_width), int(m.d_width)
        generator = nn.Sequential(
            nn.Linear(self.z_dim, int(m.g_hidden), bias=False), nn.BatchNorm1d(int(m.g_hidden)), nn.ReLU(),
            nn.Linear(int(m.g_hidden), gw * q * q, bias=False), nn.BatchNorm1d(gw * q * q), nn.ReLU(),
            nn.Unflatten(1, (gw, q, q)),
            nn.ConvTranspose2d(gw, gw // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(gw // 2), nn.ReLU(),
            nn.ConvTranspose2d(gw // 2, c, 4, 2, 1), nn.Tanh(),
        )
        f = ((size - 4) // 2 - 4) // 2  # spatial size after conv5 -> pool -> conv5 -> pool (28 -> 4)
        discriminator = nn.Sequential(
            nn.Conv2d(c, dw, 5), nn.LeakyReLU(0.2), nn.MaxPool2d(2),
            nn.Conv2d(dw, 2 * dw, 5), nn.LeakyReLU(0.2), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * dw * f * f, int(m.d_hidden)), nn.LeakyReLU(0.2),
            nn.Linear(int(m.d_hidden), 1), nn.Flatten(0),
        )
        generator.apply(dcgan_init)
        discriminator.apply(dcgan_init)
        return generator, discriminator


@hookimpl
def zoo_register_models(register):
    register(DCGAN, name="dcgan")

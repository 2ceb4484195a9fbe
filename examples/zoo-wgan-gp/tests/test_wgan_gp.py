"""Tests of the wgan-gp plugin: zoo's reusable contract checks plus the maths of the gradient penalty.

Run with ``pytest examples/zoo-wgan-gp`` once the package is installed (``pip install -e examples/zoo-wgan-gp``).
Only MNIST's test split on disk? ``ZOO_TEST_SETS="data.split=test data.holdout=1000" pytest ...``, or write
``data: {split: test, holdout: 1000}`` once in zoo's user file ($ZOO_CONFIG, else ~/.config/zoo/config.yaml).
"""
import os

import pytest
import torch
from torch import nn

import zoo
from zoo.testing import check_model_contract
from zoo_wgan_gp import WGANGP, gradient_penalty

SETS = os.environ.get("ZOO_TEST_SETS", "").split()


def test_wgan_gp_meets_the_zoo_model_contract():
    check_model_contract("wgan-gp", sets=SETS)


def test_the_plugin_loads_alone_without_failures(zoo_registry):
    # zoo_registry (a fixture zoo installs into pytest): a fresh registry holding only these plugins
    reg = zoo_registry("datasets", "wgan-gp")
    assert [f.error for f in reg.failures] == []
    assert sorted(reg.models) == ["wgan-gp"] and reg.models["wgan-gp"].plugin == "wgan-gp"


def linear_critic(w: torch.Tensor) -> nn.Module:
    critic = nn.Sequential(nn.Flatten(), nn.Linear(w.numel(), 1, bias=True), nn.Flatten(0))
    with torch.no_grad():
        critic[1].weight.copy_(w.reshape(1, -1))
    return critic


def test_penalty_is_exact_for_a_linear_critic_and_back_propagates():
    # critic(x) = w.x + b has gradient w everywhere: GP = (|w| - 1)^2, d GP / d w = 2 (|w| - 1) w / |w|
    torch.manual_seed(0)
    w = torch.randn(1, 4, 4)
    critic = linear_critic(w)
    real, fake = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    gp = gradient_penalty(critic, real, fake)
    norm = w.norm()
    torch.testing.assert_close(gp, (norm - 1) ** 2)
    gp.backward()  # the double backward: through autograd.grad(create_graph=True) into the weights
    torch.testing.assert_close(critic[1].weight.grad, (2 * (norm - 1) * w / norm).reshape(1, -1))


def test_penalty_stays_float32_under_autocast():
    # the trainer runs training_loss under bf16 autocast on CUDA; CPU autocast exercises the same code path
    torch.manual_seed(0)
    w = torch.randn(1, 4, 4)
    critic = linear_critic(w)
    real, fake = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert critic(real).dtype == torch.bfloat16     # autocast is really on
        gp = gradient_penalty(critic, real, fake)
    assert gp.dtype == torch.float32
    torch.testing.assert_close(gp, (w.norm() - 1) ** 2)  # float32 accuracy, not bf16's
    gp.backward()
    assert torch.isfinite(critic[1].weight.grad).all()


def test_settings_follow_the_paper():
    model = zoo.create_model("wgan-gp")
    cfg = model.cfg
    assert (cfg.model.gp_weight, cfg.model.n_critic, cfg.trainer.lr, cfg.trainer.betas) == (10.0, 5, 1e-4,
                                                                                            [0.5, 0.9])
    assert model.phases() == [("critic", 5), ("g", 1)]
    norms = (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
    assert not any(isinstance(m, norms) for m in model.critic.modules())  # a per-sample penalty needs no batch norm
    assert isinstance(model, WGANGP)


def test_bad_settings_are_clear_errors():
    with pytest.raises(zoo.ZooError, match="divisible by 4"):
        zoo.create_model("wgan-gp", **{"data.image_size": 30})
    with pytest.raises(zoo.ZooError, match="n_critic"):
        zoo.create_model("wgan-gp", **{"model.n_critic": 0})

"""Both diffusion U-Nets: shapes for any size/channels, clear errors on sizes they cannot take."""
import pytest
import torch

import zoo
from zoo import ZooError
from zoo_plugins.unet import AttentionUNet, ConvNeXtUNet


def small(kind, channels, size, mults=(1, 2, 2)):
    if kind == "attention":
        return AttentionUNet(channels, dim=8, dim_mults=mults, num_res_blocks=1, attn_resolutions=[size // 2],
                             attn_heads=2, dropout=0.0, groups=4, image_size=size)
    return ConvNeXtUNet(channels, dim=8, dim_mults=mults, image_size=size)


@pytest.mark.parametrize("kind", ["attention", "convnext"])
@pytest.mark.parametrize("channels,size", [(1, 32), (1, 28), (3, 16), (3, 24), (2, 8)])
def test_unet_maps_images_and_timesteps_to_same_shape(kind, channels, size):
    torch.manual_seed(0)
    net = small(kind, channels, size)
    x, t = torch.randn(3, channels, size, size), torch.tensor([0, 500, 999])
    out = net(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # a non-square input whose sides both divide also works, and the timestep matters
    y = torch.randn(2, channels, size, 2 * size)
    assert net(y, torch.tensor([1, 2])).shape == y.shape
    if kind == "convnext":  # the attention U-Net starts as zero (zero-initialised output conv)
        assert not torch.allclose(net(x, torch.tensor([0, 0, 0])), net(x, torch.tensor([999, 999, 999])))


def test_attention_unet_output_conv_starts_at_zero_and_learns():
    net = small("attention", 1, 16)
    x = torch.randn(2, 1, 16, 16)
    assert torch.count_nonzero(net(x, torch.tensor([3, 4]))) == 0
    loss = (net(x, torch.tensor([3, 4])) - 1).pow(2).mean()
    loss.backward()
    assert net.out[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["attention", "convnext"])
def test_image_size_not_divisible_is_a_clear_error_at_construction(kind):
    with pytest.raises(ZooError, match=r"data.image_size=30 does not divide by 8"):
        small(kind, 1, 30, mults=(1, 2, 2, 2))


@pytest.mark.parametrize("kind", ["attention", "convnext"])
def test_wrong_input_size_or_channels_is_a_clear_error_in_forward(kind):
    net = small(kind, 1, 32, mults=(1, 2, 2, 2))
    with pytest.raises(ZooError, match=r"divisible by 8, got 30x30"):
        net(torch.randn(1, 1, 30, 30), torch.tensor([1]))
    with pytest.raises(ZooError, match=r"expects images shaped \(B, 1, H, W\), got \(1, 3, 32, 32\)"):
        net(torch.randn(1, 3, 32, 32), torch.tensor([1]))


def test_model_construction_checks_the_configured_image_size_and_levels():
    with pytest.raises(ZooError, match=r"data.image_size=30 does not divide by 8"):
        zoo.create_model("ddpm", zoo.model_config("ddpm", preset="gpu", sets=["data.image_size=30",
                                                                              "model.dim_mults=[1,2,2,2]",
                                                                              "model.dim=8", "model.groups=4"]))
    with pytest.raises(ZooError, match=r"attn_resolutions=\[16\]: no level at \[16\].*28x28, 14x14, 7x7"):
        zoo.create_model("ddpm", zoo.model_config("ddpm", preset="gpu", sets=["data.image_size=28", "model.dim=8",
                                                                 "model.groups=4"]))
    with pytest.raises(ZooError, match=r"model.groups=32 does not divide the 8 channels"):
        zoo.create_model("ddpm", zoo.model_config("ddpm", preset="gpu", sets=["model.dim=8"]))
    with pytest.raises(ZooError, match=r"model.unet='transformer' .*is not one of convnext, attention"):
        zoo.create_model("ddpm", zoo.model_config("ddpm", preset="gpu", sets=["model.unet=transformer"]))


def test_named_variants_build_their_unet_on_three_channels():
    for name, cls in (("ddpm-convnext", ConvNeXtUNet), ("ddpm-attention", AttentionUNet), ("ddpm", AttentionUNet)):
        cfg = zoo.model_config(name, preset="tiny", sets=["data.channels=3"])
        model = zoo.create_model(name, cfg)
        assert isinstance(model.net, cls)
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        loss = model.training_loss(x, "main")["loss"]
        assert loss.dim() == 0 and torch.isfinite(loss)


def test_self_attention_is_multi_head_softmax_attention_on_contiguous_inputs(monkeypatch):
    """The layer computes x + proj(softmax(q k^T / sqrt(d)) v) per head, and hands
    scaled_dot_product_attention contiguous q, k, v (strided ones send it to the slow math kernel)."""
    from einops import rearrange

    import zoo_plugins.unet as unet
    torch.manual_seed(0)
    layer = unet.SelfAttention(16, heads=4, groups=4)
    torch.nn.init.normal_(layer.proj.weight, 0, 0.3)  # zero-initialised: make the branch count
    x = torch.randn(2, 16, 6, 5)
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append([t.is_contiguous() for t in (q, k, v)])
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(unet.F, "scaled_dot_product_attention", spy)
    out = layer(x)
    assert seen == [[True, True, True]]
    # by hand: heads of d = 4 channels, attention over the 30 pixels
    qkv = layer.qkv(layer.norm(x)).view(2, 3, 4, 4, 30)  # (b, three, heads, d, pixels)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    weights = torch.softmax(torch.einsum("bhdi,bhdj->bhij", q, k) / 2.0, dim=-1)
    heads = torch.einsum("bhij,bhdj->bhdi", weights, v)
    expected = x + layer.proj(rearrange(heads, "b h d (y x) -> b (h d) y x", y=6))
    assert torch.allclose(out, expected, atol=1e-5)

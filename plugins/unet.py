"""Two U-Nets that predict noise (or x0, or v) from a noisy image and a timestep.

Both map ``(x: (B, C, H, W), t: (B,))`` to ``(B, C, H, W)`` for any channel
count ``C`` and any ``H, W`` divisible by their total down-sampling factor
``2 ** (len(dim_mults) - 1)``. A size that does not divide is a
:class:`~zoo.ZooError` at construction (from ``data.image_size``) and in
``forward``.

* :class:`ConvNeXtUNet` -- ConvNeXt blocks (depthwise 7x7 conv, GroupNorm,
  expand conv, GELU, GroupNorm, project conv), two per resolution, two skip
  connections stored per level, space-to-depth down-sampling and
  nearest-neighbour up-sampling, a final block on the concatenation with the
  stem output (the layout of lucidrains' ``denoising-diffusion-pytorch``).
* :class:`AttentionUNet` -- the U-Net of Ho et al. (2020): residual blocks
  (GroupNorm, SiLU, 3x3 conv, dropout) with the time embedding, multi-head
  self-attention at chosen resolutions (16x16 in the paper) through
  ``F.scaled_dot_product_attention``, zero-initialised output convolutions.

Both embed the timestep with sinusoids followed by an MLP of width ``4 * dim``.

Class-conditional: ``unet.add_classes(K)`` (called once, after construction) adds an embedding of
``K + 1`` rows -- one per class, the last (index ``K``) the null class, "no label" -- whose row is added
to the time embedding (as in diffusers' ``class_embedding``); ``forward(x, t, y)`` then takes labels
``y: (B,)`` int64 in ``0..K`` (``y=None``: the null class). An unconditional U-Net has exactly the
parameters and state_dict keys it always had.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo import ZooError


# --- shared pieces --------------------------------------------------------------------------
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(B,) -> (B, dim)`` of (possibly fractional) timesteps."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([args.sin(), args.cos()], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimeEmbedding(nn.Module):
    """Sinusoids of width ``dim`` -> Linear -> activation -> Linear, width ``4 * dim``."""

    def __init__(self, dim: int, activation: type[nn.Module] = nn.GELU):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), activation(), nn.Linear(4 * dim, 4 * dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.dim))


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters, so a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def down_factor(dim_mults: Sequence[int]) -> int:
    """Total down-sampling of a U-Net with one level per entry of ``dim_mults``."""
    return 2 ** (len(dim_mults) - 1)


def check_levels(dim: int, dim_mults: Sequence[int]) -> None:
    if int(dim) < 1 or not dim_mults or any(int(m) < 1 for m in dim_mults):
        raise ZooError(f"model.dim={dim} and model.dim_mults={list(dim_mults)} must be positive "
                       f"(e.g. model.dim=64 model.dim_mults=[1,2,2])")


def check_image_size(image_size: int, dim_mults: Sequence[int], name: str) -> None:
    """Refuse, at construction, an image size the U-Net cannot halve often enough."""
    factor = down_factor(dim_mults)
    if int(image_size) % factor:
        ok = [s for s in range(factor, 4 * factor + 1, factor)]
        raise ZooError(f"data.image_size={image_size} does not divide by {factor}, the down-sampling of the {name} "
                       f"U-Net with {len(dim_mults)} levels (model.dim_mults={list(dim_mults)}): use a multiple of "
                       f"{factor} such as {', '.join(map(str, ok))}, or fewer levels")


def check_input(x: torch.Tensor, in_channels: int, factor: int, name: str) -> None:
    """Shape checks in ``forward`` (python ints only: no device sync)."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ZooError(f"the {name} U-Net expects images shaped (B, {in_channels}, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ZooError(f"the {name} U-Net needs height and width divisible by {factor}, got {h}x{w} "
                       f"(pad or resize the images, or use fewer levels in model.dim_mults)")


def check_labels(y: torch.Tensor, x: torch.Tensor, name: str) -> None:
    """Label checks in ``forward`` (python ints only: no device sync)."""
    if y.dim() != 1 or y.shape[0] != x.shape[0] or y.dtype != torch.int64:
        raise ZooError(f"the conditional {name} U-Net expects labels int64 shaped ({x.shape[0]},) (one per image), "
                       f"got {y.dtype} {tuple(y.shape)}")


class ClassConditional:
    """Mixin of both U-Nets: an optional class embedding added to the time embedding."""

    def add_classes(self, num_classes: int) -> None:
        """Condition on ``num_classes`` classes: an embedding of ``num_classes + 1`` rows (the last
        is the null class) as wide as the time embedding. Created last, so the other weights are
        initialised exactly as in the unconditional U-Net with the same seed."""
        if int(num_classes) < 1:
            raise ZooError(f"data.num_classes={num_classes} must be at least 1 for a conditional U-Net")
        self.num_classes = int(num_classes)
        self.classes = nn.Embedding(self.num_classes + 1, 4 * self.time.dim)

    def embed(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The time embedding of ``t``, plus the class embedding of ``y`` when conditional."""
        temb = self.time(t)
        classes = getattr(self, "classes", None)
        if classes is None:
            if y is not None:
                raise ZooError(f"the {self.name} U-Net is unconditional: labels need add_classes(K) "
                               f"(model.conditional=true)")
            return temb
        if y is None:
            y = torch.full((x.shape[0],), self.num_classes, dtype=torch.int64, device=x.device)
        check_labels(y, x, self.name)
        return temb + classes(y).to(temb.dtype)


def check_groups(channels: int, groups: int) -> None:
    if channels % groups:
        raise ZooError(f"model.groups={groups} does not divide the {channels} channels of a U-Net level "
                       f"(pick model.groups dividing model.dim * each of model.dim_mults, e.g. 8 or 32)")


# --- ConvNeXt U-Net -------------------------------------------------------------------------
class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv (+ time) -> GroupNorm -> expand conv -> GELU -> GroupNorm
    -> project conv, plus the input (through a 1x1 conv when channels change)."""

    def __init__(self, dim_in: int, dim_out: int, time_dim: int, mult: int = 2):
        super().__init__()
        self.dwconv = nn.Conv2d(dim_in, dim_in, 7, padding=3, groups=dim_in)
        self.time = nn.Sequential(nn.GELU(), nn.Linear(time_dim, dim_in))
        self.net = nn.Sequential(
            nn.GroupNorm(1, dim_in),
            nn.Conv2d(dim_in, dim_out * mult, 3, padding=1),
            nn.GELU(),
            nn.GroupNorm(1, dim_out * mult),
            nn.Conv2d(dim_out * mult, dim_out, 3, padding=1),
        )
        self.skip = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x) + rearrange(self.time(temb), "b c -> b c 1 1")
        return self.net(h) + self.skip(x)


def space_to_depth_down(dim_in: int, dim_out: int) -> nn.Module:
    """Halve the resolution without losing pixels: 2x2 pixel-unshuffle (channel order c, p1, p2:
    ``b c (h p1) (w p2) -> b (c p1 p2) h w``), then a 1x1 conv. One native op instead of
    einops' view + permute + reshape; same output, same parameters."""
    return nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(dim_in * 4, dim_out, 1))


def nearest_up(dim_in: int, dim_out: int) -> nn.Module:
    """Double the resolution: nearest-neighbour upsampling, then a 3x3 conv."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(dim_in, dim_out, 3, padding=1))


class ConvNeXtUNet(ClassConditional, nn.Module):
    """U-Net of ConvNeXt blocks; level ``i`` has ``dim * dim_mults[i]`` channels."""

    name = "convnext"

    def __init__(self, in_channels: int, dim: int = 64, dim_mults: Sequence[int] = (1, 2, 2), mult: int = 2,
                 image_size: int | None = None):
        super().__init__()
        check_levels(dim, dim_mults)
        if image_size is not None:
            check_image_size(image_size, dim_mults, self.name)
        self.in_channels, self.factor = in_channels, down_factor(dim_mults)
        self.stem = nn.Conv2d(in_channels, dim, 7, padding=3)
        self.time = TimeEmbedding(dim)
        tdim = 4 * dim
        dims = [dim] + [dim * int(m) for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        last = len(pairs) - 1
        self.downs = nn.ModuleList(nn.ModuleList([
            ConvNeXtBlock(d_in, d_in, tdim, mult),
            ConvNeXtBlock(d_in, d_in, tdim, mult),
            space_to_depth_down(d_in, d_out) if i < last else nn.Conv2d(d_in, d_out, 3, padding=1),
        ]) for i, (d_in, d_out) in enumerate(pairs))
        self.mid = nn.ModuleList([ConvNeXtBlock(dims[-1], dims[-1], tdim, mult),
                                  ConvNeXtBlock(dims[-1], dims[-1], tdim, mult)])
        self.ups = nn.ModuleList(nn.ModuleList([
            ConvNeXtBlock(d_out + d_in, d_out, tdim, mult),
            ConvNeXtBlock(d_out + d_in, d_out, tdim, mult),
            nearest_up(d_out, d_in) if i < last else nn.Conv2d(d_out, d_in, 3, padding=1),
        ]) for i, (d_in, d_out) in enumerate(reversed(pairs)))
        self.final = ConvNeXtBlock(2 * dim, dim, tdim, mult)
        self.out = nn.Conv2d(dim, in_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_input(x, self.in_channels, self.factor, self.name)
        temb = self.embed(x, t, y)
        x = self.stem(x)
        stem = x
        skips = []
        for block1, block2, down in self.downs:
            x = block1(x, temb)
            skips.append(x)
            x = block2(x, temb)
            skips.append(x)
            x = down(x)
        for block in self.mid:
            x = block(x, temb)
        for block1, block2, up in self.ups:
            x = block1(torch.cat([x, skips.pop()], dim=1), temb)
            x = block2(torch.cat([x, skips.pop()], dim=1), temb)
            x = up(x)
        return self.out(self.final(torch.cat([x, stem], dim=1), temb))


# --- attention U-Net (Ho et al. 2020) -------------------------------------------------------
class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> 3x3 conv (+ time) -> GroupNorm -> SiLU -> dropout -> 3x3 conv (zero init)."""

    def __init__(self, dim_in: int, dim_out: int, time_dim: int, dropout: float, groups: int):
        super().__init__()
        check_groups(dim_in, groups)
        check_groups(dim_out, groups)
        self.norm1 = nn.GroupNorm(groups, dim_in)
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, padding=1)
        self.time = nn.Linear(time_dim, dim_out)
        self.norm2 = nn.GroupNorm(groups, dim_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(dim_out, dim_out, 3, padding=1))
        self.skip = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + rearrange(self.time(F.silu(temb)), "b c -> b c 1 1")
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over all pixels, residual, output projection zero-initialised."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        if heads < 1 or channels % heads:
            raise ZooError(f"model.attn_heads={heads} must divide the {channels} channels of the attention level "
                           f"(e.g. 1, 2 or 4)")
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # One copy into (three, b, heads, pixels, d) order: the rearranged view has stride h*w on d,
        # and scaled_dot_product_attention then falls back to its slow math kernel (a full score
        # tensor, softmax, bmm); contiguous q, k, v take the fused (flash) kernel, forward and backward.
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three heads d) h w -> three b heads (h w) d",
                            three=3, heads=self.heads).contiguous().unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(rearrange(out, "b heads (h w) d -> b (heads d) h w", h=h, w=w))


class Stage(nn.ModuleList):
    """Layers applied in order; residual blocks also get the time embedding."""

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, temb) if isinstance(layer, ResBlock) else layer(x)
        return x


class AttentionUNet(ClassConditional, nn.Module):
    """The DDPM U-Net: ``num_res_blocks`` residual blocks per level (one more on
    the way up), self-attention at the resolutions in ``attn_resolutions``
    (given for ``image_size``), stride-2 conv down, nearest + 3x3 conv up."""

    name = "attention"

    def __init__(self, in_channels: int, dim: int = 64, dim_mults: Sequence[int] = (1, 2, 2),
                 num_res_blocks: int = 2, attn_resolutions: Sequence[int] = (16,), attn_heads: int = 4,
                 dropout: float = 0.1, groups: int = 32, image_size: int = 32):
        super().__init__()
        check_levels(dim, dim_mults)
        check_image_size(image_size, dim_mults, self.name)
        if num_res_blocks < 1:
            raise ZooError(f"model.num_res_blocks={num_res_blocks} must be at least 1")
        resolutions = [int(image_size) // 2 ** i for i in range(len(dim_mults))]
        missing = sorted(set(int(r) for r in attn_resolutions) - set(resolutions))
        if missing:
            raise ZooError(f"model.attn_resolutions={list(attn_resolutions)}: no level at {missing} -- this U-Net's "
                           f"levels are {', '.join(f'{r}x{r}' for r in resolutions)} for data.image_size={image_size};"
                           f" pick from {resolutions} or use []")
        attn_levels = {resolutions.index(int(r)) for r in attn_resolutions}
        self.in_channels, self.factor = in_channels, down_factor(dim_mults)
        self.time = TimeEmbedding(dim, nn.SiLU)
        tdim = 4 * dim

        def res(d_in, d_out):
            return ResBlock(d_in, d_out, tdim, dropout, groups)

        def attn(ch):
            return SelfAttention(ch, attn_heads, groups)

        self.stem = nn.Conv2d(in_channels, dim, 3, padding=1)
        self.downs = nn.ModuleList()
        skip_channels, ch = [dim], dim
        for level, m in enumerate(dim_mults):
            for _ in range(num_res_blocks):
                layers = [res(ch, dim * m)] + ([attn(dim * m)] if level in attn_levels else [])
                ch = dim * m
                self.downs.append(Stage(layers))
                skip_channels.append(ch)
            if level < len(dim_mults) - 1:
                self.downs.append(Stage([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skip_channels.append(ch)
        self.mid = Stage([res(ch, ch), attn(ch), res(ch, ch)])
        self.ups = nn.ModuleList()
        for level, m in reversed(list(enumerate(dim_mults))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), dim * m)] + ([attn(dim * m)] if level in attn_levels else [])
                ch = dim * m
                if level > 0 and i == num_res_blocks:
                    layers.append(nearest_up(ch, ch))
                self.ups.append(Stage(layers))
        check_groups(ch, groups)
        self.out = nn.Sequential(nn.GroupNorm(groups, ch), nn.SiLU(),
                                 zero_init(nn.Conv2d(ch, in_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_input(x, self.in_channels, self.factor, self.name)
        temb = self.embed(x, t, y)
        x = self.stem(x)
        skips = [x]
        for stage in self.downs:
            x = stage(x, temb)
            skips.append(x)
        x = self.mid(x, temb)
        for stage in self.ups:
            x = stage(torch.cat([x, skips.pop()], dim=1), temb)
        return self.out(x)


UNETS = {"convnext": ConvNeXtUNet, "attention": AttentionUNet}

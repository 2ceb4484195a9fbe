"""Class-conditional built-in families (issue 23, section 3), called directly through the contract:
``training_loss(x, phase, labels=y)`` and ``sample(n, g, labels=y)``.

DDPM and flow matching (both U-Nets): guidance 0 is the plain conditional sampler bitwise, the null label is
the unconditional pass whatever the guidance, and guidance combines the two passes as
``out_c + w (out_c - out_u)``. Every family: same seed and labels give the same images, different
labels different ones, a few steps with labels lower the loss, and an unconditional model keeps the
parameters and state_dict keys of the checkpoints written before conditioning existed.
"""
import hashlib

import pytest
import torch

from zoo import ZooError
from zoo.contract import randn, to_unit
from zoo.registry import create_model
from zoo_plugins.flow import odeint

K = 10
DDPMS = ["ddpm", "ddpm-convnext"]
FLOWS = ["flow", "flow-convnext"]
UNET_MODELS = DDPMS + FLOWS  # a U-Net with a class embedding and a null class; sampled with `steps`
FAMILIES = UNET_MODELS + ["vae", "ae", "gan", "lsgan", "dcgan"]
SAMPLERS = ["ddpm", "ddim", "dpm++"]
COND = {"model.conditional": True, "data.num_classes": K}
# The keys a conditional run adds (an unconditional one has none of them).
ADDED = {**{name: {"net.classes.weight"} for name in UNET_MODELS},
         "vae": {"encoder_label.weight", "decoder_label.weight"},
         "ae": {f"class_density.{c}.{b}" for c in range(K) for b in ("log_weights", "means", "scale_tril", "fitted")},
         **{gan: {"generator_label.weight", "projection.weight"} for gan in ("gan", "lsgan", "dcgan")}}
# sha256 of "key:shape" lines of each tiny model's state_dict, recorded before conditioning was added
# (commit cadf55b; flow's before flow conditioned, commit 8b53302): an unconditional checkpoint written then
# still loads.
OLD_KEYS = {"ddpm": (166, "8ab1ec0a56e3bf34"), "ddpm-convnext": (214, "057e82736bfd1d5e"),
            "flow": (166, "8ab1ec0a56e3bf34"), "flow-convnext": (214, "057e82736bfd1d5e"),
            "vae": (8, "905b558c1e53529a"), "ae": (20, "ea51d3a5480b5592"), "gan": (12, "dc9c12e21236ad0e"),
            "lsgan": (12, "dc9c12e21236ad0e"), "dcgan": (28, "22a957b88e34a35b")}


def build(name, seed=0, **sets):
    torch.manual_seed(seed)
    return create_model(name, preset="tiny", **sets)


def conditional(name, seed=0, **sets):
    """A tiny conditional model; a U-Net's weights are perturbed (its zero-initialised output layers
    would make every untrained sample the same)."""
    return perturbed(build(name, seed, **COND, **sets)).eval()


def perturbed(model):
    """``model`` with its U-Net's weights perturbed (a no-op for the other families)."""
    if model.cfg.model_name in UNET_MODELS:
        with torch.no_grad():
            for p in model.net.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return model


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(model, n=8, seed=1):
    torch.manual_seed(seed)
    lo, hi = model.data_range
    return lo + (hi - lo) * torch.rand(n, *model.image_shape)


def plain_sampler(model, n, labels, sampler):
    """The conditional sampler written out: ``denoise`` with ``net(x, t, labels)``, no guidance code."""
    g = gen()
    plan = model.diffusion.plan(sampler, 3, 0.0, grid=model.sampling_options({"sampler": sampler})["grid"])
    x = randn((n, *model.image_shape), g)
    x, _ = model.diffusion.denoise(lambda x, t: model.net(x, t, labels), x, plan, g)
    return to_unit(x, model.data_range)


# --- DDPM: guidance ---------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("name", DDPMS)
def test_guidance_zero_is_the_plain_conditional_sampler_bitwise(name, sampler):
    model = conditional(name)
    y = torch.tensor([0, 3, 7, 9])
    zero = model.sample(4, gen(), labels=y, sampler=sampler, steps=3, guidance=0.0)
    assert torch.equal(zero, plain_sampler(model, 4, y, sampler))
    guided = model.sample(4, gen(), labels=y, sampler=sampler, steps=3, guidance=3.0)
    assert not torch.allclose(guided, zero, atol=1e-3)  # guidance does act


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("name", DDPMS)
def test_the_null_label_with_guidance_is_the_unconditional_pass(name, sampler):
    model = conditional(name)
    null = torch.full((4,), K)
    for w in (0.0, 3.0):
        out = model.sample(4, gen(), labels=-1, sampler=sampler, steps=3, guidance=w)
        assert torch.equal(out, plain_sampler(model, 4, null, sampler))


@pytest.mark.parametrize("name", DDPMS)
def test_guidance_is_one_batched_pass_combined_as_c_plus_w_times_c_minus_u(name, monkeypatch):
    model = conditional(name)
    y = torch.tensor([1, 4, K, 2])  # one null label: it keeps its own (unguided) output
    x, t = torch.randn(4, *model.image_shape), torch.tensor([900, 500, 300, 10])
    calls = []
    net = model.net

    def counted(x, t, labels):
        calls.append(len(x))
        return net(x, t, labels)
    out = model.guided(counted, y, 2.0)(x, t)
    assert calls == [8]  # [x, x] with [y, null] in one forward
    with torch.no_grad():
        c, u = net(x, t, y), net(x, t, torch.full_like(y, K))
    want = c + 2.0 * (c - u)
    want[2] = c[2]
    assert torch.allclose(out, want, atol=1e-5)
    calls.clear()
    model.guided(counted, y, 0.0)(x, t)
    assert calls == [4]  # guidance 0: no unconditional half at all


@pytest.mark.parametrize("name", ["ddpm", "flow"])
def test_guidance_option_defaults_and_errors(name):
    model = conditional(name)
    assert model.sampling_options({})["guidance"] == model.cfg.model.guidance == 1.0
    assert model.sampling_options({"guidance": 2.5})["guidance"] == 2.5
    with pytest.raises(ZooError, match="guidance"):
        model.sampling_options({"guidance": -1.0})
    with pytest.raises(ZooError, match="this run is unconditional, so there is nothing to guide"):
        build(name).sample(2, gen(), steps=2, guidance=2.0)
    with pytest.raises(ZooError, match="label_dropout=0"):
        conditional(name, **{"model.label_dropout": 0.0, "model.guidance": 0.0}).sample(2, gen(), steps=2,
                                                                                        guidance=1.0)


@pytest.mark.parametrize("name", ["ddpm", "flow"])
def test_label_dropout_sends_labels_to_the_null_class(name, monkeypatch):
    model = conditional(name, **{"model.label_dropout": 0.5}).train()
    seen = []
    forward = model.net.forward
    monkeypatch.setattr(model.net, "forward", lambda x, t, y=None: seen.append(y) or forward(x, t, y))
    torch.manual_seed(0)
    model.training_loss(images(model, 64), "main", labels=torch.full((64,), 3))
    y = seen[0]
    assert set(y.tolist()) == {3, K} and 16 < int((y == K).sum()) < 48


def test_ddpm_likelihood_without_labels_is_the_null_class():
    model = conditional("ddpm")
    x = torch.randint(0, 256, (2, *model.image_shape)) / 255.0 * 2 - 1
    plain = model.log_likelihood(x, timesteps=3)["nats"]
    assert torch.equal(plain, model.log_likelihood(x, timesteps=3, labels=-1)["nats"])
    assert not torch.equal(plain, model.log_likelihood(x, timesteps=3, labels=[2, 5])["nats"])


# --- flow matching: guidance -------------------------------------------------------------------
def plain_flow(model, n, labels, sampler):
    """The flow sampler written out: ``odeint`` on ``net(x, 1000 t, labels)`` (labels None: the unconditional
    network call), no guidance code."""
    x = randn((n, *model.image_shape), gen())

    def f(t, s):
        return (model.net(s[0], torch.tensor(t, dtype=torch.float32).expand(n) * 1000, labels).float(),)
    with torch.no_grad():
        (x,), _ = odeint(f, (x,), 0.0, 1.0, sampler, 3)
    return to_unit(x, model.data_range)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
@pytest.mark.parametrize("name", FLOWS)
def test_flow_guidance_zero_and_the_null_label_are_the_plain_ode_bitwise(name, sampler):
    model = conditional(name)
    y = torch.tensor([0, 3, 7, 9])
    zero = model.sample(4, gen(), labels=y, sampler=sampler, steps=3, guidance=0.0)
    assert torch.equal(zero, plain_flow(model, 4, y, sampler))
    guided = model.sample(4, gen(), labels=y, sampler=sampler, steps=3, guidance=3.0)
    assert not torch.allclose(guided, zero, atol=1e-3)  # guidance does act
    for w in (0.0, 3.0):
        out = model.sample(4, gen(), labels=-1, sampler=sampler, steps=3, guidance=w)
        assert torch.equal(out, plain_flow(model, 4, torch.full((4,), K), sampler))


@pytest.mark.parametrize("name", FLOWS)
def test_unconditional_flow_samples_are_the_plain_ode_bitwise(name):
    """An unconditional run calls its network exactly as before conditioning existed: ``net(x, 1000 t)``."""
    model = perturbed(build(name)).eval()
    assert model.num_classes is None and model.sampling_options({})["guidance"] == 0.0
    assert torch.equal(model.sample(3, gen(), sampler="heun", steps=3), plain_flow(model, 3, None, "heun"))


@pytest.mark.parametrize("name", FLOWS)
def test_flow_guidance_is_one_batched_pass_per_evaluation(name, monkeypatch):
    model = conditional(name)
    calls = []
    forward = model.net.forward
    monkeypatch.setattr(model.net, "forward", lambda x, t, y=None: calls.append(len(x)) or forward(x, t, y))
    y = torch.tensor([1, 4, K])  # one null label (-1 to sample): it keeps its own (unguided) velocity
    model.sample(3, gen(), labels=[1, 4, -1], sampler="euler", steps=3, guidance=0.0)
    assert calls == [3, 3, 3] and model.last_nfe == 3  # guidance 0: no unconditional half at all
    calls.clear()
    model.sample(3, gen(), labels=[1, 4, -1], sampler="euler", steps=3, guidance=2.0)
    assert calls == [6, 6, 6] and model.last_nfe == 3  # [x, x] with [y, null] in one forward per evaluation
    x = torch.randn(3, *model.image_shape)
    with torch.no_grad():
        out = model.field(y, 2.0)(x, 0.3)
        c, u = model.velocity(x, 0.3, y), model.velocity(x, 0.3, torch.full_like(y, K))
    want = c + 2.0 * (c - u)
    want[2] = c[2]
    assert torch.allclose(out, want, atol=1e-5)


def test_flow_likelihood_without_labels_is_the_null_class_field():
    model = conditional("flow")
    x = torch.randint(0, 256, (2, *model.image_shape)) / 255.0 * 2 - 1
    opts = {"solver": "euler", "steps": 2}
    plain = model.log_likelihood(x, **opts)
    assert plain["bound"] == "exact" and bool(torch.isfinite(plain["nats"]).all())
    assert torch.equal(plain["nats"], model.log_likelihood(x, labels=-1, **opts)["nats"])
    assert not torch.equal(plain["nats"], model.log_likelihood(x, labels=[2, 5], **opts)["nats"])
    blind = conditional("flow", **{"model.label_dropout": 0.0, "model.guidance": 0.0})
    with pytest.raises(ZooError, match="label_dropout=0, so it has no unconditional density"):
        blind.log_likelihood(x, **opts)
    assert bool(torch.isfinite(blind.log_likelihood(x, labels=[2, 5], **opts)["nats"]).all())


# --- every family -----------------------------------------------------------------------------
def labelled_images(model, n=200):
    """Images whose brightness depends on their label, so each class has its own codes."""
    torch.manual_seed(2)
    y = torch.arange(n) % K
    return (y.view(-1, 1, 1, 1) / (K - 1) * 1.6 - 0.8) + 0.1 * torch.randn(n, *model.image_shape), y


def fitted(name):
    """A conditional model ready to sample; the AE's class densities fitted to ``labelled_images``."""
    model = conditional(name)
    if name == "ae":
        x, y = labelled_images(model)
        model.after_training(iter([(x[:100], y[:100]), (x[100:], y[100:])]))
    return model


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_and_labels_same_images_and_labels_change_them(name):
    model = fitted(name)
    opts = {"steps": 3} if name in UNET_MODELS else {}
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    a = model.sample(6, gen(), labels=y, **opts)
    assert a.shape == (6, *model.image_shape) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, model.sample(6, gen(), labels=y, **opts))
    assert torch.equal(model.sample(6, gen(), **opts), model.sample(6, gen(), labels=torch.arange(6), **opts))
    other = model.sample(6, gen(), labels=(y + 5) % K, **opts)
    assert bool(((a - other).flatten(1).abs().amax(1) > 0).all())  # every image changes with its label
    with pytest.raises(ZooError, match="out of range"):
        model.sample(2, gen(), labels=K, **opts)


def train_steps(model, x, y, steps, phases):
    optimizers = model.configure_optimizers()
    for _ in range(steps):
        for phase in phases:
            optimizers[phase].zero_grad()
            model.training_loss(x, phase, labels=y)["loss"].backward()
            optimizers[phase].step()


def seeded_loss(model, x, y, phase):
    torch.manual_seed(123)  # the same timesteps, noise and label dropout before and after
    return float(model.training_loss(x, phase, labels=y)["loss"].detach())


@pytest.mark.parametrize("name", DDPMS + ["vae", "ae"])
def test_a_few_steps_with_labels_lower_the_loss(name):
    model = build(name, **COND).train()
    x, y = images(model), torch.arange(8) % K
    before = seeded_loss(model, x, y, "main")
    train_steps(model, x, y, 15 if name in DDPMS else 50, ["main"])
    assert seeded_loss(model, x, y, "main") < 0.9 * before


@pytest.mark.parametrize("name", FLOWS)
def test_a_few_steps_with_labels_lower_a_flow_loss(name):
    """On images whose brightness follows their label (on uniform noise images the velocity target x1 - x0
    is mostly unpredictable noise, and 15 steps leave the loss at its floor)."""
    model = build(name, **COND).train()
    x, y = labelled_images(model, 8)
    before = seeded_loss(model, x, y, "main")
    train_steps(model, x, y, 15, ["main"])
    assert seeded_loss(model, x, y, "main") < 0.9 * before


@pytest.mark.parametrize("name", ["gan", "lsgan", "dcgan"])
def test_gan_halves_learn_with_labels_including_the_label_weights(name):
    """D steps lower D's loss on a fixed batch (with the projection term); G steps against that D lower
    G's loss; both label embeddings get gradients."""
    model = build(name, **COND).train()
    x, y = images(model), torch.arange(8) % K
    before = seeded_loss(model, x, y, "d")
    train_steps(model, x, y, 15, ["d"])
    assert seeded_loss(model, x, y, "d") < before
    assert float(model.projection.weight.grad.abs().sum()) > 0
    before = seeded_loss(model, x, y, "g")
    train_steps(model, x, y, 15, ["g"])
    assert seeded_loss(model, x, y, "g") < before
    assert float(model.generator_label.weight.grad.abs().sum()) > 0


def test_projection_discriminator_adds_the_label_inner_product():
    model = build("gan", **COND)
    x, y = images(model, 4), torch.tensor([0, 1, 2, 3])
    phi = model.discriminator[:-2](x)
    want = model.discriminator[-2:](phi) + (model.projection.weight[y] * phi).sum(1)
    assert torch.allclose(model.score(x, y), want, atol=1e-6)
    assert torch.equal(model.score(x), model.discriminator(x))


def test_ae_fits_one_density_per_class_into_saved_buffers():
    model = fitted("ae")  # model.latent_density: gaussian, so each class density is its codes' mean and covariance
    x, y = labelled_images(model)
    with torch.no_grad():
        codes = model.encode(x)
    for c in range(K):
        assert bool(model.class_density[c].fitted)
        assert torch.allclose(model.class_density[c].means[0], codes[y == c].mean(0), atol=1e-4)
    state = model.state_dict()
    assert torch.equal(state["class_density.3.means"], model.class_density[3].means)
    with pytest.raises(ZooError, match="pairs"):
        conditional("ae").after_training(iter([x]))


def test_ae_class_with_too_few_images_gets_one_gaussian_at_its_mean_and_a_warning():
    model = conditional("ae")
    x, y = labelled_images(model)
    keep = (y != 4) | (torch.arange(len(y)) == 4)  # class 4 keeps one image; the rest keep ~20 each
    with pytest.warns(UserWarning, match="class 4 has 1 training images"):
        model.after_training(iter([(x[keep], y[keep])]))
    with torch.no_grad():
        code = model.encode(x[4:5])[0]
    d = model.class_density[4]
    assert torch.allclose(d.means[0], code, atol=1e-5) and d.log_weights[1:].isinf().all()
    assert torch.allclose(d.scale_tril[0], model.class_density[4].scale_tril[-1])  # the shared covariance
    draws = model.sample(4, gen(), labels=4)
    assert draws.shape == (4, *model.image_shape) and torch.isfinite(draws).all()


def test_vae_reconstructs_without_labels_and_bounds_the_marginal_likelihood():
    model = conditional("vae")
    x = torch.randint(0, 256, (3, *model.image_shape)) / 255.0
    assert model.reconstruct(x).shape == x.shape
    marginal = model.log_likelihood(x, samples=2)
    given = model.log_likelihood(x, samples=2, labels=[0, 1, 2])
    assert marginal["bound"] == given["bound"] == "iwae-2"
    assert bool(torch.isfinite(marginal["nats"]).all()) and bool((marginal["nats"] < 0).all())


# --- unconditional runs are unchanged ---------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_unconditional_state_dict_keys_are_those_of_old_checkpoints(name):
    plain, cond = build(name).state_dict(), build(name, **COND).state_dict()
    lines = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in plain.items())
    assert (len(plain), hashlib.sha256(lines.encode()).hexdigest()[:16]) == OLD_KEYS[name]
    assert set(cond) - set(plain) == ADDED[name] and set(plain) <= set(cond)
    # the conditional model is built as the unconditional one plus its label weights, same seed same init
    assert all(torch.equal(plain[k], cond[k]) for k in plain)


@pytest.mark.parametrize("name", FAMILIES)
def test_labels_on_an_unconditional_model_are_one_line_errors(name):
    model = build(name)
    with pytest.raises(ZooError, match="not conditional"):
        model.training_loss(images(model), model.phases()[0][0], labels=torch.zeros(8, dtype=torch.int64))
    with pytest.raises(ZooError, match="without labels"):
        model.sample(2, gen(), labels=3)
    with pytest.raises(ZooError, match="needs labels"):
        build(name, **COND).training_loss(images(model), model.phases()[0][0])

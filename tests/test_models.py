"""The built-in model plugins: ae, vae, gan, lsgan, dcgan.

Every model: the reusable contract check (zoo.testing), a short real training run
through the shared trainer on real MNIST (tiny preset), samples of the trained and
reloaded model, and bitwise resume. Family-specific behaviour: the AE's fitted
latent density, the VAE's KL and ELBO, the GAN losses and that GAN training moves
the generator.
"""
import json
import math
from pathlib import Path

import pytest
import torch

import zoo
from conftest import MNIST_SETS
from zoo import ZooError, checkpoint, hookimpl
from zoo.data import load_images, to_model_input
from zoo.registry import create_model, model_config, registry
from zoo.testing import check_model_contract
from zoo_plugins.ae import Autoencoder, fit_gmm
from zoo_plugins.gan import GAN, discriminator_loss, generator_loss

MODELS = ["ae", "vae", "gan", "lsgan", "dcgan"]
GANS = ["gan", "lsgan", "dcgan"]
STEPS = 200  # tiny preset length; logged every step so first/last 20 are 20 steps each


def metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def mean(rows, key):
    return sum(r[key] for r in rows) / len(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``trained(name)``: the run dir of a tiny-preset training run of ``name``, trained once per module."""
    runs = {}

    def get(name):
        if name not in runs:
            out = tmp_path_factory.mktemp(name) / "run"
            result = zoo.train(name, preset="tiny", out=out, quiet=True,
                               sets=MNIST_SETS + [f"trainer.max_steps={STEPS}", "trainer.log_every=1"])
            assert result.status == "finished" and result.step == STEPS
            runs[name] = out
        return runs[name]
    return get


def untrained(name, cfg):
    """The model exactly as the trainer initialises it (seeded with cfg.seed), in eval mode."""
    torch.manual_seed(int(cfg.seed))
    return create_model(name, cfg).eval()


# --- every model ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_contract(name):
    check_model_contract(name, sets=MNIST_SETS)


@pytest.mark.parametrize("name, sets", [
    ("ae", ["model.arch=conv", "model.latent_density=gmm"]),
    ("vae", ["model.arch=conv", "model.likelihood=gaussian", "model.beta=4"]),
    ("gan", ["model.noise=normal", "model.d_steps=2", "model.label_smoothing=0.1"]),
    ("dcgan", ["model.loss=ls", "data.image_size=32"]),
])
def test_contract_of_variants(name, sets):
    model = check_model_contract(name, sets=MNIST_SETS + sets)
    if "data.image_size=32" in sets:
        assert model.sample(2, torch.Generator().manual_seed(0)).shape == (2, 1, 32, 32)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_trained_run_loads_and_samples(name, trained):
    out = trained(name)
    assert (out / "samples.png").is_file()
    model = zoo.load_run(out)
    images = model.sample(8, torch.Generator().manual_seed(3))
    assert images.shape == (8, 1, 28, 28) and images.dtype == torch.float32
    assert 0 <= float(images.min()) and float(images.max()) <= 1
    assert torch.equal(images, model.sample(8, torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("name", MODELS)
def test_resume_gives_the_same_weights(name, tmp_path):
    """N steps + resume to 2N ends bitwise equal to 2N straight (EMA on; the AE refits its density)."""
    sets = MNIST_SETS + ["ema.enabled=true", "trainer.sample_every=0", "trainer.log_every=3"]
    zoo.train(name, preset="tiny", out=tmp_path / "straight", sets=sets + ["trainer.max_steps=6"])
    zoo.train(name, preset="tiny", out=tmp_path / "split", sets=sets + ["trainer.max_steps=3"])
    zoo.train(out=tmp_path / "split", resume=True, sets=["trainer.max_steps=6"])
    a = checkpoint.load(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = checkpoint.load(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6
    for part in ("model", "ema"):
        state_a, state_b = (a[part], b[part]) if part == "model" else (a[part]["model"], b[part]["model"])
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), (part, key)
    def logged(run):
        return [{k: v for k, v in row.items() if k not in ("time", "images_per_s")} for row in metrics(run)]
    assert logged(tmp_path / "straight") == logged(tmp_path / "split")


@pytest.mark.parametrize("name, key, bad", [
    ("ae", "model.arch", "resnet"),
    ("ae", "model.latent_density", "flow"),
    ("vae", "model.likelihood", "poisson"),
    ("gan", "model.loss", "hinge"),
    ("gan", "model.noise", "cauchy"),
    ("dcgan", "model.label_smoothing", "1.5"),
    ("dcgan", "data.image_size", "30"),
])
def test_bad_settings_are_one_line_errors(name, key, bad):
    with pytest.raises(ZooError) as e:  # the declarations reject most while resolving; the model the rest
        create_model(name, model_config(name, preset="tiny", sets=MNIST_SETS + [f"{key}={bad}"]))
    message = str(e.value)
    assert "\n" not in message and bad in message and key.split(".")[-1] in message


# --- autoencoder ------------------------------------------------------------------------------
@pytest.mark.slow
def test_ae_learns_and_fits_its_latent_density(trained):
    out = trained("ae")
    rows = metrics(out)
    assert len(rows) == STEPS
    assert mean(rows[-20:], "loss") < 0.8 * mean(rows[:20], "loss")
    assert all(math.isclose(r["loss"], r["mse"] * 784, rel_tol=1e-3) for r in rows)  # summed vs per pixel

    model = zoo.load_run(out)
    assert bool(model.density.fitted)
    # the Gaussian is the maximum-likelihood fit to the codes of the training images
    cfg = model.cfg
    x = to_model_input(load_images(cfg.data, "train"), 28, 1, model.data_range)
    with torch.no_grad():
        codes = model.encode(x).double()
    assert torch.allclose(model.density.means[0].double(), codes.mean(0), atol=1e-4)
    cov = (model.density.scale_tril[0] @ model.density.scale_tril[0].T).double()
    assert torch.allclose(cov, torch.cov(codes.T, correction=0), rtol=1e-3, atol=1e-4)

    # decoded samples from the fitted density look like MNIST on average (mean intensity ~ 0.13),
    # unlike those from the N(0, I) placeholder that was there before the fit
    images = model.sample(256, torch.Generator().manual_seed(0))
    real_mean = float(to_model_input(load_images(cfg.data, "holdout"), 28, 1, (0.0, 1.0)).mean())
    assert abs(float(images.mean()) - real_mean) < 0.06, (float(images.mean()), real_mean)


def test_ae_samples_before_fitting_come_from_a_standard_normal():
    cfg = model_config("ae", preset="tiny", sets=MNIST_SETS)
    model = untrained("ae", cfg)
    assert not bool(model.density.fitted)
    codes = model.density.sample(4000, torch.Generator().manual_seed(0))
    assert codes.shape == (4000, 3)
    assert codes.mean(0).abs().max() < 0.1 and (codes.std(0) - 1).abs().max() < 0.1


def test_fit_gmm_recovers_a_known_mixture():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 2, generator=g) * 0.3 + torch.tensor([4.0, 0.0])
    b = torch.randn(1000, 2, generator=g) * torch.tensor([1.0, 0.2]) + torch.tensor([-4.0, 2.0])
    log_w, means, scale_tril = fit_gmm(torch.cat([a, b]), 2, torch.Generator().manual_seed(1))
    order = means[:, 0].argsort(descending=True)  # component of a first
    log_w, means, scale_tril = log_w[order], means[order], scale_tril[order]
    assert torch.allclose(log_w.exp(), torch.tensor([0.75, 0.25], dtype=torch.float64), atol=0.01)
    assert torch.allclose(means, torch.tensor([[4.0, 0.0], [-4.0, 2.0]], dtype=torch.float64), atol=0.1)
    stds = torch.linalg.matrix_norm(scale_tril, dim=(-2, -1), ord=2)
    assert torch.allclose(stds, torch.tensor([0.3, 1.0], dtype=torch.float64), atol=0.05)


# --- VAE --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_vae_kl_is_nonnegative_and_the_elbo_improves(trained):
    rows = metrics(trained("vae"))
    assert all(r["kl"] >= 0 for r in rows)
    assert all(math.isclose(r["elbo"], -(r["rec"] + r["kl"]), rel_tol=1e-4) for r in rows)
    assert mean(rows[-20:], "loss") < 0.8 * mean(rows[:20], "loss")
    assert mean(rows[-20:], "elbo") > mean(rows[:20], "elbo") + 50  # nats per image
    assert mean(rows[-20:], "kl") > 1  # the code is used: no posterior collapse


def test_vae_beta_weights_only_the_kl():
    cfg1 = model_config("vae", preset="tiny", sets=MNIST_SETS)
    cfg4 = model_config("vae", preset="tiny", sets=MNIST_SETS + ["model.beta=4"])
    m1, m4 = untrained("vae", cfg1).train(), untrained("vae", cfg4).train()
    x = to_model_input(load_images(cfg1.data, "train")[:32], 28, 1, (0.0, 1.0))
    torch.manual_seed(0)
    o1 = m1.training_loss(x, "main")
    torch.manual_seed(0)
    o4 = m4.training_loss(x, "main")
    assert torch.allclose(o1["elbo"], o4["elbo"]) and torch.allclose(o1["loss"], -o1["elbo"])
    assert torch.allclose(o4["loss"], o4["rec"] + 4 * o4["kl"])


# --- GANs -------------------------------------------------------------------------------------
def test_gan_losses_follow_their_definitions():
    real, fake = torch.full((5,), 1.0), torch.zeros(5)
    # least squares (Mao et al.): D 1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2, G 1/2 (D(G(z)) - 1)^2
    assert float(discriminator_loss("ls", real, fake)) == 0.0
    assert float(generator_loss("ls", fake)) == 0.5
    assert math.isclose(float(discriminator_loss("ls", real, fake, smoothing=0.1)), 0.5 * 0.1 ** 2, rel_tol=1e-5)
    # BCE on logits: a coin-flip discriminator pays log 2 per term; G's loss is the non-saturating -log D(G(z))
    assert math.isclose(float(discriminator_loss("bce", fake, fake)), 2 * math.log(2), rel_tol=1e-6)
    assert math.isclose(float(generator_loss("bce", torch.full((3,), -2.0))), math.log1p(math.exp(2.0)),
                        rel_tol=1e-6)


def test_lsgan_is_the_gan_with_least_squares_losses():
    entry = registry().model("lsgan")
    assert entry.cls is GAN and entry.family == "gan" and "least-squares" in entry.description
    assert model_config("lsgan").model.loss == "ls" and model_config("gan").model.loss == "bce"
    model = create_model("gan", model_config("gan", preset="tiny", sets=MNIST_SETS))
    assert [(p, r) for p, r in model.phases()] == [("d", 1), ("g", 1)]
    model = create_model("dcgan", model_config("dcgan", preset="tiny", sets=MNIST_SETS + ["model.d_steps=3"]))
    assert [(p, r) for p, r in model.phases()] == [("d", 3), ("g", 1)]


@pytest.mark.slow
@pytest.mark.parametrize("name", GANS)
def test_gan_training_stays_finite_and_moves_the_generator(name, trained):
    out = trained(name)
    rows = metrics(out)
    assert len(rows) == STEPS
    for key in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert all(math.isfinite(r[key]) for r in rows), key
    model = zoo.load_run(out)
    before = untrained(name, model.cfg)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731 - the same fixed noise for both
    new, old = model.sample(64, g()), before.sample(64, g())
    assert (new - old).abs().mean() > 0.2
    # an untrained generator paints mid-grey (tanh(~0) -> 0.5); trained, the background goes dark like
    # MNIST's (mean intensity 0.13; about 0.15-0.2 after these 200 steps)
    assert float(new.mean()) < float(old.mean()) - 0.2


# --- the contract check catches broken plugins ------------------------------------------------
class GlobalRNGSampler(Autoencoder):
    description = "broken: samples with torch's global RNG"

    @torch.no_grad()
    def sample(self, n, generator, **options):
        return self.decode(torch.randn(n, int(self.cfg.model.latent))).add(1).div(2)


class PythonSideDensity(Autoencoder):
    description = "broken: keeps its fitted density in a plain attribute"

    def after_training(self, batches):
        self.shift = torch.cat([self.encode(x) for x in batches]).mean(0)

    @torch.no_grad()
    def sample(self, n, generator, **options):
        if options:
            raise ZooError("no options")
        z = self.density.sample(n, generator) + getattr(self, "shift", 0.0)
        return self.decode(z).add(1).div(2).clamp(0, 1)


class BrokenPlugin:
    @hookimpl
    def zoo_register_models(self, register):
        register(GlobalRNGSampler, name="broken-rng")
        register(PythonSideDensity, name="broken-state")


@pytest.fixture
def broken_models():
    registry().add_plugin(BrokenPlugin(), "broken")
    yield
    registry(reload=True)


@pytest.mark.parametrize("name, problem", [("broken-rng", "global RNG"),
                                           ("broken-state", "outside the state dict")])
def test_contract_check_catches_broken_models(broken_models, name, problem):
    with pytest.raises(AssertionError, match=problem):
        check_model_contract(name, sets=MNIST_SETS)

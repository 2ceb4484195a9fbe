"""Likelihood in bits/dim (`zoo eval --nll`): the contract, the harness's arithmetic and dequantisation,
the VAE's ELBO and importance-weighted bounds, and the CLI on real MNIST (CPU)."""
import json
import math
import os
import sys

import pytest
import torch
from click.testing import CliRunner

import zoo
from conftest import MNIST_SETS
from helpers import zoo_cli
from plugin_env import toy_dist
from zoo import ZooError, ZooModel
from zoo.cli import main
from zoo.config import Config
from zoo.contract import has_log_likelihood, uniform_dequantize
from zoo.likelihood import evaluate_likelihood
from zoo.registry import model_config, create_model, registry

DATA = {"name": "mnist", "split": "test", "holdout": 1000, "image_size": 28, "channels": 1, "resize": "pad"}


class Uniform(ZooModel):
    """p(x) uniform over the 256 levels of every pixel -- exactly (discrete) or as a density uniform on the
    model's range, dequantised (continuous): both must score exactly 8 bits/dim."""

    def __init__(self, cfg, kind="discrete", data_range=(-1.0, 1.0)):
        super().__init__(cfg)
        self.kind, self.data_range = kind, data_range
        self.seen = []

    def log_likelihood(self, x, generator=None, **options):
        self.seen.append(x)
        d = x[0].numel()
        if self.kind == "discrete":
            return {"nats": torch.full((len(x),), -d * math.log(256), dtype=torch.float64), "bound": "exact"}
        lo, hi = self.data_range
        v, log_jacobian = uniform_dequantize(x, self.data_range, generator)
        assert bool(((v >= lo) & (v < hi)).all())
        log_density = torch.full((len(x),), -d * math.log(hi - lo), dtype=torch.float64)   # uniform on [lo, hi)
        return {"nats": log_density + log_jacobian, "bound": "exact"}


def uniform(kind, data_range, image_size=28):
    return Uniform(Config({"model_name": "uniform", "data": {**DATA, "image_size": image_size}}), kind, data_range)


@pytest.mark.parametrize("kind, data_range", [("discrete", (-1.0, 1.0)), ("continuous", (-1.0, 1.0)),
                                              ("continuous", (0.0, 1.0))])
def test_uniform_model_scores_exactly_8_bits_per_dim(kind, data_range, mnist_root):
    model = uniform(kind, data_range)
    r = evaluate_likelihood(model, n=300, batch_size=128)
    assert r["bits_per_dim"] == pytest.approx(8.0, abs=1e-9)
    assert r["bits_per_dim_bound"] == "exact" and r["nll_n"] == 300 and r["nll_dims"] == 784
    assert r["nll_seconds"] >= 0 and "held-out" in r["nll_images"] and r["warnings"] == []
    # the harness feeds the batch exactly as training does: model range, exact k/255 levels
    x = torch.cat(model.seen)
    lo, hi = data_range
    k = (x - lo) / (hi - lo) * 255
    assert x.shape == (300, 1, 28, 28) and torch.allclose(k, k.round(), atol=1e-4)


def test_padded_model_divides_by_the_native_dimension(mnist_root):
    """A model that pads 28 -> 32 sees 1024 pixels; bits/dim still counts the dataset's 784."""
    model = uniform("discrete", (-1.0, 1.0), image_size=32)
    r = evaluate_likelihood(model, n=10)
    assert model.seen[0].shape[-1] == 32 and r["nll_dims"] == 784
    assert r["bits_per_dim"] == pytest.approx(8.0 * 1024 / 784)


def test_a_run_without_held_out_images_says_which_images_it_used(mnist_root):
    model = Uniform(Config({"model_name": "uniform", "data": {**DATA, "holdout": 0, "limit": 20}}))
    with pytest.warns(UserWarning, match="likelihood measured on the training images"):
        r = evaluate_likelihood(model)
    assert r["nll_n"] == 20 and r["nll_images"] == "mnist test split, first 20 (the training images)"
    assert len(r["warnings"]) == 1 and "data.holdout=N" in r["warnings"][0]


def test_resized_runs_and_non_8bit_inputs_are_refused(mnist_root):
    with pytest.raises(ZooError, match="resizes 28x28 images to 16x16"):
        evaluate_likelihood(uniform("discrete", (-1.0, 1.0), image_size=16), n=10)
    with pytest.raises(ZooError, match="needs 8-bit images"):
        uniform_dequantize(torch.full((2, 1, 28, 28), 0.1234), (0.0, 1.0), torch.Generator())


def test_models_without_a_density_get_none():
    reg = registry()
    assert not any(has_log_likelihood(reg.models[m].cls) for m in ("ae", "gan", "dcgan"))
    assert has_log_likelihood(reg.models["vae"].cls)


def test_a_broken_answer_is_one_clear_error(mnist_root):
    model = uniform("discrete", (-1.0, 1.0))
    model.log_likelihood = lambda x, generator=None: {"nats": torch.zeros(3), "bound": "exact"}
    with pytest.raises(ZooError, match=r"must return 'nats' as a \(10,\) tensor"):
        evaluate_likelihood(model, n=10)


# --- the VAE ------------------------------------------------------------------------------------------
def test_continuous_bernoulli_is_a_normalised_density():
    """The decoder density the VAE is evaluated with integrates to 1 on [0, 1] for any logit, and matches
    torch's ContinuousBernoulli where torch is accurate (it clamps beyond |logit| ~ 35)."""
    from zoo_plugins.vae import continuous_bernoulli_log_prob
    y = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    for logit in (-200.0, -30.0, -2.0, -1e-6, 0.0, 0.3, 7.0, 60.0):
        density = continuous_bernoulli_log_prob(torch.full_like(y, logit), y).exp()
        assert torch.trapezoid(density, y).item() == pytest.approx(1.0, rel=1e-6), logit
    logits = torch.linspace(-20, 20, 41, dtype=torch.float64)
    ours = continuous_bernoulli_log_prob(logits, torch.full_like(logits, 0.3))
    theirs = torch.distributions.ContinuousBernoulli(logits=logits).log_prob(torch.full_like(logits, 0.3))
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.fixture(scope="module")
def vaes(tmp_path_factory, mnist_root):
    """A tiny VAE trained for its preset's 200 steps, and the same architecture untrained."""
    run = tmp_path_factory.mktemp("vae") / "run"
    zoo.train("vae", preset="tiny", out=run, sets=MNIST_SETS)
    torch.manual_seed(0)
    untrained = create_model("vae", model_config("vae", preset="tiny", sets=MNIST_SETS)).eval()
    return run, zoo.load_run(run), untrained


@pytest.mark.slow
def test_vae_iwae_bound_is_at_least_the_elbo_and_tightens_with_k(vaes):
    _, vae, _ = vaes
    r1 = evaluate_likelihood(vae, n=200, options={"samples": 1})
    r16 = evaluate_likelihood(vae, n=200, options={"samples": 16})
    assert r1["bits_per_dim_bound"] == "elbo" and set(r1["bits_per_dim_bounds"]) == {"elbo"}
    assert r16["bits_per_dim_bound"] == "iwae-16" and set(r16["bits_per_dim_bounds"]) == {"iwae-16", "elbo"}
    # bits/dim is a NEGATIVE log-likelihood: a higher bound on log p is a lower number
    assert r16["bits_per_dim"] < r16["bits_per_dim_bounds"]["elbo"]          # same draws: Jensen
    assert r16["bits_per_dim"] < r1["bits_per_dim"]                          # K=16 beats a 1-sample ELBO
    # per image too, from the same draws
    x = torch.rand(8, 1, 28, 28).mul(255).round().div(255)
    out = vae.log_likelihood(x, torch.Generator().manual_seed(0), samples=16)
    assert bool((out["nats"] >= out["also"]["elbo"] - 1e-9).all()) and bool((out["nats"] <= 0).all())


@pytest.mark.slow
def test_vae_bound_is_finite_and_training_improves_it(vaes):
    _, trained, untrained = vaes
    good = evaluate_likelihood(trained, n=200)
    bad = evaluate_likelihood(untrained, n=200)
    for r in (good, bad):
        assert math.isfinite(r["bits_per_dim"]) and 0 < r["bits_per_dim"] < 20 and r["bits_per_dim_bound"] == "iwae-64"
    assert good["bits_per_dim"] < bad["bits_per_dim"] - 0.5, (good["bits_per_dim"], bad["bits_per_dim"])


@pytest.mark.slow
def test_same_seed_same_bound(vaes):
    _, vae, _ = vaes
    a, b = (evaluate_likelihood(vae, n=50, seed=3, options={"samples": 4}) for _ in range(2))
    assert a["bits_per_dim"] == b["bits_per_dim"]


# --- the CLI ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_nll_reports_bits_per_dim_n_and_time(vaes):
    run, _, _ = vaes
    r = zoo_cli("eval", run, "--nll", "--nll-n", 100, "--nll-option", "samples=8", "--metrics", "none", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["bits_per_dim_bound"] == "iwae-8" and 0 < out["bits_per_dim"] < out["bits_per_dim_bounds"]["elbo"]
    assert out["nll_n"] == 100 and out["nll_seconds"] > 0 and out["fid"] is None
    assert out["nll_options"] == {"samples": 8}
    assert json.loads((run / "eval.json").read_text())["bits_per_dim"] == out["bits_per_dim"]
    r = zoo_cli("eval", run, "--nll", "--nll-n", 50, "--nll-option", "samples=2", "--metrics", "none")
    assert r.returncode == 0, r.stderr
    row = [line for line in r.stdout.splitlines() if line.startswith("bits/dim")]
    assert len(row) == 1 and "(iwae-2 bound; elbo " in row[0] and "on 50 images in" in row[0], r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("args, needle", [
    (["--nll", "--nll-option", "sample=8"], "has no likelihood option 'sample' (did you mean 'samples'?)"),
    (["--nll", "--nll-option", "samples=0"], "samples"),
    (["--nll-option", "samples=8"], "add --nll"),
])
def test_cli_bad_likelihood_options_are_one_line_errors_before_any_work(vaes, args, needle):
    run, _, _ = vaes
    (run / "eval.json").unlink(missing_ok=True)
    r = CliRunner().invoke(main, ["eval", str(run), *args])
    assert r.exit_code == 2 and "Traceback" not in r.output and isinstance(r.exception, SystemExit), r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.output
    assert not (run / "eval.json").exists()


@pytest.mark.slow
def test_cli_bad_likelihood_option_from_the_shell(vaes):
    run, _, _ = vaes
    r = zoo_cli("eval", run, "--nll", "--nll-option", "sample=8")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == ["error: model 'vae' has no likelihood option 'sample' (did you mean "
                                             "'samples'?) (its options: samples)"]


@pytest.mark.slow
def test_cli_nll_for_a_model_without_a_density_is_a_dash(tmp_path, monkeypatch):
    site = toy_dist(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    registry(reload=True)
    try:
        run = tmp_path / "toy"
        zoo.train("toy", out=run, sets=MNIST_SETS + ["trainer.max_steps=2"])
    finally:
        sys.modules.pop("toyzoo", None)
        registry(reload=True)
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    r = zoo_cli("eval", run, "--nll", "--metrics", "none", env=env)
    assert r.returncode == 0, r.stderr
    assert "bits/dim   — (model 'toy' defines no likelihood" in r.stdout, r.stdout
    saved = json.loads((run / "eval.json").read_text())
    assert saved["bits_per_dim"] is None and saved["bits_per_dim_bound"] is None and saved["nll_n"] is None
    r = CliRunner().invoke(main, ["eval", "--images", str(run / "samples.png"), "--nll"])
    assert r.exit_code == 2 and r.output.strip().splitlines() == [
        "error: --nll needs a model to ask for log p(x): use `zoo eval RUN --nll`, not --images"], r.output

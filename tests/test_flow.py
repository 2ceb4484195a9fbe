"""Flow matching (plugins/flow.py): the ODE solvers' orders and the likelihood against the closed-form velocity
field of Gaussian data, Hutchinson's divergence, the OT coupling, sampling options and NFE, determinism, the
contract, bitwise resume and `zoo eval --nll` on a real tiny run, and a conditional run from the CLI (the
conditioning itself: tests/test_conditional_models.py)."""
import itertools
import json
import math

import numpy as np
import pytest
import torch

import zoo
from click.testing import CliRunner
from conftest import MNIST_SETS
from helpers import zoo_cli
from zoo import ZooError, checkpoint
from zoo.data import to_uint8
from zoo.cli import main
from zoo.registry import create_model, model_config, registry
from zoo.testing import check_model_contract
from zoo_plugins.flow import (FlowMatching, divergence, divergence_probes, ode_log_likelihood, odeint, ot_pairing,
                              sample_time)

# Gaussian data x1 ~ N(MU, diag(S^2)), shaped as 1x2x2 images. With x0 ~ N(0, I) and x_t = (1 - t) x0 + t x1,
# x_t ~ N(t MU, sigma_t^2), sigma_t^2 = (1 - t)^2 + t^2 S^2, and the optimal (marginal) velocity
# E[x1 - x0 | x_t = x] = MU + (t S^2 - (1 - t)) / sigma_t^2 (x - t MU): the flow map is x_t = t MU + sigma_t x0,
# so the exact solution from x0 is x(1) = MU + S x0, and the divergence is sum (t S^2 - (1 - t)) / sigma_t^2.
MU = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64).view(1, 1, 2, 2)
S = torch.tensor([0.3, 0.8, 1.5, 3.0], dtype=torch.float64).view(1, 1, 2, 2)


def gaussian_velocity(x, t):
    t = float(t)
    return MU + (t * S ** 2 - (1 - t)) / ((1 - t) ** 2 + t ** 2 * S ** 2) * (x - t * MU)


def gaussian_log_density(x):
    return torch.distributions.Normal(MU, S).log_prob(x).flatten(1).sum(1)


def slope(steps, errors):
    """Least-squares slope of log(error) against log(h), h = 1 / steps."""
    return float(np.polyfit(np.log(1.0 / np.asarray(steps)), np.log(np.asarray(errors)), 1)[0])


# --- the solvers on the closed-form field --------------------------------------------------------------
@pytest.mark.parametrize("method, order", [("euler", 1), ("heun", 2)])
def test_fixed_step_solvers_converge_at_their_order_on_the_exact_gaussian_field(method, order):
    """Error at t = 1 against the exact x(1) = MU + S x0, for h = 1/8 .. 1/64 in float64 (round-off ~1e-15, far
    below the smallest error). The fitted slope is the order; +-0.15 leaves
    room for the higher-order terms at the coarsest step and is far from the other order (1 vs 2)."""
    x0 = torch.randn(256, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = MU + S * x0
    steps = [8, 16, 32, 64]
    errors = []
    for k in steps:
        (x1,), nfe = odeint(lambda t, s: (gaussian_velocity(s[0], t),), (x0,), 0.0, 1.0, method, k)
        assert nfe == k * (1 if method == "euler" else 2)
        errors.append(float((x1 - exact).abs().max()))
    assert slope(steps, errors) == pytest.approx(order, abs=0.15), errors


def test_midpoint_is_second_order_on_a_nonlinear_ode():
    """dx/dt = x^2, x(1) = x0 / (1 - x0): on the Gaussian field above the midpoint rule happens to lose its
    h^2 error term (slope 3.0 measured), so its order is checked where the h^2 term is there."""
    x0 = torch.linspace(-1.0, 0.5, 16, dtype=torch.float64)
    steps = [8, 16, 32, 64]
    errors = [float((odeint(lambda t, s: (s[0] ** 2,), (x0,), 0.0, 1.0, "midpoint", k)[0][0] - x0 / (1 - x0))
                    .abs().max()) for k in steps]
    assert slope(steps, errors) == pytest.approx(2, abs=0.15), errors


def test_dopri5_meets_its_tolerance_and_counts_its_evaluations():
    x0 = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = MU + S * x0
    calls = []

    def f(t, s):
        calls.append(t)
        return (gaussian_velocity(s[0], t),)
    nfes = {}
    for tol in (1e-4, 1e-8):
        calls.clear()
        (x1,), nfes[tol] = odeint(f, (x0,), 0.0, 1.0, "dopri5", rtol=tol, atol=tol)
        assert nfes[tol] == len(calls) and (nfes[tol] - 1) % 6 == 0   # FSAL: 1 + 6 per attempted step
        assert float((x1 - exact).abs().max()) < 100 * tol
    assert nfes[1e-8] > nfes[1e-4]   # tighter tolerances, more evaluations
    (back,), _ = odeint(f, (exact,), 1.0, 0.0, "dopri5", rtol=1e-8, atol=1e-8)   # and backwards in time
    assert torch.allclose(back, x0, atol=1e-6)


# --- the likelihood ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["exact", "hutchinson"])
def test_likelihood_of_the_exact_field_is_the_gaussian_density(mode):
    """log p1(x) from the ODE (dopri5, rtol = atol = 1e-9, float64) equals log N(x; MU, S^2) to 1e-6 nats per
    point: the solver's error is ~1e-8 here. (The field's Jacobian is diagonal, so Hutchinson with Rademacher
    probes is exact too: eps_i^2 = 1.) Points from the data and far in its tails."""
    g = torch.Generator().manual_seed(2)
    x = MU + S * torch.randn(32, 1, 2, 2, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3, 32).view(
        -1, 1, 1, 1).double()
    logp, nfe = ode_log_likelihood(gaussian_velocity, x, g, mode, 1, "dopri5", rtol=1e-9, atol=1e-9)
    assert logp.dtype == torch.float64 and nfe > 7
    assert torch.allclose(logp, gaussian_log_density(x), atol=1e-6, rtol=0), (logp - gaussian_log_density(x)).abs()
    heun, _ = ode_log_likelihood(gaussian_velocity, x, g, mode, 1, "heun", steps=200)
    assert torch.allclose(heun, gaussian_log_density(x), atol=1e-3, rtol=0)  # O(h^2) with h = 1/200


def test_hutchinson_divergence_is_unbiased_against_the_exact_divergence():
    """A field with a dense, x-dependent Jacobian: v(x) = tanh(W x + b). Over 20,000 Rademacher probes the
    mean estimate is within 4 standard errors of the exact trace, for each of 3 images; single probes vary
    (the estimator is not trivially exact here)."""
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(12, 12, generator=g, dtype=torch.float64), torch.randn(12, generator=g, dtype=torch.float64)
    x = torch.randn(3, 3, 2, 2, generator=g, dtype=torch.float64).requires_grad_(True)

    def v():
        return torch.tanh(x.flatten(1) @ w.T + b).view_as(x)
    basis, one = divergence_probes(x.detach(), "exact", 1, None)
    exact = divergence(v(), x, basis, one)
    by_hand = ((1 - v().detach().flatten(1) ** 2) * torch.diagonal(w)).sum(1)  # d tanh(u_i) / dx_i
    assert torch.allclose(exact, by_hand, atol=1e-12)
    k = 20_000
    probes, _ = divergence_probes(x.detach(), "hutchinson", k, g)
    assert set(probes.unique().tolist()) == {-1.0, 1.0} and probes.shape == (k, *x.shape)
    each = torch.stack([divergence(v(), x, p[None], 1.0) for p in probes[:2000]])
    assert float(each.std(0).min()) > 0.5
    mean = divergence(v(), x, probes, 1.0 / k)
    stderr = each.std(0) / math.sqrt(k)
    assert ((mean - exact).abs() < 4 * stderr).all(), (mean, exact, stderr)


def test_model_likelihood_is_exact_bound_dequantised_and_deterministic():
    model = create_model("flow", model_config("flow", preset="tiny", sets=MNIST_SETS))
    x = (torch.randint(0, 256, (2, 1, 32, 32), generator=torch.Generator().manual_seed(0)) / 255.0) * 2 - 1
    opts = {"solver": "euler", "steps": 2}
    r = model.log_likelihood(x, torch.Generator().manual_seed(0), **opts)
    assert r["bound"] == "exact" and r["nfe"] == 2 and r["nats"].shape == (2,)
    assert torch.equal(r["nats"], model.log_likelihood(x, torch.Generator().manual_seed(0), **opts)["nats"])
    assert not torch.equal(r["nats"], model.log_likelihood(x, torch.Generator().manual_seed(1), **opts)["nats"])
    # an untrained U-Net's output is zero (zero-initialised last conv): the flow is the identity, so
    # log P = log N(v; 0, I) + D log(2/256) exactly, with v the dequantised image (same draw on the same seed)
    v, log_jacobian = zoo.contract.uniform_dequantize(x, (-1.0, 1.0), torch.Generator().manual_seed(0))
    expected = -0.5 * v.double().square().flatten(1).sum(1) - 0.5 * 1024 * math.log(2 * math.pi) + log_jacobian
    assert torch.allclose(r["nats"], expected, rtol=1e-9)
    with pytest.raises(ZooError, match="no likelihood option 'probe'"):
        model.log_likelihood(x, probe=2)


# --- training pairs ------------------------------------------------------------------------------------
def test_ot_pairing_is_the_minimum_cost_permutation():
    g = torch.Generator().manual_seed(4)
    x0, x1 = torch.randn(6, 1, 2, 2, generator=g), torch.randn(6, 1, 2, 2, generator=g)
    paired = ot_pairing(x0, x1)
    assert sorted(map(tuple, paired.flatten(1).tolist())) == sorted(map(tuple, x0.flatten(1).tolist()))
    cost = lambda a: float((a - x1).square().sum())  # noqa: E731
    best = min(cost(x0[list(p)]) for p in itertools.permutations(range(6)))
    assert cost(paired) == pytest.approx(best, rel=1e-6) and cost(paired) < cost(x0)


def test_time_sampling_uniform_and_logit_normal():
    torch.manual_seed(0)
    u = sample_time(20_000, "uniform")
    ln = sample_time(20_000, "logit_normal", 0.0, 1.0)
    assert 0 < float(u.min()) and float(u.max()) < 1 and float(u.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(((u > 0.25) & (u < 0.75)).float().mean()) == pytest.approx(0.5, abs=0.015)
    # logit-normal(0, 1): P(|logit t| < 1) = 0.683, concentrated mid-path
    inner = ((ln > torch.sigmoid(torch.tensor(-1.0))) & (ln < torch.sigmoid(torch.tensor(1.0)))).float().mean()
    assert float(inner) == pytest.approx(0.683, abs=0.015)


# --- the model: registry, options, NFE, determinism, contract ---------------------------------------------
def test_registry_lists_the_three_flow_models():
    models = registry().models
    for name, unet in (("flow", "attention"), ("flow-attention", "attention"), ("flow-convnext", "convnext")):
        assert issubclass(models[name].cls, FlowMatching) and models[name].family == "flow"
        assert model_config(name).model.unet == unet
        assert set(models[name].presets) >= {"tiny", "cpu", "gpu"}
    cpu = model_config("flow", preset="cpu")
    ddpm = model_config("ddpm", preset="cpu")
    assert (cpu.model.dim, cpu.data.image_size, cpu.trainer.lr) == (ddpm.model.dim, 28, ddpm.trainer.lr)
    assert (cpu.model.time_sampling, cpu.model.sampler, cpu.model.sample_steps) == ("logit_normal", "midpoint", 10)
    # benchmarks/results/flow-recipe-cpu
    convnext = model_config("flow-convnext", preset="cpu").model.dim
    assert convnext == model_config("ddpm-convnext", preset="cpu").model.dim == 16


@pytest.fixture(scope="module")
def tiny_flow():
    torch.manual_seed(0)
    model = create_model("flow", model_config("flow", preset="tiny", sets=MNIST_SETS))
    with torch.no_grad():   # a non-zero output layer: an untrained U-Net returns zero velocity
        for p in model.net.out.parameters():
            p.normal_(0, 0.05)
    return model.eval()


@pytest.mark.parametrize("sampler, steps, nfe", [("euler", 3, 3), ("midpoint", 3, 6), ("heun", 3, 6)])
def test_sampling_reports_nfe_and_is_deterministic(tiny_flow, sampler, steps, nfe):
    a = tiny_flow.sample(5, torch.Generator().manual_seed(0), sampler=sampler, steps=steps, batch_size=2)
    assert tiny_flow.last_nfe == nfe and a.shape == (5, 1, 32, 32) and 0 <= float(a.min()) <= float(a.max()) <= 1
    assert torch.equal(a, tiny_flow.sample(5, torch.Generator().manual_seed(0), sampler=sampler, steps=steps,
                                           batch_size=2))
    assert not torch.equal(a, tiny_flow.sample(5, torch.Generator().manual_seed(1), sampler=sampler, steps=steps,
                                               batch_size=2))


def test_dopri5_sampling_is_deterministic_and_counts_its_evaluations(tiny_flow):
    a = tiny_flow.sample(3, torch.Generator().manual_seed(0), sampler="dopri5", rtol=1e-3, atol=1e-3)
    nfe = tiny_flow.last_nfe
    assert nfe >= 7 and (nfe - 1) % 6 == 0
    assert torch.equal(a, tiny_flow.sample(3, torch.Generator().manual_seed(0), sampler="dopri5", rtol=1e-3,
                                           atol=1e-3))
    fine = tiny_flow.sample(3, torch.Generator().manual_seed(0), sampler="heun", steps=40)
    assert float((a - fine).abs().max()) < 0.02   # the same ODE, solved two ways


@pytest.mark.parametrize("options, message", [
    ({"sampler": "dopri5", "steps": 4}, "steps=4 does not apply to sampler dopri5"),
    ({"sampler": "euler", "rtol": 1e-3}, "rtol=0.001 does not apply to sampler euler"),
    ({"sampler": "rk4"}, "sampler='rk4' .*is not one of euler, midpoint, heun, dopri5"),
    ({"eta": 0.0}, "no sampling option 'eta'"),
])
def test_bad_sampling_options_are_clear_errors(tiny_flow, options, message):
    with pytest.raises(ZooError, match=message):
        tiny_flow.sample(1, torch.Generator(), **options)


def test_ot_without_scipy_is_a_one_line_error(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)   # import scipy.optimize raises ImportError
    with pytest.raises(ZooError, match="model.ot=true needs scipy .*pip install scipy"):
        create_model("flow", model_config("flow", preset="tiny", sets=MNIST_SETS + ["model.ot=true"]))


@pytest.mark.parametrize("name, sets", [("flow", []), ("flow-attention", ["model.time_sampling=logit_normal"]),
                                        ("flow-convnext", ["model.ot=true", "model.sampler=midpoint"])])
def test_contract(name, sets):
    check_model_contract(name, sets=MNIST_SETS + sets + ["model.sample_steps=2"], batch_size=8)


# --- runs: bitwise resume, zoo eval --nll ----------------------------------------------------------------
@pytest.mark.slow
def test_resume_gives_the_same_weights_with_ot_and_logit_normal(tmp_path):
    """6 steps straight and 3 + resume to 6 end bitwise equal (model, EMA, logged losses): the OT coupling
    and the logit-normal times draw from the trainer's checkpointed RNG only."""
    sets = MNIST_SETS + ["ema.enabled=true", "trainer.sample_every=0", "trainer.log_every=3", "model.ot=true",
                         "model.time_sampling=logit_normal"]
    zoo.train("flow", preset="tiny", out=tmp_path / "straight", sets=sets + ["trainer.max_steps=6"], quiet=True)
    zoo.train("flow", preset="tiny", out=tmp_path / "split", sets=sets + ["trainer.max_steps=3"], quiet=True)
    zoo.train(out=tmp_path / "split", resume=True, sets=["trainer.max_steps=6"], quiet=True)
    a = checkpoint.load(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = checkpoint.load(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6
    for state_a, state_b in ((a["model"], b["model"]), (a["ema"]["model"], b["ema"]["model"])):
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), key

    def losses(run):
        rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in rows if "loss" in r]
    assert losses(tmp_path / "straight") == losses(tmp_path / "split")


@pytest.mark.slow
def test_cli_trains_samples_and_evaluates_fid_and_bits_per_dim(tmp_path):
    """A real tiny run through the CLI: `zoo eval --nll` reports the exact-density bits/dim with nothing
    special-cased, and the sampler settings land in eval.json."""
    run = tmp_path / "run"
    r = zoo_cli("train", "flow", "--preset", "tiny", "--out", run, *(f"--set={s}" for s in MNIST_SETS),
                "--set=trainer.max_steps=30", "--set=trainer.sample_every=0")
    assert r.returncode == 0, r.output
    r = zoo_cli("eval", run, "-n", 300, "--metrics", "fid", "--sampler", "heun", "--steps", 3, "--nll",
                "--nll-n", 4, "--nll-option", "solver=heun", "--nll-option", "steps=3")
    assert r.returncode == 0, r.output
    result = json.loads((run / "eval.json").read_text())
    assert result["bits_per_dim_bound"] == "exact" and 0 < result["bits_per_dim"] < 16 and result["nll_n"] == 4
    assert result["fid"] > 0 and result["sampler"] == "heun" and result["sampling_steps"] == 3
    assert result["sampling_nfe"] == 6   # Heun: 2 evaluations per step
    assert result["nll_options"] == {"solver": "heun", "steps": 3}
    r = zoo_cli("sample", run, "-n", 4, "--sampler", "dopri5", "--steps", 3, "--out", tmp_path / "g.png")
    assert r.returncode == 2 and "error: steps=3 does not apply to sampler dopri5" in r.output


# --- a conditional run from the CLI ----------------------------------------------------------------------
def invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


def test_zoo_list_says_flow_can_be_conditional():
    code, out = invoke("list")
    header = next(line for line in out.splitlines() if line.startswith("model "))
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("flow")}
    assert code == 0 and {rows[name][header.index("cond."):].split()[0]
                          for name in ("flow", "flow-attention", "flow-convnext")} == {"yes"}
    code, out = invoke("list", "flow-convnext")
    assert code == 0 and "conditional: yes -- --set model.conditional=true" in out


def test_cli_trains_a_conditional_flow_and_samples_labels_with_guidance(tmp_path):
    """3 steps with labels, then `zoo sample --label 7 --guidance 2`: the images asked for, and the same from
    Python; --guidance on an unconditional flow run is a one-line error."""
    cond, plain = tmp_path / "cond", tmp_path / "plain"
    quick = [*MNIST_SETS, "trainer.max_steps=3", "trainer.sample_every=0", "trainer.n_samples=4",
             "model.sample_steps=2"]
    zoo.train("flow", preset="tiny", out=cond, sets=[*quick, "model.conditional=true"], quiet=True)
    zoo.train("flow", preset="tiny", out=plain, sets=quick, quiet=True)
    code, out = invoke("sample", cond, "--label", "7", "-n", "3", "--guidance", "2", "--seed", "1",
                       "-o", tmp_path / "7.npz")
    assert code == 0 and "wrote 3 images" in out, out
    sevens = np.load(tmp_path / "7.npz")
    model = zoo.load_run(cond)
    assert model.num_classes == 10 and (sevens["labels"] == 7).all()
    python = model.sample(3, torch.Generator().manual_seed(1), labels=7, guidance=2.0)
    assert (sevens["images"] == to_uint8(python).permute(0, 2, 3, 1).numpy()).all()  # the same images
    unguided = model.sample(3, torch.Generator().manual_seed(1), labels=7, guidance=0.0)
    assert python.shape == (3, *model.image_shape) and not torch.equal(python, unguided)
    code, out = invoke("sample", plain, "--guidance", "2", "-o", tmp_path / "p.png")
    lines = out.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "this run is unconditional, so there is nothing to guide" in lines[0]
    assert not (tmp_path / "p.png").exists()

"""DPM-Solver++(2M): against diffusers' DPMSolverMultistepScheduler on the same network and noise,
against the paper's update written out by hand in float64, and deterministic for a seed."""
import math

import pytest
import torch

from conftest import MNIST_SETS
from zoo.registry import create_model, model_config
from zoo_plugins.ddpm import Diffusion, beta_schedule, dpm_solver_2m

PREDICTION_TYPE = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
# Max abs difference of the samples (in [-1, 1]; one 8-bit level is 7.8e-3), about twice the largest
# seen. It is float32 rounding in the network's eps/v output, amplified by sqrt((1 - abar) / abar) when
# x0_hat is derived from it: with a float64 reference, our loop is as close as diffusers' (x0: closer).
TOLERANCE = {"eps": 2e-3, "x0": 2e-4, "v": 1e-3}


def random_model(objective="eps", schedule="linear", clip_x0=False, timesteps=1000):
    """The tiny attention U-Net with a random (non-zero) output layer: an arbitrary but fixed network."""
    cfg = model_config("ddpm", preset="tiny", sets=MNIST_SETS + [f"model.objective={objective}",
                                                                 f"model.schedule={schedule}",
                                                                 f"model.clip_x0={str(clip_x0).lower()}",
                                                                 f"model.timesteps={timesteps}"])
    torch.manual_seed(0)
    model = create_model("ddpm", cfg).eval()
    with torch.no_grad():
        model.net.out[-1].weight.normal_(0, 0.2)
    return model


class Plausible(torch.nn.Module):
    """A random U-Net made to predict a bounded x0 (tanh of its output), returned in the form of
    ``objective``: a fixed network whose samples stay near [-1, 1] without clipping (a raw random
    eps-network gives x0_hat ~ x_T / alpha_T, so every sampler would return the same huge numbers)."""

    def __init__(self, unet, diffusion):
        super().__init__()
        self.unet, self.abar, self.objective = unet, diffusion.alphas_cumprod, diffusion.objective

    def forward(self, x, t):
        a = self.abar[t].view(-1, 1, 1, 1)
        x0 = torch.tanh(self.unet(x, t))
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return {"eps": eps, "x0": x0, "v": a.sqrt() * eps - (1 - a).sqrt() * x0}[self.objective]


# --- (a) an independent implementation: diffusers ---------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers' own numpy call
@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("schedule, steps", [("linear", 5), ("linear", 20), ("cosine", 12)])
def test_matches_diffusers_dpm_solver_multistep(objective, schedule, steps):
    import diffusers  # a test dependency (pyproject's `test` extra)
    model = random_model(objective, schedule)
    d = model.diffusion
    plan = d.plan("dpm++", steps)
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=d.T, trained_betas=beta_schedule(schedule, d.T).numpy(),
        prediction_type=PREDICTION_TYPE[objective], algorithm_type="dpmsolver++", solver_order=2,
        lower_order_final=True, final_sigmas_type="zero", thresholding=False)
    scheduler.set_timesteps(timesteps=plan.timesteps.tolist())  # the same grid: T-1 .. 0, evenly spaced
    net = Plausible(model.net, d)
    x_T = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, _ = d.denoise(net, x_T.clone(), plan, torch.Generator())
        x = x_T.clone()
        for t in scheduler.timesteps:
            x = scheduler.step(net(x, t.expand(3)), t, x).prev_sample
        ddim, _ = d.denoise(net, x_T.clone(), d.plan("ddim", steps), torch.Generator())
    # float32 in both; diffusers derives alpha-bar in float32, we in float64
    error = (ours - x).abs().max()
    assert error <= TOLERANCE[objective], float(error)
    assert (ddim - x).abs().max() > 0.05  # the agreement is not that of any sampler with any other


# --- (b) the paper's formulas, written out ------------------------------------------------------
def paper_dpm_solver_2m(abar_grid, x0_of, x_T):
    """Lu et al. 2022, Algorithm 2 (DPM-Solver++(2M)), float64, one step at a time.
    ``abar_grid``: alpha-bar at t_0 > ... > t_{K-1}, then 1.0 (the clean image)."""
    alpha = [math.sqrt(a) for a in abar_grid]
    sigma = [math.sqrt(1 - a) for a in abar_grid]
    lam = [math.log(a / s) if s > 0 else math.inf for a, s in zip(alpha, sigma)]
    K = len(abar_grid) - 1
    x, x0_before = x_T, None
    for i in range(K):
        x0 = x0_of(x, i)
        h = lam[i + 1] - lam[i]
        exp_minus_h = 0.0 if math.isinf(h) else math.exp(-h)
        if i == 0 or i == K - 1:  # first order: no history yet, and the step to sigma = 0
            D = x0
        else:
            r = (lam[i] - lam[i - 1]) / h
            D = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_before
        x = sigma[i + 1] / sigma[i] * x - alpha[i + 1] * (exp_minus_h - 1) * D
        x0_before = x0
    return x


def test_plan_coefficients_are_the_papers_update():
    d = Diffusion(1000, "cosine")
    ts = torch.tensor([999, 700, 400, 150, 30, 0])
    abar = d.alphas_cumprod64[ts]
    abar_next = torch.cat([abar[1:], torch.ones(1, dtype=torch.float64)])
    c_x0, c_x0_prev, c_xt = dpm_solver_2m(abar, abar_next)
    grid = abar.tolist() + [1.0]
    for i in range(len(ts)):
        # one step of Algorithm 2 from t_i to t_{i+1}, with h_i = lambda_{t_{i+1}} - lambda_{t_i}
        a_t, s_t = math.sqrt(grid[i + 1]), math.sqrt(1 - grid[i + 1])
        a_s, s_s = math.sqrt(grid[i]), math.sqrt(1 - grid[i])
        h = (math.log(a_t / s_t) if s_t > 0 else math.inf) - math.log(a_s / s_s)
        phi = -a_t * ((0.0 if math.isinf(h) else math.exp(-h)) - 1)
        assert float(c_xt[i]) == pytest.approx(s_t / s_s, rel=1e-12, abs=1e-15)
        if i in (0, len(ts) - 1):
            assert float(c_x0[i]) == pytest.approx(phi, rel=1e-12) and float(c_x0_prev[i]) == 0.0
        else:
            h_before = math.log(a_s / s_s) - math.log(math.sqrt(grid[i - 1]) / math.sqrt(1 - grid[i - 1]))
            r = h_before / h
            assert float(c_x0[i]) == pytest.approx(phi * (1 + 1 / (2 * r)), rel=1e-12)
            assert float(c_x0_prev[i]) == pytest.approx(-phi / (2 * r), rel=1e-12)
    assert float(c_x0[-1]) == 1.0 and float(c_xt[-1]) == 0.0  # the last step returns x0_hat


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_sampling_loop_follows_the_paper_step_by_step(objective):
    """Our float32 loop against Algorithm 2 run by hand in float64 on a known x0 predictor."""
    d = Diffusion(1000, "linear", objective=objective, clip_x0=False)
    plan = d.plan("dpm++", 6)
    ts = plan.timesteps.tolist()
    abar = d.alphas_cumprod64

    def x0_hat(x, t):  # a smooth non-linear denoiser, written as x0 directly
        return torch.tanh(0.7 * x + 0.001 * t) * 0.9

    class Net(torch.nn.Module):  # the same denoiser, as the objective's network output
        def forward(self, x, t):
            a = abar[t].view(-1, 1, 1, 1).to(x.dtype)
            x0 = x0_hat(x, t.view(-1, 1, 1, 1).to(x.dtype))
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
            return {"eps": eps, "x0": x0, "v": a.sqrt() * eps - (1 - a).sqrt() * x0}[objective]

    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = paper_dpm_solver_2m([float(abar[t]) for t in ts] + [1.0], lambda x, i: x0_hat(x, ts[i]), x_T)
    got, _ = d.denoise(Net(), x_T.float(), plan, torch.Generator())
    # float32 loop: eps/v outputs lose ~1e-5 when x0_hat is derived from them at t = T-1; a wrong
    # coefficient or a step of the wrong order is off by > 1e-2 (DDIM: 0.1)
    assert torch.allclose(got.double(), expected, atol=1e-4), float((got.double() - expected).abs().max())


def test_first_and_last_steps_are_first_order_and_match_ddim():
    d = Diffusion(1000, "linear")
    for K in (1, 2, 3, 20):
        plan = d.plan("dpm++", K)
        assert plan.multistep == [0 < i < K - 1 for i in range(K)]
        assert not any(plan.noisy) and torch.all(plan.sigma == 0)
        ddim = d.plan("ddim", K)
        assert torch.equal(plan.timesteps, ddim.timesteps)
        # first order DPM-Solver++ is DDIM (eta = 0): same coefficients on the first and last step
        for i in {0, K - 1}:
            assert float(plan.c_x0[i]) == pytest.approx(float(ddim.c_x0[i]), rel=1e-6)
            assert float(plan.c_xt[i]) == pytest.approx(float(ddim.c_xt[i]), rel=1e-6, abs=1e-7)
    # one-step samplers keep c_x0_prev at zero
    assert torch.all(d.plan("ddim", 10).c_x0_prev == 0) and torch.all(d.plan("ddpm", 10).c_x0_prev == 0)


# --- (c) determinism, and through the model -----------------------------------------------------
def test_dpm_solver_is_deterministic_given_the_seed_and_uses_model_dpm_steps():
    model = random_model(clip_x0=True, timesteps=50)
    a = model.sample(3, torch.Generator().manual_seed(7), sampler="dpm++", steps=6, batch_size=2)
    assert a.shape == (3, 1, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, model.sample(3, torch.Generator().manual_seed(7), sampler="dpm++", steps=6, batch_size=2))
    assert not torch.equal(a, model.sample(3, torch.Generator().manual_seed(8), sampler="dpm++", steps=6))
    calls = []
    model.net.register_forward_hook(lambda *_: calls.append(1))
    model.sample(1, torch.Generator().manual_seed(0), sampler="dpm++")
    assert len(calls) == model.cfg.model.dpm_steps == 20

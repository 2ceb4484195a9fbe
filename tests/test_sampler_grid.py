"""The samplers' time grids (model.grid / --option grid): diffusers' timesteps for the same grid, DPM-Solver++
and DDIM on each grid against diffusers' schedulers, and the grid that `zoo sample` and `zoo eval` use."""
import json

import numpy as np
import pytest
import torch

from conftest import MNIST_SETS
from test_dpm_solver import PREDICTION_TYPE, TOLERANCE, Plausible, random_model
from zoo_plugins.ddpm import BEST_GRID, GRIDS, LAMBDA_MIN, Diffusion, beta_schedule, sampling_grid

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers' own numpy calls

# diffusers' name for each grid (DPMSolverMultistepScheduler); zoo's own grid is DDIMScheduler's "linspace"
DIFFUSERS = {"linspace": {"timestep_spacing": "linspace"}, "trailing": {"timestep_spacing": "trailing"},
             "logsnr": {"use_lu_lambdas": True}, "karras": {"use_karras_sigmas": True}}


def dpm_scheduler(schedule, objective="eps", T=1000, **grid):
    import diffusers  # a test dependency (pyproject's `test` extra)
    return diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=T, trained_betas=beta_schedule(schedule, T).numpy(),
        prediction_type=PREDICTION_TYPE[objective], algorithm_type="dpmsolver++", solver_order=2,
        lower_order_final=True, final_sigmas_type="zero", thresholding=False, **grid)


# --- the timesteps ------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("grid", list(DIFFUSERS))
@pytest.mark.parametrize("steps", [5, 10, 20])
def test_grid_is_diffusers_timesteps(grid, schedule, steps):
    if schedule == "cosine" and grid in ("logsnr", "karras"):
        pytest.skip("cosine: zoo starts these grids at lambda = -5.1 (test_cosine_logsnr_and_karras_start_at_"
                    "lambda_min); diffusers does not, and its use_lu_lambdas repeats t = 999 and fails to step")
    scheduler = dpm_scheduler(schedule, **DIFFUSERS[grid])
    scheduler.set_timesteps(steps)
    ours = sampling_grid(grid, Diffusion(1000, schedule).alphas_cumprod64, steps)
    assert ours.tolist() == scheduler.timesteps.tolist()


@pytest.mark.parametrize("steps", [3, 10, 20, 50])
def test_zoo_grid_is_ddim_linspace_and_ends_at_t0(steps):
    import diffusers
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing="linspace")
    scheduler.set_timesteps(steps)
    ours = sampling_grid("zoo", Diffusion(1000).alphas_cumprod64, steps)
    assert ours.tolist() == scheduler.timesteps.tolist() and ours[-1] == 0 and ours[0] == 999


@pytest.mark.parametrize("schedule", ["linear", "cosine", "sigmoid"])
def test_every_grid_has_distinct_descending_timesteps_and_all_T_is_every_timestep(schedule):
    d = Diffusion(100, schedule)
    for grid in GRIDS:
        assert sampling_grid(grid, d.alphas_cumprod64, 100).tolist() == list(range(99, -1, -1)), grid
        for K in (1, 2, 7, 30, 99):
            t = sampling_grid(grid, d.alphas_cumprod64, K)
            assert len(t) == K and t.max() <= 99 and t.min() >= 0 and bool((t.diff() < 0).all()), (grid, K)
    # diffusers' linspace drops t = 0 and ends near T/K; trailing ends at T/K - 1; logsnr and karras end at t = 0
    assert sampling_grid("linspace", d.alphas_cumprod64, 10)[-1] == 10
    assert sampling_grid("trailing", d.alphas_cumprod64, 10)[-1] == 9
    assert sampling_grid("logsnr", d.alphas_cumprod64, 10)[-1] == 0
    assert sampling_grid("karras", d.alphas_cumprod64, 10)[-1] == 0


def test_cosine_logsnr_and_karras_start_at_lambda_min():
    """The cosine schedule's clipped last beta sends sigma from ~600 to ~2e4 in its last step: without a top,
    karras-20 would call the network 13 times in t = 987..999 (diffusers does). From lambda = -5.1 down,
    the points are spread over the whole schedule, uniform in log-SNR for logsnr."""
    d = Diffusion(1000, "cosine")
    abar = d.alphas_cumprod64
    lam = 0.5 * torch.log(abar / (1 - abar))
    for grid in ("logsnr", "karras"):
        t = sampling_grid(grid, abar, 20)
        assert lam[t[0]] >= LAMBDA_MIN - 0.1 and lam[t[0] + 1] < LAMBDA_MIN  # the nearest timestep to the top
        assert (t >= 980).sum() <= 6, t.tolist()
    # uniform in log-SNR up to the rounding to timesteps, which moves lambda most at both ends (t ~ 0, t ~ T)
    uneven = lambda g: float((lam[g].diff() / lam[g].diff().mean() - 1).abs().max())  # noqa: E731
    assert uneven(sampling_grid("logsnr", abar, 20)) < 0.25 and uneven(sampling_grid("zoo", abar, 20)) > 1


# --- the samplers on each grid, against diffusers --------------------------------------------------
@pytest.mark.parametrize("grid, schedule, objective, steps", [
    ("linspace", "linear", "eps", 10), ("linspace", "cosine", "v", 20), ("trailing", "cosine", "v", 10),
    ("trailing", "linear", "x0", 20), ("logsnr", "linear", "eps", 10), ("logsnr", "cosine", "v", 20),
    ("karras", "linear", "v", 20), ("karras", "cosine", "eps", 10)])
def test_dpm_solver_on_each_grid_matches_diffusers(grid, schedule, objective, steps):
    """linspace and trailing: diffusers' own grid (set_timesteps(steps)). logsnr and karras: our timesteps given to
    diffusers (set_timesteps(timesteps=...)), because there diffusers keeps the continuous sigma for the solver
    while it calls the network at the rounded timestep; we use that timestep's own alpha-bar for both, which
    moves the samples by up to ~0.1 on this network. Tolerances: test_dpm_solver.TOLERANCE (float32 rounding)."""
    model = random_model(objective, schedule)
    d = model.diffusion
    plan = d.plan("dpm++", steps, grid=grid)
    scheduler = dpm_scheduler(schedule, objective, **(DIFFUSERS[grid] if grid in ("linspace", "trailing") else {}))
    if grid in ("linspace", "trailing"):
        scheduler.set_timesteps(steps)
    else:
        scheduler.set_timesteps(timesteps=plan.timesteps.tolist())
    assert scheduler.timesteps.tolist() == plan.timesteps.tolist()
    net = Plausible(model.net, d)
    x_T = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, _ = d.denoise(net, x_T.clone(), plan, torch.Generator())
        x = x_T.clone()
        for t in scheduler.timesteps:
            x = scheduler.step(net(x, t.expand(3)), t, x).prev_sample
        zoo_grid, _ = d.denoise(net, x_T.clone(), d.plan("dpm++", steps, grid="zoo"), torch.Generator())
    error = (ours - x).abs().max()
    assert error <= TOLERANCE[objective], float(error)
    assert (zoo_grid - x).abs().max() > 0.05  # the grid matters: zoo's own is far from it


@pytest.mark.parametrize("objective, eta, steps", [("eps", 0.0, 10), ("v", 0.0, 20), ("v", 0.5, 10),
                                                   ("x0", 1.0, 20)])
def test_ddim_on_the_trailing_grid_matches_diffusers_ddim(objective, eta, steps):
    """DDIMScheduler steps from t to t - T/K, which is the next grid point on the trailing grid (and the clean
    image after t = T/K - 1, with set_alpha_to_one). With eta > 0 both draw the same noise from the same seed."""
    import diffusers
    model = random_model(objective, "linear")
    d = model.diffusion
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=d.T, trained_betas=beta_schedule("linear", d.T).numpy(),
                                        prediction_type=PREDICTION_TYPE[objective], clip_sample=False,
                                        set_alpha_to_one=True, timestep_spacing="trailing")
    scheduler.set_timesteps(steps)
    plan = d.plan("ddim", steps, eta=eta, grid="trailing")
    assert scheduler.timesteps.tolist() == plan.timesteps.tolist()
    net = Plausible(model.net, d)
    x_T = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, _ = d.denoise(net, x_T.clone(), plan, torch.Generator().manual_seed(2))
        x, g = x_T.clone(), torch.Generator().manual_seed(2)
        for i, t in enumerate(scheduler.timesteps):
            noise = torch.randn(x.shape, generator=g) if eta > 0 and i < steps - 1 else None
            x = scheduler.step(net(x, t.expand(3)), t, x, eta=eta, variance_noise=noise).prev_sample
    error = (ours - x).abs().max()
    assert error <= TOLERANCE[objective], float(error)


# --- the default, through the CLI ------------------------------------------------------------------
@pytest.mark.slow
def test_default_grid_is_what_zoo_sample_uses_and_eval_json_records(tmp_path, monkeypatch):
    """`zoo sample --sampler dpm++` without --option grid builds its plan on DPM-Solver++'s best grid (model.grid =
    auto, in every preset) and draws the images of --option grid=karras; `zoo eval` records the grid in eval.json's
    sampled_with. Also for a run saved before model.grid existed (keys added since a run started take their
    defaults: such a run once failed with AttributeError: grid)."""
    from click.testing import CliRunner

    import zoo
    from zoo.cli import main
    from zoo.registry import model_config
    assert model_config("ddpm", preset="cpu").model.grid == model_config("ddpm", preset="tiny").model.grid == "auto"
    default = BEST_GRID["dpm++"]
    run = tmp_path / "run"
    zoo.train("ddpm", preset="tiny", out=run, sets=MNIST_SETS + ["model.timesteps=50", "trainer.max_steps=2",
                                                                "trainer.sample_every=0"])
    # a run trained before model.grid existed: its checkpoint's and config.yaml's configs lack the key
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    del ckpt["config"]["model"]["grid"]
    torch.save(ckpt, run / "checkpoints" / "last.pt")
    (run / "config.yaml").write_text("\n".join(line for line in (run / "config.yaml").read_text().splitlines()
                                               if not line.strip().startswith("grid:")) + "\n")
    grids, plan = [], Diffusion.plan
    monkeypatch.setattr(Diffusion, "plan", lambda self, *a, **k: grids.append(k["grid"]) or plan(self, *a, **k))
    runner = CliRunner()

    def sample(*args):
        out = tmp_path / f"s{len(grids)}.npz"
        r = runner.invoke(main, ["sample", str(run), "-n", "3", "--sampler", "dpm++", "--steps", "4", "--out",
                                 str(out), *args])
        assert r.exit_code == 0, r.output
        return np.load(out)["images"]
    assert (sample() == sample("--option", f"grid={default}")).all()
    sample("--option", "grid=karras" if default != "karras" else "grid=zoo")
    assert grids[0] == grids[1] == default != grids[2]
    # (--option batch_size, the model's own, once collided with the eval's batch size: a TypeError)
    r = runner.invoke(main, ["eval", str(run), "-n", "8", "--metrics", "fid", "--sampler", "dpm++", "--steps", "3",
                             "--option", "batch_size=4", "--extractor", "mnist", "--reference", "holdout",
                             "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0, r.output
    recorded = json.loads((run / "eval.json").read_text())
    assert recorded["sample_options"] == {"sampler": "dpm++", "steps": 3, "batch_size": 4}  # what was asked
    assert {k: recorded["sampled_with"][k] for k in ("sampler", "steps", "grid", "batch_size")} == \
        {"sampler": "dpm++", "steps": 3, "grid": default, "batch_size": 4}  # and what ran


def test_auto_is_each_samplers_best_grid_and_an_explicit_grid_wins():
    model = random_model(timesteps=50)
    # as measured in benchmarks/results/sampler-grid-cpu
    assert BEST_GRID == {"dpm++": "karras", "ddim": "trailing", "ddpm": "trailing"}
    for sampler, grid in BEST_GRID.items():
        assert model.sampling_options({"sampler": sampler})["grid"] == grid
        assert model.sampling_options({"sampler": sampler, "grid": "zoo"})["grid"] == "zoo"
    calls = []
    model.net.register_forward_hook(lambda m, args, out: calls.append(int(args[1][0])))
    model.sample(1, torch.Generator().manual_seed(0), sampler="ddim", steps=5)
    assert calls == sampling_grid("trailing", model.diffusion.alphas_cumprod64, 5).tolist() == [49, 39, 29, 19, 9]


def test_bad_grid_is_a_one_line_error():
    from zoo import ZooError
    model = random_model(timesteps=50)
    with pytest.raises(ZooError, match="grid.*'uniform'.*auto, zoo, linspace, trailing, logsnr, karras"):
        model.sample(1, torch.Generator(), grid="uniform")

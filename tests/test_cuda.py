"""zoo's CUDA paths, on a real GPU: ``pytest -m cuda`` (every test here is skipped where there is none).

What the trainer does only on CUDA (zoo/trainer.py, zoo/device.py, zoo/contract.py, plugins/ddpm.py):
bf16 autocast, fp16 with a GradScaler, channels_last weights and batches, ``torch.compile`` of the
training loss (``trainer.compile``) and of the sampling network (``model.compile_sampler``), fused AdamW,
the EMA's ``_foreach_lerp_`` on device tensors, resume with the CUDA RNG state, bf16 sampling, and the
torchrun launch that DistributedDataParallel runs under. Each test checks what a user relies on -- the
path is really taken (the dtype a layer computes in, the scaler's state, the weights' memory format, the
optimizer's ``fused`` flag) and its numbers agree with the plain path within the tolerance of the
arithmetic -- on the tiny DDPM so the whole file runs in a few minutes on one GPU.

``benchmarks/gpu_suite.py`` runs these first and stops when one fails. MNIST comes from ``$ZOO_TEST_MNIST``
(tests/conftest.py); the suite points it at its ``--data`` folder.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from conftest import MNIST_SETS
from zoo import checkpoint
from zoo.device import autocast, resolve_precision

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (pytest -m cuda)")]

REPO = Path(__file__).resolve().parents[1]
DEVICE = "cuda"
# the tiny DDPM, on the GPU, no periodic grids or checkpoints: the end of the run writes last.pt
RUN = [*MNIST_SETS, f"trainer.device={DEVICE}", "trainer.log_every=5", "trainer.sample_every=0",
       "trainer.checkpoint_every=0", "trainer.n_samples=16", "trainer.batch_size=32"]


def train(out: Path, steps: int = 20, sets=(), model: str = "ddpm", preset: str = "tiny"):
    return zoo.train(model, preset=preset, sets=[*RUN, f"trainer.max_steps={steps}", *sets], out=out, quiet=True)


def last(run: Path) -> dict:
    return checkpoint.load(run / "checkpoints" / "last.pt")


def losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def tiny_model(*sets, model: str = "ddpm"):
    cfg = zoo.model_config(model, preset="tiny", sets=[*MNIST_SETS, f"trainer.device={DEVICE}", *sets])
    torch.manual_seed(0)
    return zoo.create_model(model, cfg).to(DEVICE)


def batch(model, n: int = 8) -> torch.Tensor:
    g = torch.Generator(device=DEVICE).manual_seed(1)
    return torch.rand((n, *model.image_shape), generator=g, device=DEVICE) * 2 - 1


def model_autocast(model):
    """The autocast a model samples under: ``trainer.precision`` of its config, on its device."""
    return autocast(model.device, resolve_precision(str(model.cfg.trainer.precision), model.device))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def conv_dtypes(model) -> tuple[list, list]:
    """Forward hooks on every Conv2d recording the dtype it computed in; returns (dtypes, handles)."""
    seen, handles = [], []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            handles.append(m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype)))
    return seen, handles


def finite_run(run: Path, steps: int) -> dict:
    ck = last(run)
    assert ck["step"] == steps
    ls = losses(run)
    assert ls and all(torch.isfinite(torch.tensor(v)) for v in ls), ls
    assert all(bool(torch.isfinite(v).all()) for v in ck["model"].values() if v.is_floating_point())
    return ck


# --- precision ------------------------------------------------------------------------------------
def test_bf16_autocast_computes_in_bf16_and_trains(tmp_path):
    model = tiny_model()
    device = torch.device(DEVICE)
    assert resolve_precision("auto", device) is (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    seen, handles = conv_dtypes(model)
    with autocast(device, resolve_precision("bf16", device)):
        loss = model.training_loss(batch(model), "main")["loss"]
    loss.backward()
    for h in handles:
        h.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())

    run = tmp_path / "bf16"
    train(run, sets=["trainer.precision=bf16"])
    ck = finite_run(run, 20)
    assert ck["scalers"]["main"] == {}  # no GradScaler in bf16
    assert all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())


def test_fp16_trains_with_an_enabled_grad_scaler(tmp_path):
    model = tiny_model()
    seen, handles = conv_dtypes(model)
    with autocast(torch.device(DEVICE), torch.float16):
        model.training_loss(batch(model), "main")
    for h in handles:
        h.remove()
    assert seen and set(seen) == {torch.float16}

    run = tmp_path / "fp16"
    train(run, sets=["trainer.precision=fp16"])
    ck = finite_run(run, 20)
    scaler = ck["scalers"]["main"]
    assert "scale" in scaler, "trainer.precision=fp16 must train through an enabled GradScaler"
    assert 0 < float(scaler["scale"]) < float("inf")


# --- memory format, compile, optimizer, EMA ------------------------------------------------------------
def test_channels_last_weights_and_same_numbers(tmp_path):
    run = tmp_path / "cl"
    train(run, steps=5, sets=["trainer.channels_last=auto", "trainer.precision=fp32"])
    convs = {k: v for k, v in last(run)["model"].items()
             if v.dim() == 4 and v.shape[1] > 1 and v.shape[2] > 1}
    assert convs
    for k, v in convs.items():  # the trainer trained (and saved) channels_last weights on CUDA
        assert v.is_contiguous(memory_format=torch.channels_last) and not v.is_contiguous(), k

    model = tiny_model("trainer.precision=fp32").eval()
    x = batch(model)
    t = torch.randint(0, 1000, (x.shape[0],), device=DEVICE, generator=torch.Generator(DEVICE).manual_seed(2))
    with torch.no_grad():
        ref = model.net(x, t)
        model = model.to(memory_format=torch.channels_last)
        out = model.net(x.contiguous(memory_format=torch.channels_last), t)
    assert rel(out, ref) < 1e-2  # TF32 convolutions either way; a wrong layout would be O(1)


def test_compiled_training_loss_matches_eager(tmp_path):
    model = tiny_model("trainer.precision=fp32")
    x = batch(model)
    compiled = torch.compile(model.training_loss)  # exactly what trainer.compile=true does
    with torch._inductor.config.patch(fallback_random=True):  # the same noise and timesteps as eager
        torch.manual_seed(3)
        eager = model.training_loss(x, "main")["loss"]
        eager.backward()
        g_eager = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        comp = compiled(x, "main")["loss"]
        comp.backward()
        g_comp = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert rel(comp, eager) < 5e-3
    assert rel(g_comp, g_eager) < 5e-2

    run = tmp_path / "compiled"
    train(run, sets=["trainer.compile=true"])
    finite_run(run, 20)


def test_fused_adamw_on_cuda_matches_foreach(tmp_path):
    model = tiny_model()
    opt = model.configure_optimizers()["main"]
    assert opt.defaults.get("fused") is True
    ref = tiny_model()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=opt.defaults["lr"], betas=opt.defaults["betas"],
                                weight_decay=opt.defaults["weight_decay"], foreach=True)
    g = torch.Generator(device=DEVICE).manual_seed(4)
    for _ in range(3):
        for p, q in zip(model.parameters(), ref.parameters()):
            p.grad = torch.randn(p.shape, generator=g, device=DEVICE)
            q.grad = p.grad.clone()
        opt.step()
        ref_opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)

    run = tmp_path / "fused"
    train(run, steps=3)
    assert last(run)["optimizers"]["main"]["param_groups"][0]["fused"] is True


def test_ema_update_on_device_tensors(tmp_path):
    from zoo.trainer import EMA
    model = tiny_model()
    ema = EMA(model, decay=0.9, warmup=False)
    assert next(ema.model.parameters()).is_cuda
    before = [p.detach().clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model, step=1)
    for old, new, src in zip(before, ema.model.parameters(), model.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * src, rtol=1e-5, atol=1e-6)

    run = tmp_path / "ema"
    train(run, steps=10, sets=["ema.enabled=true"])
    ck = last(run)
    assert ck["ema"]["updates"] == 10
    assert any(not torch.equal(ck["ema"]["model"][k], v) for k, v in ck["model"].items() if v.is_floating_point())


# --- resume -------------------------------------------------------------------------------------------------
def test_resume_on_gpu_matches_an_uninterrupted_run(tmp_path):
    """Weights, optimizer, EMA, data position and the CUDA RNG come back: 10 + 10 steps equal 20 steps.

    fp32 so the tolerance can be tight (cuDNN's atomics differ run to run around 1e-6); noise drawn from
    an unrestored CUDA RNG moves the weights by about 1e-2 relative after 10 Adam steps, ten times the bound."""
    sets = ["trainer.precision=fp32"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(straight, steps=20, sets=sets)
    train(split, steps=10, sets=sets)
    zoo.train(resume=True, out=split, sets=["trainer.max_steps=20"], quiet=True)
    a, b = last(straight), last(split)
    assert a["step"] == b["step"] == 20 and a["loader"] == b["loader"]
    wa = torch.cat([v.flatten().double() for v in a["model"].values() if v.is_floating_point()])
    wb = torch.cat([v.flatten().double() for v in b["model"].values() if v.is_floating_point()])
    assert rel(wb, wa) < 1e-3
    ea = torch.cat([v.flatten().double() for v in a["ema"]["model"].values() if v.is_floating_point()])
    eb = torch.cat([v.flatten().double() for v in b["ema"]["model"].values() if v.is_floating_point()])
    assert rel(eb, ea) < 1e-3
    la, lb = losses(straight), losses(split)
    assert len(la) == len(lb) and abs(la[-1] - lb[-1]) < 1e-3 * max(1.0, abs(la[-1]))


# --- sampling -----------------------------------------------------------------------------------------------
def samplers(model) -> list[str]:
    """The few-step samplers this DDPM offers: ddim always, dpm++ where the plugin has it."""
    choices = model.sample_options["sampler"].choices or ()
    return [s for s in ("ddim", "dpm++") if s in choices]


def test_bf16_sampling(tmp_path):
    model = tiny_model().eval()  # trainer.precision=auto: bf16 on a GPU that has it
    fp32 = tiny_model("trainer.precision=fp32").eval()
    x, t = batch(model), torch.full((8,), 500, device=DEVICE)
    with torch.no_grad(), model_autocast(model):
        low = model.net(x, t)
    with torch.no_grad():
        ref = fp32.net(x, t)
    assert rel(low.float(), ref) < 3e-2  # bf16 has 8 bits of mantissa

    seen, handles = conv_dtypes(model)
    for sampler in samplers(model):
        seen.clear()
        a = model.sample(16, torch.Generator(DEVICE).manual_seed(5), sampler=sampler, steps=10)
        b = model.sample(16, torch.Generator(DEVICE).manual_seed(5), sampler=sampler, steps=10)
        assert set(seen) == {resolve_precision("auto", torch.device(DEVICE))}, sampler
        assert a.shape == (16, *model.image_shape) and a.dtype == torch.float32
        assert bool(torch.isfinite(a).all()) and 0 <= float(a.min()) and float(a.max()) <= 1
        assert (a - b).abs().max() < 1e-3, f"{sampler}: the same seed must give the same images"
    for h in handles:
        h.remove()


def test_compiled_sampler_matches_eager():
    eager = tiny_model().eval()
    comp = tiny_model("model.compile_sampler=true").eval()
    assert comp.sampling_network() is not comp.net
    x, t = batch(eager), torch.full((8,), 300, device=DEVICE)
    with torch.no_grad(), model_autocast(eager):
        a = eager.net(x, t).float()
        b = comp.sampling_network()(x, t).float()
    assert rel(b, a) < 3e-2
    for sampler in samplers(comp):
        imgs = comp.sample(16, torch.Generator(DEVICE).manual_seed(6), sampler=sampler, steps=10, batch_size=16)
        assert bool(torch.isfinite(imgs).all()) and imgs.shape == (16, *comp.image_shape)


# --- every family, and the torchrun launch --------------------------------------------------------------------
@pytest.mark.parametrize("model", ["ae", "vae", "gan", "lsgan", "dcgan", "ddpm-convnext", "flow"])
def test_every_family_trains_on_cuda(tmp_path, model):
    from zoo.registry import registry
    if model not in registry().models:
        pytest.skip(f"{model} is not registered here")
    run = tmp_path / model
    train(run, steps=6, model=model)
    ck = last(run)
    assert ck["step"] == 6
    meta = json.loads((run / "meta.json").read_text())
    assert meta["device"].startswith("cuda")
    assert all(bool(torch.isfinite(v).all()) for v in ck["model"].values() if v.is_floating_point())
    assert (run / "samples.png").is_file()


@pytest.mark.parametrize("model", ["ddpm", "flow", "vae", "gan", "ae"])
def test_conditional_family_trains_and_samples_labels_with_guidance_on_cuda(tmp_path, model):
    """A conditional run on the GPU: labels travel with their images to the device, and sampling with labels
    (and classifier-free guidance, one doubled batch, where the model has it) gives finite images on the GPU,
    the same for the same seed and labels, other images for other labels."""
    run = tmp_path / model
    train(run, steps=6, model=model, sets=["model.conditional=true"])
    m = zoo.load_run(run, device=DEVICE)
    assert m.num_classes == 10 and m.device.type == "cuda"
    guided = {"guidance": 2.0, "steps": 4} if model in ("ddpm", "flow") else {}

    def draw(labels):
        return m.sample(8, torch.Generator(DEVICE).manual_seed(0), labels=labels, **guided)
    a = draw(7)
    assert a.device.type == "cuda" and a.shape == (8, *m.image_shape) and bool(torch.isfinite(a).all())
    assert torch.equal(a, draw([7] * 8)) and not torch.equal(a, draw(3))


def test_torchrun_one_gpu_matches_a_plain_run(tmp_path):
    """``torchrun --nproc-per-node=1 -m zoo train``: the launch ``zoo train --gpus N`` execs for N > 1, here
    one process in an NCCL group of one, so the model trains under DistributedDataParallel -- and ends with
    the same weights as a plain run."""
    sets = [f"--set={s}" for s in [*RUN, "trainer.max_steps=8", "trainer.precision=fp32"]]
    plain, ddp = tmp_path / "plain", tmp_path / "ddp"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    cmd = ["train", "ddpm", "--preset", "tiny", *sets]
    r = subprocess.run([sys.executable, "-m", "zoo", *cmd, "--quiet", "--out", str(plain)],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
                        "-m", "zoo", *cmd, "--out", str(ddp)], capture_output=True, text=True, env=env, cwd=REPO,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1 process under DistributedDataParallel" in r.stdout  # the header, on stdout when piped
    a, b = last(plain), last(ddp)
    assert b["step"] == 8
    wa = torch.cat([v.flatten().double() for v in a["model"].values() if v.is_floating_point()])
    wb = torch.cat([v.flatten().double() for v in b["model"].values() if v.is_floating_point()])
    assert rel(wb, wa) < 1e-3

"""The shared trainer: run directories, resume, atomic checkpoints, safety, DDP."""
import json
import math
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from conftest import MNIST_SETS
from helpers import zoo_cli
from zoo import ZooError, checkpoint
from zoo.cli import main
from click.testing import CliRunner

DATA = [f"--set={s}" for s in MNIST_SETS]


def metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def losses(run_dir):
    return [{k: v for k, v in row.items() if k not in ("time", "images_per_s")} for row in metrics(run_dir)]


def assert_same_state(a, b):
    """Bitwise equality of model, EMA and optimizer tensors of two checkpoints."""
    ca, cb = checkpoint.load(Path(a) / "checkpoints" / "last.pt"), checkpoint.load(Path(b) / "checkpoints" / "last.pt")
    assert ca["step"] == cb["step"]
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    for name, opt in ca["optimizers"].items():
        for pid, st in opt["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    assert torch.equal(v, cb["optimizers"][name]["state"][pid][k]), (name, pid, k)
    if ca["ema"]:
        for k in ca["ema"]["model"]:
            assert torch.equal(ca["ema"]["model"][k], cb["ema"]["model"][k]), k


# --- run directory --------------------------------------------------------------------------
def test_run_directory_layout(toy, tmp_path):
    out = tmp_path / "run"
    result = zoo.train("toy", out=out, sets=MNIST_SETS + ["ema.enabled=true", "trainer.keep_checkpoints=2"])
    assert result.status == "finished" and result.step == 40
    for name in ("config.yaml", "meta.json", "metrics.jsonl", "samples.png", "checkpoints/last.pt",
                 "samples/step-000020.png", "samples/step-000040.png"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*.pt")) == ["step-000030.pt", "step-000040.pt"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["torch_version"] == torch.__version__ and meta["model"] == "toy"
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(5, 41, 5))
    assert {"loss", "mse", "lr", "images_per_s", "epoch"} <= set(rows[0])
    assert rows[-1]["loss"] < rows[0]["loss"]
    model = zoo.load_run(out)
    x = model.sample(6, torch.Generator().manual_seed(3))
    assert x.shape == (6, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, model.sample(6, torch.Generator().manual_seed(3)))


def test_refuses_to_overwrite_without_force(toy, tmp_path):
    out = tmp_path / "run"
    zoo.train("toy", out=out, sets=MNIST_SETS + ["trainer.max_steps=5"])
    with pytest.raises(ZooError, match="not empty: pass --force"):
        zoo.train("toy", out=out, sets=MNIST_SETS + ["trainer.max_steps=5"])
    (out / "notes.txt").write_text("mine")
    zoo.train("toy", out=out, sets=MNIST_SETS + ["trainer.max_steps=10"], force=True)
    assert metrics(out)[-1]["step"] == 10 and (out / "notes.txt").read_text() == "mine"


def test_budget_by_epochs(toy, tmp_path):
    result = zoo.train("toy", out=tmp_path / "r", sets=MNIST_SETS + [
        "data.limit=96", "trainer.max_steps=null", "trainer.max_epochs=2", "trainer.batch_size=32"])
    assert result.step == 6  # 96 images / 32 per batch * 2 epochs


def test_two_phase_model_logs_each_phase(toy, tmp_path):
    zoo.train("toygan", out=tmp_path / "r", sets=MNIST_SETS + ["trainer.max_steps=10"])
    row = metrics(tmp_path / "r")[-1]
    assert "d_loss" in row and "g_loss" in row and all(map(lambda v: v == v, (row["d_loss"], row["g_loss"])))


# --- resume -------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("model", ["toy", "toygan"])
def test_sigkill_then_resume_is_bitwise_identical(toy_site, tmp_path, model):
    common = ["--set=trainer.max_steps=60", "--set=trainer.checkpoint_every=20", "--set=trainer.log_every=7",
              "--set=ema.enabled=true", "--set=trainer.warmup_steps=10", *DATA]
    full, broken = tmp_path / "full", tmp_path / "broken"
    r = zoo_cli("train", model, "--out", str(full), *common, site=toy_site)
    assert r.returncode == 0, r.stderr
    # The process kills itself (SIGKILL) in the middle of step 47 -- after the step-40 checkpoint.
    kill_call = 47 * (3 if model == "toygan" else 1) - 1
    r = zoo_cli("train", model, "--out", str(broken), *common, f"--set=model.signal_at={kill_call}", site=toy_site)
    assert r.returncode == -signal.SIGKILL
    assert checkpoint.load(broken / "checkpoints" / "last.pt")["step"] == 40
    assert max(row["step"] for row in metrics(broken)) > 40  # logged past the checkpoint before dying
    r = zoo_cli("train", "--resume", "--out", str(broken), "--set=model.signal_at=null", site=toy_site)
    assert r.returncode == 0, r.stderr
    assert_same_state(full, broken)
    assert losses(full) == losses(broken)


def test_resume_extends_with_more_steps(toy, tmp_path):
    out = tmp_path / "r"
    zoo.train("toy", out=out, sets=MNIST_SETS + ["trainer.max_steps=20"])
    result = zoo.train(out=out, resume=True, sets=["trainer.max_steps=30"])
    assert result.step == 30 and metrics(out)[-1]["step"] == 30
    with pytest.raises(ZooError, match="does not exist"):
        zoo.train(out=tmp_path / "nowhere", resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match="not a zoo run directory"):
        zoo.train(out=tmp_path / "empty", resume=True)


@pytest.mark.slow
def test_sigterm_saves_and_exits_with_resume_hint(toy_site, tmp_path):
    out = tmp_path / "r"
    r = zoo_cli("train", "toy", "--out", str(out), *DATA, "--set=model.signal_at=13",
                "--set=model.signal=SIGTERM", site=toy_site)
    assert r.returncode == 130
    assert "zoo train --resume --out" in r.stdout  # the summary, on stdout (the log)
    assert checkpoint.load(out / "checkpoints" / "last.pt")["step"] == 13
    r = zoo_cli("train", "--resume", "--out", str(out), "--set=model.signal_at=null", site=toy_site)
    assert r.returncode == 0 and checkpoint.load(out / "checkpoints" / "last.pt")["step"] == 40


# --- checkpoints are safe -------------------------------------------------------------------
def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save({"step": 1, "w": torch.ones(3)}, path)

    def dying_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # the process is interrupted mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = checkpoint.load(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['ZOO_EXPLOIT_MARKER']}",))


def test_malicious_checkpoint_is_not_executed(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("ZOO_EXPLOIT_MARKER", str(marker))
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "model": Exploit()}, path)
    with pytest.raises(ZooError, match="refused"):
        checkpoint.load(path)
    assert not marker.exists()
    with open(tmp_path / "evil.pkl", "wb") as f:  # plain pickle too
        pickle.dump(Exploit(), f)
    with pytest.raises(ZooError):
        checkpoint.load(tmp_path / "evil.pkl")
    assert not marker.exists()


@pytest.mark.slow
def test_corrupt_and_mismatched_checkpoints_are_one_line_errors(toy, toy_site, tmp_path):
    out = tmp_path / "r"
    zoo.train("toy", out=out, sets=MNIST_SETS + ["trainer.max_steps=10"])
    last = out / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    r = zoo_cli("sample", str(out), "-n", "4", "--out", str(tmp_path / "g.png"), site=toy_site)
    assert r.returncode == 2 and "is damaged (truncated or corrupt)" in r.stderr and str(last) in r.stderr
    assert "Traceback" not in r.stderr
    last.write_bytes(data)
    with pytest.raises(ZooError, match="does not match"):
        zoo.train(out=out, resume=True, sets=["model.width=4", "trainer.max_steps=20"])


# --- non-finite losses ----------------------------------------------------------------------
@pytest.mark.slow
def test_nan_loss_stops_with_clear_message(toy_site, tmp_path):
    out = tmp_path / "r"
    r = zoo_cli("train", "toy", "--out", str(out), *DATA, "--set=model.fail_at=17",
                "--set=trainer.checkpoint_every=5", site=toy_site)
    assert r.returncode == 1
    assert "non-finite loss at step 17" in r.stderr and "loss=nan" in r.stderr and "Traceback" not in r.stderr
    assert checkpoint.load(out / "checkpoints" / "last.pt")["step"] == 15


def test_skip_nonfinite_counts_and_continues(toy, tmp_path):
    out = tmp_path / "r"
    zoo.train("toy", out=out, sets=MNIST_SETS + ["model.fail_at=38", "trainer.skip_nonfinite=true"])
    assert metrics(out)[-1]["skipped_nonfinite"] == 3


# --- sampling -----------------------------------------------------------------------------------
def test_zoo_sample_outputs(toy, toy_site, tmp_path):
    import numpy as np
    out = tmp_path / "r"
    zoo.train("toy", out=out, sets=MNIST_SETS + ["trainer.max_steps=10"])
    for target in ("a.npz", "b.npz", "grid.png", "pngs"):
        r = CliRunner().invoke(main, ["sample", str(out), "-n", "5", "--seed", "7", "--out", str(tmp_path / target)])
        assert r.exit_code == 0, r.output
    a, b = np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"]
    assert a.shape == (5, 28, 28, 1) and a.dtype == np.uint8 and (a == b).all()
    assert (tmp_path / "grid.png").is_file() and len(list((tmp_path / "pngs").glob("*.png"))) == 5
    r = CliRunner().invoke(main, ["sample", str(out), "-n", "5", "--out", str(tmp_path / "x.jpg")])
    assert r.exit_code == 2 and "use a .png" in r.output


# --- multi-process ------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_gloo_two_processes_match_one(toy_site, tmp_path):
    common = [*DATA, "--set=model.dropout=0.0", "--set=trainer.max_steps=12", "--set=trainer.batch_size=32",
              "--set=trainer.device=cpu"]
    r = zoo_cli("train", "toy", "--out", str(tmp_path / "one"), *common, site=toy_site)
    assert r.returncode == 0, r.stderr
    r = zoo_cli("train", "toy", "--gpus", "2", "--out", str(tmp_path / "two"), *common, site=toy_site)
    assert r.returncode == 0, r.stderr
    one = checkpoint.load(tmp_path / "one" / "checkpoints" / "last.pt")
    two = checkpoint.load(tmp_path / "two" / "checkpoints" / "last.pt")
    for k in one["model"]:
        torch.testing.assert_close(one["model"][k], two["model"][k], rtol=1e-4, atol=1e-5)
    l1, l2 = metrics(tmp_path / "one")[-1]["loss"], metrics(tmp_path / "two")[-1]["loss"]
    assert abs(l1 - l2) < 1e-4 * max(1.0, abs(l1))


@pytest.mark.slow
def test_torchrun_one_process_trains_under_ddp_and_matches_a_plain_run(toy_site, tmp_path):
    """``torchrun --nproc-per-node=1`` joins a process group of one (what tests/test_cuda.py runs on one
    GPU): the DDP path, the same weights as a plain run."""
    common = [*DATA, "--set=model.dropout=0.0", "--set=trainer.max_steps=6", "--set=trainer.batch_size=32",
              "--set=trainer.device=cpu"]
    r = zoo_cli("train", "toy", "--out", str(tmp_path / "plain"), *common, site=toy_site)
    assert r.returncode == 0, r.stderr
    r = zoo_cli("--standalone", "--nproc-per-node=1", "-m", "zoo", "train", "toy", "--out",
                str(tmp_path / "ddp"), *common, module="torch.distributed.run", site=toy_site)
    assert r.returncode == 0, r.stderr
    assert "1 process under DistributedDataParallel" in r.stdout  # the header, on stdout when piped
    plain = checkpoint.load(tmp_path / "plain" / "checkpoints" / "last.pt")
    ddp = checkpoint.load(tmp_path / "ddp" / "checkpoints" / "last.pt")
    for k in plain["model"]:
        torch.testing.assert_close(plain["model"][k], ddp["model"][k], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_gan_phases_under_ddp_two_processes(tmp_path):
    """A GAN's d and g phases each run through their own DDP (zoo/distributed.py); the replicas must
    end with the same weights -- the trainer checks that at every save and fails loudly otherwise."""
    out = tmp_path / "gan"
    r = zoo_cli("train", "gan", "--preset", "tiny", "--gpus", "2", "--device", "cpu", "--out", out, *DATA,
                "--set=trainer.max_steps=6", "--set=trainer.batch_size=32", "--set=trainer.log_every=3",
                "--set=trainer.checkpoint_every=3", "--quiet", timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "meta.json").read_text())["world_size"] == 2
    rows = metrics(out)
    assert [row["step"] for row in rows] == [3, 6]
    assert all(math.isfinite(row[k]) for row in rows for k in ("d_loss", "g_loss"))
    assert checkpoint.load(out / "checkpoints" / "last.pt")["step"] == 6


# --- evaluation is the caller's callback --------------------------------------------------------------
def test_evaluate_callback_rows_and_best_checkpoint(toy, tmp_path):
    seen = []

    def evaluate(model):
        seen.append((model.training, torch.is_grad_enabled()))
        return {"score": [3.0, 1.0, 2.0][len(seen) - 1], "other": 7}

    out = tmp_path / "r"
    zoo.train("toy", out=out, sets=MNIST_SETS + ["trainer.max_steps=30", "trainer.eval_every=10", "ema.enabled=true"],
              evaluate=evaluate)
    rows = [row for row in metrics(out) if "score" in row]
    assert [(row["step"], row["score"], row["other"]) for row in rows] == [(10, 3.0, 7.0), (20, 1.0, 7.0),
                                                                           (30, 2.0, 7.0)]
    assert seen == [(False, False)] * 3  # eval mode, no autograd
    best = checkpoint.load(out / "checkpoints" / "best.pt")
    assert best["step"] == 20 and best["best"] == {"metric": "score", "value": 1.0, "step": 20}
    from zoo.registry import model_config
    from zoo.trainer import fit
    with pytest.raises(ZooError, match="no evaluate callback"):
        fit(model_config("toy", sets=MNIST_SETS + ["trainer.eval_every=5"]), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_evaluation_sees_the_model_after_training_as_a_finished_run_would(tmp_path):
    """The AE samples from a density fitted to its codes in ``after_training``: a periodic FID (and so
    best.pt) must score that, not draws from the unfitted N(0, I) prior."""
    seen = []

    def evaluate(model):
        seen.append(bool(model.density.fitted))
        return {"fid": float(len(seen))}

    out = tmp_path / "ae"
    zoo.train("ae", preset="tiny", out=out, sets=MNIST_SETS + ["trainer.max_steps=20", "trainer.eval_every=10"],
              evaluate=evaluate, quiet=True)
    assert seen == [True, True]
    best = checkpoint.load(out / "checkpoints" / "best.pt")
    assert best["ema"] is None and bool(best["model"]["density.fitted"]) and best["step"] == 10


def test_eval_max_minutes_bounds_the_wall_clock_of_periodic_evaluations(toy, tmp_path, capsys):
    """Evaluation time is not training time, so a time budget alone does not bound it (zoo compare's
    periodic FID once took minutes per training step): trainer.eval_max_minutes does."""
    import time

    def evaluate(model):
        time.sleep(0.1)
        return {"fid": 1.0}

    out = tmp_path / "r"
    zoo.train("toy", out=out, quiet=True, evaluate=evaluate, sets=MNIST_SETS + [
        "trainer.max_steps=30", "trainer.eval_every=1", "trainer.eval_max_minutes=0.005"])  # 0.3 s: about 3 of 30
    rows = [row for row in metrics(out) if "fid" in row]
    assert 2 <= len(rows) <= 4, rows
    assert rows[-1]["eval_seconds"] <= 0.3 + 0.1 + 0.05 and rows[0]["eval_seconds"] >= 0.1
    said = "".join(capsys.readouterr())  # the trainer's lines: stdout or stderr, as the log goes
    assert said.count("no more periodic evaluations") == 1 and "trainer.eval_max_minutes=0.005" in said
    assert checkpoint.load(out / "checkpoints" / "last.pt")["step"] == 30  # training itself goes on


class StepClock:
    """Stands in for the trainer's ``time`` module: ``perf_counter`` advances 2.5 s per call (a training step
    of the toy model reads 2.5 s), so which step passes a minute mark is the same on every machine and on
    resume."""
    def __init__(self):
        import time
        self.now, self.real = 0.0, time

    def perf_counter(self):
        self.now += 2.5
        return self.now

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_eval_at_minutes_evaluates_once_at_the_first_step_past_each_mark_and_resumes(toy, tmp_path, monkeypatch):
    """trainer.eval_at_minutes: a FID at fixed minutes of training (a study's table at 1/3/10/30 minutes),
    exactly once each, at the first step whose training clock has passed it (two marks inside one step: one
    FID) -- also across a resume, which neither repeats a mark passed before the interruption nor skips one
    after it."""
    import zoo.trainer
    monkeypatch.setattr(zoo.trainer, "time", StepClock())

    def evaluate(model):
        return {"fid": 1.0}
    marks = [0.2, 0.205, 0.5, 1, 2]  # 12, 12.3, 30, 60, 120 s
    sets = MNIST_SETS + [f"trainer.eval_at_minutes={marks}", "trainer.log_every=1", "trainer.checkpoint_every=0"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    zoo.train("toy", out=whole, quiet=True, evaluate=evaluate, sets=sets + ["trainer.max_steps=60"])
    clock = {r["step"]: r["time"] for r in metrics(whole) if "loss" in r}
    assert clock[1] == 2.5 and clock[60] == 150.0, clock
    want = sorted({min(s for s, t in clock.items() if t >= 60 * m) for m in marks})
    assert want == [5, 12, 24, 48]
    assert [r["step"] for r in metrics(whole) if "fid" in r] == want
    zoo.train("toy", out=part, quiet=True, evaluate=evaluate, sets=sets + ["trainer.max_steps=20"])
    zoo.train(resume=True, out=part, quiet=True, evaluate=evaluate, sets=["trainer.max_steps=60"])
    assert [r["step"] for r in metrics(part) if "fid" in r] == want


@pytest.mark.slow
def test_trainer_imports_no_evaluation_code():
    code = "import sys, zoo.trainer; sys.exit('zoo.evaluate' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- schedules and EMA ------------------------------------------------------------------------------
def test_lr_schedules():
    from zoo.schedules import lr_lambda
    f = lr_lambda(warmup=10, schedule="cosine", min_ratio=0.1, total_steps=110, time_fraction=None,
                  model_factor=lambda s: 1.0)
    assert f(4) == pytest.approx(0.5) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    f = lr_lambda(warmup=0, schedule="linear", min_ratio=0.0, total_steps=100, time_fraction=None,
                  model_factor=lambda s: 2.0)
    assert f(25) == pytest.approx(1.5)
    f = lr_lambda(warmup=0, schedule="cosine", min_ratio=0.0, total_steps=None, time_fraction=lambda: 0.5,
                  model_factor=lambda s: 1.0)
    assert f(7) == pytest.approx(0.5)  # by the share of trainer.max_minutes used


def test_cosine_schedule_reaches_min_lr_at_the_budget(toy, tmp_path):
    out = tmp_path / "r"
    zoo.train("toy", out=out, sets=MNIST_SETS + ["trainer.max_steps=20", "trainer.warmup_steps=5",
                                                  "trainer.log_every=1", "trainer.lr_schedule=cosine",
                                                  "trainer.min_lr_ratio=0.1"])
    lr = {row["step"]: row["lr"] for row in metrics(out)}
    assert lr[3] == pytest.approx(3e-3 * 0.8) and lr[5] == pytest.approx(3e-3) and lr[20] == pytest.approx(3e-4)


def test_power_ema_is_the_power_weighted_average():
    from zoo.ema import EMA, sigma_rel_to_gamma
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.01)   # Karras et al. 2024's pairs
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=0.01)
    net = torch.nn.Linear(1, 1, bias=False).double()
    gamma, xs = 2.5, torch.randn(50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ema = EMA(net, kind="power", gamma=gamma)
    for t, x in enumerate(xs, 1):
        net.weight.data.fill_(x)
        ema.update(net, t)
    i = torch.arange(1, 51, dtype=torch.float64)
    expected = (((i ** (gamma + 1) - (i - 1) ** (gamma + 1)) * xs).sum() / 50 ** (gamma + 1)).item()
    assert ema.model.weight.item() == pytest.approx(expected, rel=1e-9)


def test_power_ema_from_config(toy, tmp_path):
    out = tmp_path / "r"
    zoo.train("toy", out=out, sets=MNIST_SETS + ["trainer.max_steps=5", "ema.enabled=true", "ema.kind=power",
                                                  "ema.sigma_rel=0.1"])
    assert checkpoint.load(out / "checkpoints" / "last.pt")["ema"]["updates"] == 5


# --- the sample grids, TensorBoard ------------------------------------------------------------------
def test_final_grid_is_bounded_in_time(toy, tmp_path, capsys):
    from PIL import Image
    out = tmp_path / "r"
    zoo.train("toy", out=out, sets=MNIST_SETS + ["trainer.max_steps=5", "trainer.n_samples=64",
                                                  "trainer.grid_seconds=1e-9"])
    assert Image.open(out / "samples.png").size == (92, 92)  # the first 8 images (3 x 3 grid of 28 + 2 px)
    assert "samples.png: 8 of 64 images (trainer.grid_seconds=1e-09 reached)" in capsys.readouterr().out
    zoo.train("toy", out=out, force=True, sets=MNIST_SETS + ["trainer.max_steps=5", "trainer.n_samples=64",
                                                             "trainer.grid_seconds=null"])
    assert Image.open(out / "samples.png").size == (242, 242)  # all 64


def test_tensorboard_mirrors_metrics(toy, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / "r"
    zoo.train("toy", out=out, sets=MNIST_SETS + ["trainer.max_steps=20", "trainer.sample_every=10",
                                                  "trainer.tensorboard=true"])
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    loss = {e.step: e.value for e in events.Scalars("loss")}
    assert loss == pytest.approx({row["step"]: row["loss"] for row in metrics(out)})
    assert [e.step for e in events.Images("samples")] == [10, 20] and [e.step for e in events.Images("final")] == [20]

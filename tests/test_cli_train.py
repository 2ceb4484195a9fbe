"""`zoo train` as a user meets it, run as a subprocess: Ctrl-C, the header and progress, the recorded
data root, no debris after a failure, --gpus without a GPU, TensorBoard not installed."""
import fcntl
import os
import pty
import re
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
import torch
import yaml

from conftest import MNIST_ROOT, MNIST_SETS
from helpers import zoo_cli, zoo_env
from plugin_env import make_dist, toy_dist
from zoo import checkpoint

DATA = [f"--set={s}" for s in MNIST_SETS]
pytestmark = pytest.mark.slow  # every test here runs `zoo train` in a fresh process, as a user does: seconds each

SIZED = '''
from zoo import hookimpl
from toyzoo import Toy

class Sized(Toy):
    """The toy with device-sized presets, like the built-in models that have a `cpu` preset."""
    presets = {"cpu": {"model": {"width": 4}}, "gpu": {"model": {"width": 16}}, "tiny": {}}

@hookimpl
def zoo_register_models(register):
    register(Sized, name="sized")
'''

# A `zoo` whose checkpoint writes hang (half written) from step 6 on: a second Ctrl-C lands mid-save.
SLOW_SAVE = '''
import sys, time, torch
real_save = torch.save
def slow_save(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and obj.get("step", 0) > 5:
        f.write(b"PK half a checkpoint")
        f.flush()
        time.sleep(120)
    return real_save(obj, f, *args, **kwargs)
torch.save = slow_save
from zoo.cli import main
main(prog_name="zoo")
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = toy_dist(tmp_path_factory.mktemp("site"))
    make_dist(root, "zoo-sized", {"sized": "sizedzoo"}, {"sizedzoo": SIZED})
    (root / "slowsave.py").write_text(SLOW_SAVE)
    return root


def zoo(site, *args, cwd=None, timeout=300, **env):
    """``python -m zoo ARGS`` with ``site``'s plugins (tests/helpers.py's zoo_cli, site first as these tests read)."""
    return zoo_cli(*args, site=site, cwd=cwd, env=env, timeout=timeout)


def start(site, *args, script=None):
    cmd = [sys.executable, str(site / script)] if script else [sys.executable, "-m", "zoo"]
    return subprocess.Popen([*cmd, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=zoo_env(site))


def wait_for(condition, proc, timeout=120):
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def one_line_error(r, *fragments):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    for f in fragments:
        assert f in r.stderr, r.stderr


# --- Ctrl-C ------------------------------------------------------------------------------------------
def test_ctrl_c_finishes_the_step_saves_and_prints_the_resume_command(site, tmp_path):
    out = tmp_path / "run"
    proc = start(site, "train", "toy", "--out", out, *DATA, "--set=trainer.max_steps=100000",
                 "--set=trainer.checkpoint_every=0", "--set=trainer.n_samples=64")
    wait_for(lambda: (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().strip(), proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    took = time.monotonic() - sent
    assert proc.returncode == 130, stderr
    assert "SIGINT: stopping after this step and saving a checkpoint -- Ctrl-C again to stop now" in stdout
    assert "Traceback" not in stderr and "finished" not in stdout
    assert re.search(r"^SIGINT: stopped at step (\d+), checkpoint saved$", stdout, re.M), stdout
    m = re.search(r"^interrupted: (\d+) steps in [\d.]+s -> \S+; checkpoint saved\. "
                  r"Resume with: (zoo train --resume --out \S+)$", stdout.splitlines()[-1])  # the summary, last
    assert m, stdout
    step = int(m.group(1))
    assert checkpoint.load(out / "checkpoints" / "last.pt")["step"] == step
    assert not (out / "samples.png").exists()  # no final grid on an interrupt
    assert took < 60, took  # seconds, not the minutes a final grid can take
    # The printed command resumes the run.
    r = zoo(site, *shlex.split(m.group(2))[1:], f"--set=trainer.max_steps={step + 3}")
    assert r.returncode == 0, r.stderr
    assert checkpoint.load(out / "checkpoints" / "last.pt")["step"] == step + 3 and (out / "samples.png").is_file()


def test_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(site, tmp_path):
    """The second press counts however soon it follows the first (it used to be dropped within 1 s)."""
    out = tmp_path / "run"
    proc = start(site, "train", "toy", "--out", out, *DATA, "--set=trainer.max_steps=100000",
                 "--set=trainer.checkpoint_every=5", script="slowsave.py")
    folder = out / "checkpoints"
    wait_for(lambda: (folder / "last.pt").is_file(), proc)            # step 5 saved
    wait_for(lambda: list(folder.glob(".last.pt.*.tmp")), proc)      # the step-10 save hangs half written
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 30  # the save would have hung for 120 s
    assert proc.returncode == 130, stderr
    assert "SIGINT: stopping after this step and saving a checkpoint -- Ctrl-C again to stop now" in stdout
    assert "Traceback" not in stderr
    assert f"stopped at once; checkpoints/last.pt from step 5 is kept. Resume with: zoo train --resume --out {out}" \
        in stdout, stdout
    assert checkpoint.load(folder / "last.pt")["step"] == 5
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt"]  # the half-written file is gone


def test_ctrl_c_in_the_last_step_is_still_an_interrupt(site, tmp_path):
    """A signal that lands as the budget ends (or while the final grid is drawn) skips samples.png: the
    summary says interrupted, with the resume command, and the exit code is 130 -- never "finished", 0."""
    out = tmp_path / "run"
    r = zoo(site, "train", "toy", "--out", out, *DATA, "--set=model.signal_at=40", "--set=model.signal=SIGINT")
    assert r.returncode == 130, r.stdout + r.stderr
    assert "samples.png skipped (interrupted); the checkpoint is saved" in r.stdout
    assert "finished" not in r.stdout and "Traceback" not in r.stderr
    took = r.stdout.split(' steps in ')[-1].split('s ->')[0]
    assert r.stdout.splitlines()[-1] == (f"interrupted: 40 steps in {took}s"
                                         f" -> {out}; checkpoint saved. Resume with: zoo train --resume --out {out}")
    assert not (out / "samples.png").exists()
    r = zoo(site, "train", "--resume", "--out", out)  # the resume command draws what was skipped
    assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith("finished: 40 steps"), r.stdout + r.stderr
    assert (out / "samples.png").is_file()


# --- header and progress ----------------------------------------------------------------------------
def test_piped_header_progress_lines_and_summary_are_on_stdout(site, tmp_path):
    """`zoo train ... | tee log` (or > log) keeps the whole log: header, ETA, progress lines and the summary
    are on stdout; stderr has nothing when nothing is wrong."""
    out = tmp_path / "run"
    r = zoo(site, "train", "toy", "--out", out, *DATA, "--set=trainer.progress_seconds=0.01")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == f"zoo train toy -> {out}"
    assert re.match(r"  model   toy, [\d.]+k? parameters; model defaults \(no preset\)$", lines[1]), lines[1]
    assert lines[2] == "  device  cpu, fp32, 1 process"
    assert lines[3] == f"  data    mnist (split test), 9,000 images, from {MNIST_ROOT.resolve()}"
    assert lines[4] == "  budget  40 steps (281 batches of 32 per epoch)"
    progress = [line for line in lines if line.startswith("toy: step ")]
    assert progress and all(re.match(r"toy: step \d+/40 \| loss [\d.e+-]+ mse [\d.e+-]+ \| [\d,]+ img/s \| "
                                     r"elapsed \d+s( \| ETA \d+s)?$", line) for line in progress), progress
    assert any(line.startswith("ETA ") for line in lines)
    assert re.match(rf"finished: 40 steps in [\d.]+s -> {re.escape(str(out))}$", lines[-1]), lines[-1]
    assert "\r" not in r.stdout and "█" not in r.stdout  # no bar where there is no terminal


def on_a_terminal(site, *args, stdout_too=True):
    """Run `zoo` with stderr (and stdout, unless ``stdout_too`` is false: `zoo ... | tee log` in a terminal)
    on a pseudo-terminal. Returns (exit code, what the terminal shows, what went to the stdout pipe)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "zoo", *map(str, args)], stderr=slave,
                            stdout=slave if stdout_too else subprocess.PIPE, env=zoo_env(site))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the pty closes when the process exits
            break
        if not data:
            break
        chunks.append(data)
    piped = proc.stdout.read().decode() if proc.stdout else ""
    proc.wait(timeout=300)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace"), piped


def test_progress_bar_on_a_terminal(site, tmp_path):
    rc, text, _ = on_a_terminal(site, "train", "toy", "--out", tmp_path / "run", *DATA,
                                "--set=trainer.progress_seconds=0.01")
    assert rc == 0, text
    assert "zoo train toy ->" in text and "40/40" in text and re.search(r"step/s|s/step", text)  # tqdm's bar
    assert "toy: step " not in text  # plain lines are for logs, not terminals
    assert "finished: 40 steps" in text


def test_piped_into_tee_from_a_terminal_the_log_gets_the_lines(site, tmp_path):
    """`zoo train ... | tee log`: stderr is still the terminal, but the log (stdout) gets the plain lines."""
    out = tmp_path / "run"
    rc, text, piped = on_a_terminal(site, "train", "toy", "--out", out, *DATA,
                                    "--set=trainer.progress_seconds=0.01", stdout_too=False)
    assert rc == 0, text
    assert text == ""  # no bar drawn beside the lines tee shows
    lines = piped.splitlines()
    assert lines[0] == f"zoo train toy -> {out}" and any(line.startswith("toy: step ") for line in lines), piped
    assert lines[-1].startswith("finished: 40 steps in "), piped


@pytest.mark.slow
def test_a_time_budget_shows_the_time_left(site, tmp_path):
    budget = ["--set=trainer.max_steps=null", "--set=trainer.max_minutes=0.05", "--set=trainer.checkpoint_every=0",
              "--set=trainer.sample_every=0", "--set=trainer.progress_seconds=0.5"]
    rc, text, _ = on_a_terminal(site, "train", "toy", "--out", tmp_path / "tty", *DATA, *budget)
    assert rc == 0, text
    # the bar is over the 3 s budget: "toy:  40%|####      | step 812, 1s of 3s, 2s left, 312.5 steps/s, loss ..."
    assert re.search(r"toy: +\d+%\|.*\| step [\d,]+, \d+s of 3s, \d+s left", text), text
    r = zoo(site, "train", "toy", "--out", tmp_path / "log", *DATA, *budget)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("toy: step ")]
    assert lines and all(re.search(r" \| elapsed \d+s of 3s \| \d+s left$", line) for line in lines), r.stdout


def test_gpu_sized_configuration_on_a_cpu_warns_once_even_when_quiet(site, tmp_path):
    r = zoo(site, "train", "sized", "--preset", "gpu", "--device", "cpu", "--quiet", "--out", tmp_path / "gpu", *DATA)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr  # --quiet: no header, no progress; the warning stays
    assert re.match(r"warning: sized with preset gpu is sized for a GPU and this run is on the CPU: ETA \S+ "
                    r"\(.*\)\. For a CPU-sized run: zoo train sized --preset cpu$", lines[0]), lines[0]
    r = zoo(site, "train", "sized", "--preset", "cpu", "--device", "cpu", "--quiet", "--out", tmp_path / "cpu", *DATA,
            "--set=trainer.max_steps=25")
    assert r.returncode == 0 and r.stderr == "", r.stderr


# --- the data root is part of the run ----------------------------------------------------------------
def test_resume_uses_the_recorded_data_root(site, tmp_path):
    def copy_of_mnist(name):
        d = tmp_path / name
        d.mkdir()
        for f in MNIST_ROOT.glob("t10k-*"):
            (d / f.name).symlink_to(f.resolve())
        return d
    a, b, out = copy_of_mnist("data-a"), copy_of_mnist("data-b"), tmp_path / "run"
    r = zoo(site, "train", "toy", "--out", out, *DATA, "--set=trainer.max_steps=10", ZOO_DATA=str(a))
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["root"] == str(a.resolve())
    # The printed resume command works without the environment it started in ...
    r = zoo(site, "train", "--resume", "--out", out, "--set=trainer.max_steps=20", ZOO_DATA=None)
    assert r.returncode == 0 and "note:" not in r.stderr, r.stderr
    # ... the run's own root wins over a ZOO_DATA that now points elsewhere, and says so in one line ...
    r = zoo(site, "train", "--resume", "--out", out, "--set=trainer.max_steps=30", ZOO_DATA=str(b))
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if line.startswith("note:")]
    assert notes == [f"note: resuming on this run's data root {a.resolve()} (config.yaml), not ZOO_DATA={b}; "
                     f"pass --set data.root={b} to switch"]
    # ... and a recorded root that is gone is a one-line error naming the fix.
    for f in a.iterdir():
        f.unlink()
    a.rmdir()
    r = zoo(site, "train", "--resume", "--out", out, "--set=trainer.max_steps=40", ZOO_DATA=str(b))
    one_line_error(r, f"this run's data root '{a.resolve()}'", "no longer exists", f"--set data.root={b}")


# --- a failed start leaves nothing behind, --gpus without a GPU -------------
@pytest.mark.parametrize("args, message", [
    (["--set=data.root=nowhere", "--out", "deep/er/run"], "data root 'nowhere' (from data.root) does not exist"),
    (["--set=trainer.batch_size=20000"], "larger than the 9000 training images"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--set=trainer.tensorboard=true"], "pip install 'zoo[tensorboard]'"),
])
def test_failed_train_leaves_no_run_directory(site, tmp_path, args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is here")
    blocker = tmp_path / "no-tensorboard"  # an installed-looking tensorboard that fails to import
    (blocker / "tensorboard").mkdir(parents=True)
    (blocker / "tensorboard" / "__init__.py").write_text("raise ImportError('not installed')\n")
    work = tmp_path / "work"
    work.mkdir()
    r = zoo(site, "train", "toy", *DATA, *args, cwd=work, PYTHONPATH=f"{blocker}{os.pathsep}{site}")
    one_line_error(r, message)
    assert list(work.iterdir()) == [], list(work.iterdir())  # no runs/toy-TIMESTAMP, no deep/er/


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_gpus_without_a_gpu_is_an_error_unless_cpu_is_asked_for(site, tmp_path):
    r = zoo(site, "train", "toy", "--gpus", "2", *DATA, cwd=tmp_path)
    one_line_error(r, "--gpus 2 but no GPU is visible here", "--device cpu")
    assert list(tmp_path.iterdir()) == []

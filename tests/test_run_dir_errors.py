"""A run directory as a user meets it when something is wrong (issue 22.3, 22.4), run as subprocesses: one
writer at a time, an --out that cannot be written, a damaged checkpoint, a missing run directory, a
diverged run -- each one `error:` line with its exit code, never a traceback."""
import os
import shutil
import signal
import sys

import pytest

from plugin_env import toy_dist
from test_cli_train import DATA, one_line_error, start, wait_for, zoo
from zoo import checkpoint


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return toy_dist(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def trained(site, tmp_path_factory):
    """A finished toy run of 10 steps that kept checkpoints/step-000010.pt next to last.pt."""
    out = tmp_path_factory.mktemp("trained") / "run"
    r = zoo(site, "train", "toy", "--out", out, *DATA, "-q", "--set=trainer.max_steps=10",
            "--set=trainer.keep_checkpoints=1")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run, free to damage."""
    return shutil.copytree(trained, tmp_path / "run")


# --- one writer per run directory (22.3) --------------------------------------------------------------
@pytest.mark.slow
def test_second_writer_is_refused_with_the_first_ones_pid_and_a_killed_writer_does_not_block(site, tmp_path):
    out = tmp_path / "run"
    first = start(site, "train", "toy", "--out", out, *DATA, "-q", "--set=trainer.max_steps=1000000",
                  "--set=trainer.checkpoint_every=5")
    try:
        wait_for(lambda: (out / "checkpoints" / "last.pt").is_file(), first)
        busy = f"run directory '{out}' is in use by another zoo process, PID {first.pid} (zoo train toy"
        one_line_error(zoo(site, "train", "--resume", "--out", out), busy)
        one_line_error(zoo(site, "train", "toy", "--out", out, "--force", *DATA), busy)
        assert first.poll() is None  # the first run trains on, untouched
    finally:
        first.kill()  # SIGKILL: the lock file stays behind, the kernel frees the lock
        first.wait()
    assert first.returncode == -signal.SIGKILL and (out / ".zoo.lock").is_file()
    step = checkpoint.load(out / "checkpoints" / "last.pt")["step"]
    r = zoo(site, "train", "--resume", "--out", out, "-q", f"--set=trainer.max_steps={step + 2}")
    assert r.returncode == 0, r.stderr
    assert checkpoint.load(out / "checkpoints" / "last.pt")["step"] == step + 2
    assert not (out / ".zoo.lock").exists()  # a finished run leaves no lock file


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="CPU DDP test (gloo) as the other --gpus tests")
def test_second_writer_under_ddp_is_refused_by_the_main_process(site, run):
    holder = start(site, "train", "--resume", "--out", run, "-q", "--set=trainer.max_steps=1000000")
    try:
        wait_for(lambda: (run / ".zoo.lock").is_file() and (run / ".zoo.lock").read_text().strip(), holder)
        r = zoo(site, "train", "--resume", "--out", run, "--gpus", "2", "--device", "cpu")
    finally:
        holder.kill()
        holder.wait()
    # the main process's line alone: not one per process, no torchrun report
    one_line_error(r, f"error: run directory '{run}' is in use by another zoo process, PID {holder.pid}")


# --- an --out that cannot be written (22.4) ----------------------------------------------------------
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc and /sys")
@pytest.mark.parametrize("out, why", [
    ("/sys/x", "permission denied in '/sys'"),
    ("/proc/x", "'/proc' does not accept new files"),
    ("FILE/x", "is a file, not a folder"),
])
def test_train_into_an_unwritable_out_is_one_line(site, tmp_path, out, why):
    (tmp_path / "FILE").write_text("a file, not a folder")
    r = zoo(site, "train", "toy", "--out", out, *DATA, cwd=tmp_path)
    one_line_error(r, f"error: run directory '{out}' cannot be written: ", why)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc and /sys")
@pytest.mark.parametrize("out, why", [
    ("/proc/x.png", "'/proc' does not accept new files"),
    ("/sys/x", "permission denied in '/sys'"),
    ("FILE/x.png", "is a file, not a folder"),
])
def test_sample_to_an_unwritable_out_is_one_line(site, trained, tmp_path, out, why):
    (tmp_path / "FILE").write_text("a file, not a folder")
    r = zoo(site, "sample", trained, "-n", "2", "--out", out, cwd=tmp_path)
    one_line_error(r, f"error: --out '{out}' cannot be written: ", why)


# --- a damaged checkpoint (22.4) -------------------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["train", "--resume", "--out", "{run}"],
    ["sample", "{run}", "-n", "2", "--out", "g.png"],
    ["eval", "{run}", "-n", "10", "--metrics", "fid"],
])
def test_truncated_checkpoint_names_the_file_and_how_to_start_over(site, run, tmp_path, command):
    for spare in (run / "checkpoints").glob("step-*.pt"):
        spare.unlink()
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:5000])
    r = zoo(site, *[a.format(run=run) for a in command], cwd=tmp_path)
    one_line_error(r, f"error: checkpoint '{last}' is damaged (truncated or corrupt); no other checkpoint is kept "
                      f"in {last.parent}; start over: zoo train toy -c {run}/config.yaml --out {run} --force")


@pytest.mark.slow
def test_damaged_checkpoint_points_at_the_kept_one_and_that_advice_works(site, run, tmp_path):
    last, spare = run / "checkpoints" / "last.pt", run / "checkpoints" / "step-000010.pt"
    last.write_bytes(b"garbage\n")
    r = zoo(site, "sample", run, "-n", "2", "--out", tmp_path / "g.png")
    one_line_error(r, f"checkpoint '{last}' is damaged", "use the other checkpoint it kept with --checkpoint "
                                                         "step-000010.pt")
    r = zoo(site, "train", "--resume", "--out", run, "--set=trainer.max_steps=12")
    one_line_error(r, f"checkpoint '{last}' is damaged (truncated or corrupt); resume from step-000010.pt, the "
                      f"newest other checkpoint it kept: cp {spare} {last}, then zoo train --resume --out {run} again")
    shutil.copy(spare, last)  # as the message says
    r = zoo(site, "train", "--resume", "--out", run, "-q", "--set=trainer.max_steps=12")
    assert r.returncode == 0, r.stderr
    assert checkpoint.load(last)["step"] == 12


# --- a missing run directory (22.4) ------------------------------------------------------------------------
@pytest.mark.parametrize("command, message", [
    (["sample", "runs/nope", "-n", "2", "--out", "g.png"], "run directory 'runs/nope' does not exist"),
    (["eval", "runs/nope"], "run directory 'runs/nope' does not exist"),
    (["train", "--resume", "--out", "runs/nope"], "run directory 'runs/nope' does not exist"),
    (["sample", "runs/empty", "-n", "2", "--out", "g.png"], "'runs/empty' is not a zoo run directory (no config.yaml)"),
])
def test_missing_run_directory_says_it_does_not_exist(site, tmp_path, command, message):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    one_line_error(zoo(site, *command, cwd=tmp_path), f"error: {message}")


# --- divergence: exit 1, one line, no torch warning (22.4) ---------------------------------------------------
def test_diverged_run_is_one_line_with_exit_code_1(site, tmp_path):
    r = zoo(site, "train", "toy", "--out", tmp_path / "run", *DATA, "-q", "--set=model.fail_at=3")
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error: non-finite loss at step 3 (phase main): loss=nan") and \
        r.stderr.count("\n") == 1, r.stderr  # no UserWarning from torch before it
    assert "Exit codes: 0 done; 1 the work failed (training diverged" in zoo(site, "--help").stdout

"""benchmarks/gpu_suite.py on the CPU: `--smoke` runs every stage at tiny sizes and writes the summary a GPU run
writes; a failing CUDA test stops it; `--detach ... --pack` (how it runs on a lent GPU machine) starts it once,
waits, and packs the results. Structure and honesty are checked, never a speed."""
import importlib.util
import json
import math
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "benchmarks" / "gpu_suite.py"
STAGES = ["cuda", "train", "sample", "eval", "study"]


def run_suite(*args, timeout=900):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("ZOO_GPU_SUITE_COMMAND", None)
    return subprocess.run([sys.executable, str(SUITE), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout)


def positive(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def cuda_test_dir(tmp_path, body: str) -> Path:
    d = tmp_path / "cudatests"
    d.mkdir()
    (d / "test_marked.py").write_text(textwrap.dedent(f"""
        import pytest

        @pytest.mark.cuda
        def test_marked():
            {body}

        def test_not_marked_is_not_run():
            assert False, "pytest -m cuda must not run this"
    """))
    return d


@pytest.mark.slow
def test_smoke_runs_every_stage_and_writes_the_summary(tmp_path, mnist_root):
    out = tmp_path / "gpu"
    r = run_suite("--smoke", "--out", out, "--data", mnist_root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["mode"] == "smoke" and s["status"] == "finished" and s["finished"]
    assert "--smoke" in s["command"] and str(out) in s["command"]
    assert s["env"]["torch"] == torch.__version__ and s["env"]["device_name"] and s["env"]["data"]["ok"]
    assert s["env"]["source_digest"] == load_suite().source_digest()
    assert list(s["stages"]) == STAGES
    for name, st in s["stages"].items():
        assert st["status"] in ("ok", "skipped"), (name, st)
        if st["status"] == "skipped":
            assert st.get("reason"), name
    md = (out / "summary.md").read_text()
    assert all(f"| {name} | {s['stages'][name]['status']} |" in md for name in STAGES)

    cuda = s["stages"]["cuda"]  # collected from tests/test_cuda.py; skipped where there is no GPU
    assert cuda["collected"] >= 10 and cuda["failed"] == 0
    if not torch.cuda.is_available():
        assert cuda["status"] == "skipped" and cuda["skipped"] == cuda["collected"] and "CUDA" in cuda["reason"]
    assert (out / "cuda-tests.xml").is_file()

    peer = s["env"]["peer"]["ok"]
    train = s["stages"]["train"]
    assert train["status"] == "ok" and positive(train["peak"]["tflops"])
    assert positive(train["flops"]["zoo"]["train_gflop"]) and positive(train["flops"]["zoo"]["forward_gflop"])
    zoo_rows = [r for r in train["rows"] if r["who"] == "zoo"]
    assert zoo_rows and all(positive(r["images_per_s"]) and positive(r["mfu"]) for r in zoo_rows)
    assert all(r["steps"] == 8 and len(r["windows_images_per_s"]) == 4 for r in zoo_rows)
    assert (out / "train" / "zoo-default" / "checkpoints" / "last.pt").is_file()
    peer_rows = [r for r in train["rows"] if r["who"].startswith("peer")]
    if peer:  # the peer's Trainer and raw step, on a U-Net picked by FLOPs
        assert {r["who"] for r in peer_rows} == {"peer", "peer-raw"}
        assert all(positive(r["images_per_s"]) for r in peer_rows), peer_rows
        assert train["flops"]["peer"]["dim"] % 8 == 0 and positive(zoo_rows[0]["x_peer_trainer"])
    else:
        assert not peer_rows and "not installed" in train["peer_note"]

    sample = s["stages"]["sample"]
    zoo_sampled = {r["sampler"]: r for r in sample["rows"] if r["who"] == "zoo"}
    assert positive(zoo_sampled["ddim-10"]["images_per_s"]) and positive(zoo_sampled["ddim-10"]["tflops"])
    from zoo.registry import registry
    if "dpm++" in (registry().model("ddpm").cls.sample_options["sampler"].choices or ()):
        assert positive(zoo_sampled["dpm++-5"]["images_per_s"])
    else:
        assert "dpm++-5" not in zoo_sampled and "no dpm++" in sample["zoo"]["note"]
    peer_sampled = {r["sampler"] for r in sample["rows"] if r["who"] == "peer"}
    assert peer_sampled == ({"ddim-10", "ddim-5"} if peer else set())

    ev = s["stages"]["eval"]
    assert [r["what"].rsplit(" ", 1)[-1] for r in ev["rows"]] == ["cold", "warm"]
    assert all("error" not in r and r["n"] == 100 and positive(r["wall_seconds"]) and math.isfinite(r["fid"])
               for r in ev["rows"])

    study = s["stages"]["study"]
    assert study["steps_per_model"] == 3 and [t["model"] for t in study["training"]] == study["models"]
    assert {r["model"] for r in study["rows"]} == set(study["models"])
    assert all(r["steps"] == 3 and r["fid"] is not None for r in study["rows"]), study["rows"]
    for f in ("leaderboard.md", "leaderboard.json", "samples.png", "report.html", "STUDY.md"):
        assert (out / "mnist-study-gpu" / f).is_file(), f
    assert all((out / "logs" / f"{n}.log").is_file() for n in ("env", "cuda-tests", "flops", "train-zoo-default",
                                                                "sample-zoo", "eval-cold", "study-compare"))


@pytest.mark.slow
def test_failing_cuda_tests_stop_the_suite(tmp_path, mnist_root):
    out = tmp_path / "gpu"
    r = run_suite("--smoke", "--out", out, "--data", mnist_root, "--tests", cuda_test_dir(tmp_path, "assert 1 == 2"),
                  timeout=300)
    assert r.returncode == 1
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "stopped"
    cuda = s["stages"]["cuda"]
    assert cuda["status"] == "failed" and cuda["collected"] == 1 and "test_marked" in cuda["reason"]
    for name in STAGES[1:]:
        st = s["stages"][name]
        assert st["status"] == "skipped" and "stopped early" in st["reason"] and "--keep-going" in st["reason"]
    assert "MISSED" not in (out / "summary.md").read_text()  # nothing measured, so no target judged


@pytest.mark.slow
def test_detach_starts_once_waits_and_packs(tmp_path, mnist_root):
    out, pack1, pack2 = tmp_path / "gpu", tmp_path / "pack1", tmp_path / "pack2"
    args = ["--smoke", "--stages", "cuda", "--out", out, "--data", mnist_root,
            "--tests", cuda_test_dir(tmp_path, "assert 1 == 1"), "--detach", "--wait", 240]
    r = run_suite(*args, "--pack", pack1, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "started the suite" in r.stdout and "FINISHED: finished" in r.stdout
    s = json.loads((pack1 / "summary.json").read_text())
    assert s["stages"]["cuda"]["status"] == "ok" and s["stages"]["cuda"]["passed"] == 1
    assert s["stages"]["train"]["reason"] == "not in --stages"
    assert "--detach" in s["command"]  # the command as issued, launcher flags included
    assert sorted(p.name for p in pack1.iterdir()) == ["results.tgz", "suite.log", "summary.json", "summary.md"]
    with tarfile.open(pack1 / "results.tgz") as tar:
        names = tar.getnames()
    root = names[0].split("/")[0]
    assert root.startswith("gpu-") and f"{root}/summary.json" in names and f"{root}/cuda-tests.xml" in names
    assert not any(n.endswith((".pt", ".pid")) for n in names)

    r = run_suite(*args, "--pack", pack2, timeout=120)  # again: nothing restarts, it only packs
    assert r.returncode == 0 and "started the suite" not in r.stdout and "has ended" in r.stdout
    assert (out / "suite.log").read_text().count("stage cuda (budget") == 1
    assert (pack2 / "results.tgz").is_file()


def load_suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop("gpu_suite", None)
    return mod


def test_the_source_digest_names_the_code_that_ran_whatever_git_says(tmp_path, monkeypatch):
    """The device machine reported a stale git HEAD for the tree it was sent: the summary also records a digest
    of the sources, which changes with any source file's content or name and with nothing else."""
    mod = load_suite()
    for d in ("zoo", "plugins", "benchmarks"):
        (tmp_path / d).mkdir()
    (tmp_path / "zoo" / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(mod, "REPO", tmp_path)
    first = mod.source_digest()
    (tmp_path / "README.md").write_text("not code")
    assert mod.source_digest() == first and len(first) == 12
    (tmp_path / "zoo" / "a.py").write_text("x = 2\n")
    second = mod.source_digest()
    (tmp_path / "zoo" / "a.py").rename(tmp_path / "plugins" / "a.py")
    assert len({first, second, mod.source_digest()}) == 3


def test_launcher_flags_do_not_reach_the_suite():
    mod = load_suite()
    argv = ["--wheels", ".whl", "--detach", "--wait", "560", "--pack=/x", "--out", "/tmp/o", "--wait=3"]
    assert mod.strip_launcher_flags(argv) == ["--wheels", ".whl", "--out", "/tmp/o"]


def test_a_cuda_stage_past_its_budget_still_reports_the_failures_before_it(tmp_path):
    """On the H200 a CUDA test failed, then the stage ran out of time and the SIGTERM that ended pytest took the
    failure's message with it. Now the budget's end interrupts pytest (SIGINT, also when the suite was started in
    the background, where SIGINT is ignored and children inherit that): it writes its report, and the stage's
    reason names the test that failed, with its message."""
    import signal
    import types
    mod = load_suite()
    d = tmp_path / "cudatests"
    d.mkdir()
    (d / "test_two.py").write_text(textwrap.dedent("""
        import time
        import pytest

        @pytest.mark.cuda
        def test_fails_first():
            assert 1 == 2, "one is not two"

        @pytest.mark.cuda
        def test_then_hangs():
            time.sleep(600)
    """))
    args = types.SimpleNamespace(out=tmp_path / "gpu", minutes=5, smoke=True, data=None, tests=str(d), cuda_k=None)
    suite, rec = mod.Suite(args, mod.SMOKE), {}
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under a shell's `&`
    try:
        with pytest.raises(TimeoutError) as e:
            mod.stage_cuda(suite, rec, budget=15)
    finally:
        signal.signal(signal.SIGINT, before)
    assert "ran past 15 s" in str(e.value) and "1 failed before that" in str(e.value)
    assert "test_fails_first" in str(e.value)
    assert rec["failed"] == 1 and "one is not two" in rec["failures"][0]["message"]
    assert "KeyboardInterrupt" in (suite.logs / "cuda-tests.log").read_text()

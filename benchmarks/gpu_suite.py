"""The whole GPU proof of zoo in one command: CUDA tests, training and sampling throughput
against denoising-diffusion-pytorch, evaluation speed, and a GPU MNIST study -- about 25 minutes on one H100.

Stages, in order (``--stages`` picks some; each has a time budget and writes its results as it goes):

  cuda    ``pytest -m cuda`` (tests/test_cuda.py: bf16, fp16 + GradScaler, channels_last, compile, fused
          AdamW, EMA, resume, bf16 sampling, every family, torchrun). A failure stops the suite
          (``--keep-going`` measures anyway).
  train   ``zoo train ddpm`` end to end (its GPU default, and compiled when that is not the default) against
          denoising-diffusion-pytorch's ``Trainer`` on a ``Unet(dim, (1, 2, 4))`` whose dim is chosen so its
          FLOPs per image match zoo's (counted with torch.utils.flop_counter), batch 128, bf16, 32x32x1; also
          that peer's raw step. img/s, GFLOP/img, MFU against a bf16 matmul peak measured in the same run,
          the ratio. Targets: >= 5x that Trainer, >= 6% MFU.
  sample  DDIM-50 and the few-step solver (``dpm++``, 20 steps, where the DDPM plugin offers it) in img/s at
          batch 2,500, eager and compiled, against the same peer's DDIM at 50 and 20 steps. Target: DDIM-50
          >= 2,000 img/s.
  eval    ``zoo eval RUN -n 10000`` end to end, reference statistics cold and then cached. Target <= 15 s.
  study   every family trained for the same minutes (min(3, what the budget leaves); ``--study-minutes``),
          then ``zoo compare`` of the runs with n = 10,000, into OUT/mnist-study-gpu/.

Everything lands in ``--out`` (default benchmarks/results/gpu-<date>/): summary.json and summary.md (GPU
name, torch version, the exact command, every number, each stage's status: ok, failed, timeout or skipped
with its reason), logs/ (one log per process), cuda-tests.xml, train/, mnist-study-gpu/ and STUDY.md.

On the GPU machine (benchmarks/GPU.md has the details): it has torch, torchvision, accelerate, einops,
scipy, pillow, tqdm but not the peer nor torch-fidelity, and no MNIST. Bring wheels and data in two
git-ignored folders that travel with the call::

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 -d .whl \\
        denoising-diffusion-pytorch==2.3.4 ema-pytorch==0.8.3 pytorch-fid==0.3.0 torch-fidelity==0.4.0
    mkdir -p .data/mnist && cp ../shared/data/mnist/*.gz .data/mnist/ && echo /.data/ >> .git/info/exclude

then (carry ``.whl`` and ``.data``) issue this one command, again right after it returns until it says
FINISHED (one call may last 10 minutes; the suite runs on between calls)::

    python3 benchmarks/gpu_suite.py --wheels .whl --data .data/mnist --out /tmp/zoo-gpu --detach --wait 560 --pack $OUT

``--wheels`` installs every wheel there with ``pip install --no-index --no-deps --target`` and zoo itself
(editable, no network) when it is not installed. ``--detach`` starts the suite in its own session, waits up
to ``--wait`` seconds printing its progress, and ``--pack`` writes summary.md, summary.json, suite.log and
results.tgz (the out folder without checkpoints) there.

``--smoke`` runs every stage on the CPU at tiny sizes in a minute or two, the peer only where it is
installed; tests/test_gpu_suite.py runs it so the suite cannot rot before a GPU comes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STAGES = ("cuda", "train", "sample", "eval", "study")
FAMILIES = ("ae", "vae", "gan", "lsgan", "dcgan", "ddpm-convnext", "ddpm-attention")
PEER = "denoising-diffusion-pytorch"
TARGETS = {"train_vs_peer_trainer": 5.0, "train_mfu": 0.06, "ddim50_images_per_s": 2000.0, "eval_10k_seconds": 15.0}
REFERENCE = ("issue 17, one H100, torch 2.11, bf16, 32x32x1, batch 128: the peer's Trainer 1,037 img/s on "
             "Unet(64, (1,2,4)) (9.0 GFLOP/img), its raw step 1,783 eager and 3,305 compiled; its DDIM-50 207 img/s")
LAUNCHER_FLAGS = {"--detach": 0, "--wait": 1, "--pack": 1}
RESULT, ROW = "@@RESULT ", "@@ROW "


@dataclass
class Sizes:
    """How big each stage is: the GPU sizes, or tiny CPU ones for --smoke."""
    device: str = "cuda"
    preset: str | None = None          # zoo's DDPM: None = its default for the device (the GPU default)
    batch: int = 128                   # training batch, zoo and peer alike (the reference)
    zoo_steps: int = 300
    log_every: int = 50
    compile_rows: bool = True          # also the compiled variants (trainer.compile, model.compile_sampler)
    peer_warmup: int = 30
    peer_steps: int = 150
    peer_images: int | None = None     # images written for the peer's folder dataset (None: all)
    peer_step_reps: int = 50
    matmul: int = 8192
    matmul_reps: int = 20
    sample_n: int = 10000
    sample_batch: int = 2500
    peer_sample_n: int = 2500
    ddim_steps: int = 50
    few_steps: int = 20
    eval_n: int = 10000
    eval_reference: str | None = None  # None: the run's training images (zoo eval's default)
    eval_metrics: str | None = None    # None: zoo eval's default (fid, is, kid, prc)
    study_models: tuple = FAMILIES
    study_n: int = 10000
    study_steps: int | None = None     # smoke: a step budget instead of minutes
    study_max_minutes: float = 3.0
    minutes: float = 24.0
    budgets: dict = field(default_factory=lambda: {"cuda": 480, "train": 420, "sample": 300, "eval": 150})


FULL = Sizes()
SMOKE = Sizes(device="cpu", preset="tiny", batch=16, zoo_steps=8, log_every=2, compile_rows=False, peer_warmup=1,
              peer_steps=2, peer_images=120, peer_step_reps=2, matmul=256, matmul_reps=3, sample_n=16,
              sample_batch=16, peer_sample_n=8, ddim_steps=10, few_steps=5, eval_n=100, eval_reference="holdout",
              eval_metrics="fid", study_models=("ae", "gan", "ddpm-convnext"), study_n=100, study_steps=3,
              study_max_minutes=0.0, minutes=10.0, budgets={"cuda": 180, "train": 240, "sample": 180, "eval": 180})


class Skip(Exception):
    """A stage (or row) that cannot run here; the message says why."""


class StageFailed(Exception):
    pass


# --- the suite: output folder, summary, child processes --------------------------------------------------
class Suite:
    def __init__(self, args, sizes: Sizes):
        self.args, self.sizes = args, sizes
        self.out = Path(args.out).resolve()
        self.logs = self.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.t0 = time.time()
        self.deadline = self.t0 + 60 * float(args.minutes or sizes.minutes)
        self.proc: subprocess.Popen | None = None
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1", ZOO_OFFLINE="1",
                        ZOO_CACHE=str(self.out / "cache"))
        if args.smoke:  # a shared CPU: one thread each (two threads fighting for 2 cores ran 30x slower)
            self.env.setdefault("OMP_NUM_THREADS", "1")
        if args.data:
            data = str(Path(args.data).resolve())
            self.env.update(ZOO_DATA=data, ZOO_TEST_MNIST=data)
        command = os.environ.get("ZOO_GPU_SUITE_COMMAND") or shlex.join(["python3", *sys.argv])
        self.summary = {
            "suite": "zoo gpu suite (benchmarks/gpu_suite.py, issue 17)", "mode": "smoke" if args.smoke else "full",
            "status": "running", "command": command, "started": now(), "finished": None, "wall_seconds": None,
            "targets": TARGETS, "reference": REFERENCE, "env": {}, "setup": {},
            "stages": {name: {"status": "pending"} for name in STAGES},
        }
        self.save()

    # summary files
    def save(self) -> None:
        self.summary["wall_seconds"] = round(time.time() - self.t0, 1)
        write_atomic(self.out / "summary.json", json.dumps(self.summary, indent=2, default=str) + "\n")
        write_atomic(self.out / "summary.md", summary_markdown(self.summary))

    def left(self) -> float:
        return self.deadline - time.time()

    def give(self, until: float, cap: float) -> float:
        """Seconds for the next process: ``cap``, less when the stage's end (``until``) is nearer."""
        t = min(cap, until - time.time(), self.left())
        if t < 10:
            raise TimeoutError("the stage's time budget is spent")
        return t

    def say(self, msg: str) -> None:
        print(f"[gpu-suite {time.strftime('%H:%M:%S')} +{time.time() - self.t0:5.0f}s] {msg}", flush=True)

    # processes
    def call(self, name: str, argv: list[str], timeout: float, env: dict | None = None) -> tuple[int, float, str]:
        """Run ``argv`` from the repo root, output to logs/NAME.log; (returncode, seconds, output).
        Past ``timeout`` its whole process group is killed and the return code is 124."""
        log = self.logs / f"{name}.log"
        timeout = max(1.0, min(timeout, self.left()))
        t = time.perf_counter()
        with open(log, "w") as f:
            f.write(f"$ {shlex.join(argv)}\n")
            f.flush()
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env or self.env, stdout=f, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=interruptible)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
                rc = 124
            except BaseException:  # interrupted: take the child down with us
                kill_group(self.proc)
                raise
            finally:
                self.proc = None
        seconds = time.perf_counter() - t
        text = log.read_text(errors="replace")
        if rc == 124:
            with open(log, "a") as f:
                f.write(f"\n[gpu-suite] killed after {timeout:.0f} s (its time budget)\n")
        return rc, seconds, text

    def worker(self, name: str, fn: str, params: dict, timeout: float, rows: list | None = None) -> dict:
        """Run ``fn`` of this file in a fresh process; its result dict. Rows it reports (``@@ROW``) are
        appended to ``rows`` even when it fails or runs out of time."""
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker", fn, "--params", json.dumps(params)]
        rc, seconds, text = self.call(name, argv, timeout)
        result = None
        for line in text.splitlines():
            if line.startswith(ROW) and rows is not None:
                rows.append(json.loads(line[len(ROW):]))
            elif line.startswith(RESULT):
                result = json.loads(line[len(RESULT):])
        if rows is not None:
            self.save()
        if rc == 124:
            raise TimeoutError(f"{name} ran past its {timeout:.0f} s budget (logs/{name}.log)")
        if rc != 0 or result is None:
            raise StageFailed(f"{name} failed (exit {rc}): {last_error(text)} (logs/{name}.log)")
        return result

    def zoo(self, name: str, args: list[str], timeout: float, env: dict | None = None) -> tuple[int, float, str]:
        return self.call(name, [sys.executable, "-m", "zoo", *args], timeout, env)

    def data_sets(self) -> list[str]:
        data = self.summary["env"].get("data") or {}
        if not data.get("ok"):
            raise Skip(f"no MNIST here ({data.get('error', 'not checked')}): pass --data DIR (benchmarks/GPU.md)")
        return list(data["sets"])


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def interruptible() -> None:
    """In a child, before exec: SIGINT back to its default, so that Python there turns it into a
    KeyboardInterrupt even when this suite was started in the background (where the shell ignores SIGINT,
    and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """End a child this suite started, and everything it started (its own process group): first SIGINT, so
    that pytest writes what it has (the failures so far, with their messages, and its JUnit report) -- on
    the H200 a CUDA test failed and the budget's SIGTERM took its message with it --, then SIGTERM, SIGKILL."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("@@", "$ "))]
    for line in reversed(lines):
        if line.startswith(("error:", "E ")) or "Error" in line.split(":")[0]:
            return line[:300]
    return (lines[-1] if lines else "no output")[:300]


def git_commit() -> str | None:
    """The checkout's HEAD, with ``+changes`` when its tracked files differ from it. (The device machine once
    reported a stale HEAD for the working tree it was sent: the source digest below is what identifies the code.)"""
    try:
        r = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                           timeout=10)
        if r.returncode != 0 or not r.stdout.strip():
            return None
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "zoo", "plugins", "benchmarks"], cwd=REPO,
                               capture_output=True, timeout=10).returncode
        return r.stdout.strip() + ("+changes" if dirty == 1 else "")
    except (OSError, subprocess.SubprocessError):
        return None


def source_digest() -> str:
    """SHA-256 (first 12 hex digits) of the Python sources that ran (zoo/, plugins/, benchmarks/, by relative path
    and content): equal digests here and on the device machine mean the same code, whatever git says there."""
    h = hashlib.sha256()
    for path in sorted(p for d in ("zoo", "plugins", "benchmarks") for p in (REPO / d).rglob("*.py")):
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


# --- setup: wheels, zoo itself, the environment ---------------------------------------------------------------
def setup(suite: Suite) -> None:
    """Install the carried wheels and zoo (no network), then read the environment in a fresh process."""
    rec = suite.summary["setup"]
    t = time.perf_counter()
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-cache-dir"]
    if suite.args.wheels:
        wheels = sorted(str(p) for p in Path(suite.args.wheels).glob("*.whl"))
        if not wheels:
            raise StageFailed(f"--wheels {suite.args.wheels}: no .whl files there")
        site = Path(os.environ.get("TMPDIR", "/tmp")) / "zoo-gpu-site"
        rc, _, text = suite.call("setup-wheels", [*pip, "--no-compile", "--upgrade", "--target", str(site), *wheels],
                                 600)
        if rc != 0:
            raise StageFailed(f"installing the wheels failed: {last_error(text)} (logs/setup-wheels.log)")
        suite.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), suite.env.get("PYTHONPATH")]))
        rec["wheels"] = [Path(w).name for w in wheels]
        rec["site"] = str(site)
    check = [sys.executable, "-c", "import importlib.metadata as m, sys; "
             "sys.exit(0 if any(e.name == 'ddpm' for e in m.entry_points(group='zoo.plugins')) else 1)"]
    if suite.call("setup-check", check, 120)[0] == 0:
        rec["zoo"] = "already installed"
    else:
        rc, _, text = suite.call("setup-zoo", [*pip, "--no-build-isolation", "-e", str(REPO)], 600)
        rec["zoo"] = "installed editable (pip install --no-index --no-deps --no-build-isolation -e .)"
        if rc != 0 or suite.call("setup-check", check, 120)[0] != 0:
            # no build backend that works offline (e.g. an old setuptools without `wheel`): link the source
            # tree into a site folder with a dist-info of its entry points, which is all plugin discovery reads
            site = link_install(Path(os.environ.get("TMPDIR", "/tmp")) / "zoo-gpu-src")
            suite.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), suite.env.get("PYTHONPATH")]))
            rec["zoo"] = f"linked into {site} (pip install -e . failed: {last_error(text)})"
            if suite.call("setup-check", check, 120)[0] != 0:
                raise StageFailed(f"zoo is not installed and could not be: {last_error(text)} (logs/setup-zoo.log)")
    rec["seconds"] = round(time.perf_counter() - t, 1)
    suite.summary["env"] = suite.worker("env", "w_env", {"device": suite.sizes.device}, 300)
    suite.summary["env"]["git_commit"] = git_commit()
    suite.summary["env"]["source_digest"] = source_digest()
    suite.save()
    env = suite.summary["env"]
    suite.say(f"{env.get('device_name')} | torch {env.get('torch')} | python {env.get('python')} | "
              f"peer: {env['peer'].get('version') or env['peer'].get('missing')} | data: {env['data'].get('note')}")
    if suite.sizes.device == "cuda" and not env.get("cuda"):
        raise StageFailed("no CUDA device visible to torch (use --smoke for the CPU run)")


def link_install(site: Path) -> Path:
    """``zoo`` and ``zoo_plugins`` (= plugins/) as links into ``site``, plus ``zoo-<version>.dist-info`` with the
    ``zoo.plugins`` entry points of pyproject.toml: an install of this source tree with no build step."""
    import tomllib
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    site.mkdir(parents=True, exist_ok=True)
    for name, target in (("zoo", REPO / "zoo"), ("zoo_plugins", REPO / "plugins")):
        link = site / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    info = site / f"zoo-{meta['version']}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: zoo\nVersion: {meta['version']}\n")
    eps = "".join(f"{k} = {v}\n" for k, v in meta["entry-points"]["zoo.plugins"].items())
    scripts = "".join(f"{k} = {v}\n" for k, v in meta.get("scripts", {}).items())
    (info / "entry_points.txt").write_text(f"[console_scripts]\n{scripts}\n[zoo.plugins]\n{eps}")
    return site


# --- stage a: CUDA tests ---------------------------------------------------------------------------------------
def stage_cuda(suite: Suite, rec: dict, budget: float) -> None:
    xml = suite.out / "cuda-tests.xml"
    files = cuda_test_files(Path(suite.args.tests))
    argv = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rfEs", "-p", "no:cacheprovider",
            f"--junitxml={xml}", *(["-k", suite.args.cuda_k] if suite.args.cuda_k else []), *files]
    xml.unlink(missing_ok=True)  # an earlier run's report must not stand in for this one's
    rc, seconds, text = suite.call("cuda-tests", argv, budget)
    rec["command"] = "python -m pytest -m cuda " + (f"-k {shlex.quote(suite.args.cuda_k)} " if suite.args.cuda_k
                                                    else "") + " ".join(files)
    counts = junit_counts(xml) if xml.is_file() else None  # also after a timeout: the tests pytest finished
    rec.update(counts or {})
    names = ", ".join(f["test"] for f in counts["failures"][:6]) if counts and counts["failed"] else ""
    if rc == 124:
        raise TimeoutError(f"pytest -m cuda ran past {budget:.0f} s" + (f"; {counts['failed']} failed before that: "
                           f"{names}" if names else "") + " (logs/cuda-tests.log)")
    if counts is None:
        raise StageFailed(f"pytest -m cuda gave no report (exit {rc}): {last_error(text)} (logs/cuda-tests.log)")
    if names:
        raise StageFailed(f"{counts['failed']} of {counts['collected']} CUDA tests failed: {names} "
                          f"(logs/cuda-tests.log)")
    if not counts["collected"]:
        raise StageFailed("pytest -m cuda collected no tests")
    if not counts["passed"]:
        why = counts["skip_reasons"][0] if counts["skip_reasons"] else "all skipped"
        raise Skip(f"{counts['collected']} CUDA tests collected, all skipped ({why})")


def cuda_test_files(tests: Path) -> list[str]:
    """The test files that hold CUDA tests (``mark.cuda``): a test module that cannot even be imported on the
    GPU machine (a CPU-only test dependency missing there) must not stop the CUDA tests from running."""
    if tests.is_file():
        return [str(tests)]
    found = [str(p) for p in sorted(tests.glob("test_*.py")) if "mark.cuda" in p.read_text(errors="replace")]
    return found or [str(tests)]


def junit_counts(path: Path) -> dict:
    import xml.etree.ElementTree as ET
    cases = ET.parse(path).getroot().iter("testcase")
    out = {"collected": 0, "passed": 0, "failed": 0, "skipped": 0, "failures": [], "skip_reasons": [], "tests": []}
    for case in cases:
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        out["collected"] += 1
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            out["failed"] += 1
            out["failures"].append({"test": name, "message": (bad.get("message") or "").splitlines()[0][:300]
                                    if bad.get("message") else ""})
            status = "failed"
        elif skip is not None:
            out["skipped"] += 1
            reason = (skip.get("message") or "").strip()
            if reason and reason not in out["skip_reasons"]:
                out["skip_reasons"].append(reason[:200])
            status = "skipped"
        else:
            out["passed"] += 1
            status = "passed"
        out["tests"].append({"test": name, "status": status, "seconds": round(float(case.get("time") or 0), 2)})
    return out


# --- stage b: training throughput ---------------------------------------------------------------------------
def zoo_model_args(suite: Suite) -> list[str]:
    """`zoo train ddpm` arguments shared by every zoo row: the device's default config (or --smoke's tiny)."""
    return ["ddpm", *(["--preset", suite.sizes.preset] if suite.sizes.preset else [])]


def stage_train(suite: Suite, rec: dict, budget: float) -> None:
    s, until = suite.sizes, time.time() + budget
    sets = suite.data_sets() + [f"trainer.device={s.device}"]
    rows = rec.setdefault("rows", [])
    rec["peak"] = suite.worker("peak", "w_peak", {"device": s.device, "size": s.matmul, "reps": s.matmul_reps}, 120)
    suite.say(f"matmul peak: {rec['peak']['tflops']:.4g} TFLOP/s ({rec['peak']['what']})")
    peak = rec["peak"]["tflops"] * 1e12

    def train_zoo(variant: str, extra: list[str]) -> dict:
        run = suite.out / "train" / f"zoo-{variant}"
        run_sets = sets + [f"trainer.batch_size={s.batch}", f"trainer.max_steps={s.zoo_steps}",
                           f"trainer.log_every={s.log_every}", "trainer.eval_every=null", *extra]
        args = ["train", *zoo_model_args(suite), "--out", str(run), "--force", "--quiet",
                *[f"--set={x}" for x in run_sets]]
        rc, wall, text = suite.zoo(f"train-zoo-{variant}", args, suite.give(until, 300))
        row = {"who": "zoo", "variant": variant, "what": f"zoo train ({variant})", "batch": s.batch,
               "steps": s.zoo_steps, "command": "zoo " + shlex.join(args), "run": str(run.relative_to(suite.out))}
        if rc != 0:
            row["error"] = "timeout" if rc == 124 else last_error(text)
        else:
            ips, windows = steady_images_per_s(run / "metrics.jsonl")
            row.update(images_per_s=ips, windows_images_per_s=windows, wall_seconds=round(wall, 1),
                       wall_images_per_s=round(s.zoo_steps * s.batch / wall, 1))
        rows.append(row)
        suite.save()
        suite.say(f"zoo train {variant}: {row.get('images_per_s', row.get('error'))} img/s")
        return row

    default = train_zoo("default", [])
    # FLOPs of the config that run resolved (its config.yaml): the device picks the preset, not this file
    flops = suite.worker("flops", "w_flops", {"device": s.device, "preset": s.preset, "sets": sets,
                                              "run": None if "error" in default else str(suite.out / default["run"]),
                                              "peer": suite.summary["env"]["peer"].get("ok", False)}, 300)
    rec["flops"] = flops
    zt = flops["zoo"]["trainer"]
    if s.compile_rows and not zt["compile"]:
        train_zoo("compiled", ["trainer.compile=true"])
    for row in rows:
        extra = ["trainer.compile=true"] if row["variant"] == "compiled" else []
        row.update(what=f"zoo train ({row['variant']}: {describe_trainer(zt, extra)})",
                   gflop_per_image=flops["zoo"]["train_gflop"])
    env_peer = suite.summary["env"]["peer"]
    if not env_peer.get("ok"):
        rec["peer_note"] = f"peer not installed ({env_peer.get('missing')}): no peer rows"
    else:
        pdim, size = flops["peer"]["dim"], flops["zoo"]["image_size"]
        common = {"device": s.device, "dim": pdim, "batch": s.batch, "size": size}
        try:
            r = suite.worker("train-peer", "w_peer_train", {**common, "sets": sets, "warmup": s.peer_warmup,
                             "steps": s.peer_steps, "limit": s.peer_images,
                             "folder": str(suite.out / "train" / "peer-data"),
                             "results": str(suite.out / "train" / "peer-results")}, suite.give(until, 400))
            rows.append({"who": "peer", "what": f"{PEER} Trainer, Unet({pdim}, (1,2,4)), bf16 via accelerate",
                         "batch": s.batch, "steps": s.peer_steps, "gflop_per_image": flops["peer"]["train_gflop"], **r})
        except (StageFailed, TimeoutError) as e:
            rows.append({"who": "peer", "what": f"{PEER} Trainer", "error": str(e)})
        suite.save()
        try:
            r = suite.worker("step-peer", "w_peer_step", {**common, "reps": s.peer_step_reps},
                             suite.give(until, 200))
            rows.append({"who": "peer-raw", "what": f"{PEER} raw step (forward, backward, Adam), eager, bf16 autocast",
                         "batch": s.batch, "gflop_per_image": flops["peer"]["train_gflop"], **r})
        except (StageFailed, TimeoutError) as e:
            rows.append({"who": "peer-raw", "what": f"{PEER} raw step", "error": str(e)})
    for row in rows:
        if row.get("images_per_s"):
            row["tflops"] = sig(row["images_per_s"] * row["gflop_per_image"] / 1e3)
            row["mfu"] = sig(row["tflops"] * 1e12 / peak) if peak > 0 else None
    trainer = next((r for r in rows if r["who"] == "peer" and r.get("images_per_s")), None)
    best = max((r for r in rows if r["who"] == "zoo" and r.get("images_per_s")), key=lambda r: r["images_per_s"],
               default=None)
    if trainer:
        for r in rows:
            if r["who"] == "zoo" and r.get("images_per_s"):
                r["x_peer_trainer"] = round(r["images_per_s"] / trainer["images_per_s"], 2)
                r["x_peer_trainer_per_flop"] = round(r["tflops"] / trainer["tflops"], 2) if trainer["tflops"] else None
    rec["result"] = {
        "best_zoo": best and best["what"], "zoo_images_per_s": best and best["images_per_s"],
        "peer_trainer_images_per_s": trainer and trainer["images_per_s"], "x_peer_trainer": best and
        best.get("x_peer_trainer"), "mfu": best and best.get("mfu"),
        "meets_x_peer": None if not (best and trainer) else best["x_peer_trainer"] >= TARGETS["train_vs_peer_trainer"],
        "meets_mfu": None if not best or best.get("mfu") is None else best["mfu"] >= TARGETS["train_mfu"]}
    if not best:
        errors = "; ".join(r.get("error", "") for r in rows if r["who"] == "zoo")
        raise StageFailed(f"no zoo training row finished: {errors}")


def describe_trainer(t: dict, extra: list[str]) -> str:
    compiled = t["compile"] or "trainer.compile=true" in extra
    return f"precision {t['precision']}, channels_last {t['channels_last']}, compile {str(compiled).lower()}"


def steady_images_per_s(metrics: Path) -> tuple[float, list]:
    """Median of the logged img/s windows after the first (which holds start-up and compilation)."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    windows = [r["images_per_s"] for r in rows if "images_per_s" in r]
    if not windows:
        raise StageFailed(f"{metrics} has no images_per_s rows")
    return round(statistics.median(windows[1:] or windows), 1), windows


# --- stage c: sampling speed ------------------------------------------------------------------------------------
def stage_sample(suite: Suite, rec: dict, budget: float) -> None:
    s, until = suite.sizes, time.time() + budget
    sets = suite.data_sets() + [f"trainer.device={s.device}"]
    rows = rec.setdefault("rows", [])
    run = suite.out / "train" / "zoo-default"
    params = {"device": s.device, "preset": s.preset, "sets": sets, "n": s.sample_n, "batch": s.sample_batch,
              "run": str(run) if (run / "config.yaml").is_file() else None,
              "ddim_steps": s.ddim_steps, "few_steps": s.few_steps, "compile": s.compile_rows}
    try:
        r = suite.worker("sample-zoo", "w_zoo_sample", params, suite.give(until, 240), rows=rows)
        rec["zoo"] = r
    except (StageFailed, TimeoutError) as e:
        rec["zoo_error"] = str(e)
    env_peer = suite.summary["env"]["peer"]
    flops = (suite.summary["stages"]["train"].get("flops") or {}).get("peer") or {}
    if not env_peer.get("ok"):
        rec["peer_note"] = f"peer not installed ({env_peer.get('missing')}): no peer rows"
    else:
        try:
            r = suite.worker("sample-peer", "w_peer_sample",
                             {"device": s.device, "dim": flops.get("dim"),
                              "size": rec.get("zoo", {}).get("image_size", 32),
                              "n": s.peer_sample_n, "batch": min(s.sample_batch, s.peer_sample_n),
                              "steps": [s.ddim_steps, s.few_steps], "match_preset": s.preset, "sets": sets,
                              "run": params["run"]},
                             suite.give(until, 200), rows=rows)
            rec["peer"] = r
        except (StageFailed, TimeoutError) as e:
            rec["peer_error"] = str(e)
    ddim = [r for r in rows
            if r.get("who") == "zoo" and r.get("sampler") == f"ddim-{s.ddim_steps}" and r.get("images_per_s")]
    peer = next((r for r in rows if r.get("who") == "peer" and r.get("sampler") == f"ddim-{s.ddim_steps}"
                 and r.get("images_per_s")), None)
    best = max(ddim, key=lambda r: r["images_per_s"], default=None)
    rec["result"] = {"zoo_ddim_images_per_s": best and best["images_per_s"], "zoo_row": best and best["what"],
                     "peer_ddim_images_per_s": peer and peer["images_per_s"],
                     "x_peer": round(best["images_per_s"] / peer["images_per_s"], 2) if best and peer else None,
                     "meets_target": None if not best else best["images_per_s"] >= TARGETS["ddim50_images_per_s"]}
    if not any(r.get("who") == "zoo" and r.get("images_per_s") for r in rows):
        raise StageFailed(rec.get("zoo_error") or "no zoo sampling row finished")


# --- stage d: evaluation speed ---------------------------------------------------------------------------------
def stage_eval(suite: Suite, rec: dict, budget: float) -> None:
    s, until = suite.sizes, time.time() + budget
    run = suite.out / "train" / "zoo-default"
    if not (run / "checkpoints" / "last.pt").is_file():  # the train stage did not run: a short run of our own
        run = suite.out / "eval" / "run"
        args = ["train", *zoo_model_args(suite), "--out", str(run), "--force", "--quiet",
                *[f"--set={x}" for x in suite.data_sets() + [f"trainer.device={s.device}", "trainer.max_steps=20"]]]
        rc, _, text = suite.zoo("eval-train", args, suite.give(until, 240))
        if rc != 0:
            raise StageFailed(f"could not train a run to evaluate: {last_error(text)} (logs/eval-train.log)")
    rec["run"] = str(run.relative_to(suite.out))
    zoo_model = ((suite.summary["stages"]["train"].get("flops") or {}).get("zoo") or {}).get("model") or {}
    default_sampler = f"{zoo_model['sampler']}-{zoo_model.get('sample_steps')}" if zoo_model.get("sampler") else None
    rows = rec.setdefault("rows", [])
    cache = suite.out / "eval" / "stats-cache"
    for label in ("cold", "warm"):  # cold: reference statistics computed (and cached); warm: read from the cache
        args = ["eval", str(run), "-n", str(s.eval_n), "--json", "--device", s.device,
                *(["--reference", s.eval_reference] if s.eval_reference else []),
                *(["--metrics", s.eval_metrics] if s.eval_metrics else [])]
        try:
            rc, wall, text = suite.zoo(f"eval-{label}", args, suite.give(until, 120),
                                       env=dict(suite.env, ZOO_CACHE=str(cache)))
        except TimeoutError as e:
            rc, wall, text = 124, 0.0, str(e)
        row = {"what": f"zoo eval, reference statistics {label}", "n": s.eval_n, "command": "zoo " + shlex.join(args),
               "wall_seconds": round(wall, 2)}
        if rc != 0:
            row["error"] = "timeout" if rc == 124 else last_error(text)
        else:
            out = json.loads(next(line for line in reversed(text.splitlines()) if line.startswith("{")))
            row.update({k: out.get(k) for k in ("fid", "is_mean", "sampler", "sampling_steps", "extractor",
                                               "reference", "n_reference")})
            row["inside_seconds"] = out.get("wall_seconds")
            if not row["sampler"]:
                row["sampler"] = f"model default ({default_sampler or 'see the run config'})"
        rows.append(row)
        suite.save()
        suite.say(f"zoo eval ({label}): {row['wall_seconds']} s")
    cold = rows[0]
    rec["result"] = {"cold_seconds": cold.get("wall_seconds") if "error" not in cold else None,
                     "warm_seconds": rows[1].get("wall_seconds") if "error" not in rows[1] else None,
                     "meets_target": None if "error" in cold else cold["wall_seconds"] <= TARGETS["eval_10k_seconds"]}
    if all("error" in r for r in rows):
        raise StageFailed(f"zoo eval failed: {cold['error']}")


# --- stage e: the GPU MNIST study ------------------------------------------------------------------------------
def stage_study(suite: Suite, rec: dict, budget: float) -> None:
    s = suite.sizes
    sets = suite.data_sets() + [f"trainer.device={s.device}"]
    study = suite.out / "mnist-study-gpu"
    models = tuple(m for m in (suite.args.study_models.split(",") if suite.args.study_models else s.study_models) if m)
    k = len(models)
    if s.study_steps:
        minutes, steps = None, s.study_steps
    else:  # what is left, less ~30 s per model for start, final grid and checkpoint, and ~2 min to score
        steps = None
        minutes = suite.args.study_minutes or min(s.study_max_minutes, (budget - 120 - 30 * k) / k / 60)
        if minutes < 0.25:
            raise Skip(f"{budget / 60:.1f} min left for {k} models: run `--stages study` in its own lease")
        minutes = round(minutes, 2)
    rec.update(models=list(models), minutes_per_model=minutes, steps_per_model=steps, n=s.study_n,
               folder=str(study.relative_to(suite.out)))
    suite.say(f"study: {k} models x {minutes or steps} {'min' if minutes else 'steps'} each")
    trained = rec.setdefault("training", [])
    for m in models:
        params = {"model": m, "out": str(study), "minutes": minutes, "steps": steps, "preset": s.preset, "sets": sets,
                  "n": s.study_n}
        try:
            r = suite.worker(f"study-train-{m}", "w_study_train", params, (minutes or 1) * 60 + 240)
        except (StageFailed, TimeoutError) as e:
            r = {"model": m, "error": str(e)}
        trained.append(r)
        suite.save()
        suite.say(f"study: trained {m}: {r.get('steps', r.get('error'))} steps")
    refs = suite.summary["env"]["data"]["references"]
    limit = ["--budget-minutes", str(minutes)] if minutes else ["--steps", str(steps)]
    same = [*limit, *(["--preset", s.preset] if s.preset else []), *[a for x in sets for a in ("--set", x)]]
    args = ["compare", *models, *same, "--out", str(study), "-n", str(s.study_n), "--device", s.device,
            "--title", f"MNIST study on {suite.summary['env'].get('device_name')}",
            *[a for r in refs for a in ("--reference", r)]]
    rc, wall, text = suite.zoo("study-compare", args, max(60, budget - (time.time() - suite.stage_t0)))
    rec["compare_command"] = "zoo " + shlex.join(args)
    rec["compare_seconds"] = round(wall, 1)
    board = study / "leaderboard.json"
    if rc != 0 or not board.is_file():
        why = "timeout" if rc == 124 else last_error(text)
        raise StageFailed(f"zoo compare failed: {why} (logs/study-compare.log)")
    rec["rows"] = json.loads(board.read_text())["rows"]
    write_study_note(suite, rec, study)


def write_study_note(suite: Suite, rec: dict, study: Path) -> None:
    env = suite.summary["env"]
    budget = (f"{rec['minutes_per_model']:g} min of training per model (trainer.max_minutes)"
              if rec["minutes_per_model"] else f"{rec['steps_per_model']} steps per model (smoke)")
    walls = ", ".join(f"{t['model']} {t.get('wall_seconds', '-')} s" for t in rec["training"])
    lines = [f"# MNIST study on a GPU ({env.get('device_name')})", "",
             f"- command: `{suite.summary['command']}` (stage `study` of benchmarks/gpu_suite.py)",
             f"- compare: `{rec['compare_command']}`",
             f"- device: {env.get('device_name')}; torch {env.get('torch')}; python {env.get('python')}; "
             f"zoo commit {env.get('git_commit') or 'n/a'} (sources {env.get('source_digest') or 'n/a'}); "
             f"date {time.strftime('%Y-%m-%d')}",
             f"- budget: {budget}, each family at "
             f"{'preset ' + suite.sizes.preset if suite.sizes.preset else 'its default for the device'}; "
             f"{rec['n']} samples per model, "
             f"extractor `mnist`", f"- data: {env['data'].get('note')}",
             f"- training wall clock (process, incl. start-up and final grid): {walls}", "",
             (study / "leaderboard.md").read_text().split("\n", 1)[1] if (study / "leaderboard.md").is_file() else ""]
    (study / "STUDY.md").write_text("\n".join(lines) + "\n")


# --- running the stages ----------------------------------------------------------------------------------------------
STAGE_FNS = {"cuda": stage_cuda, "train": stage_train, "sample": stage_sample, "eval": stage_eval, "study": stage_study}


def stage_budgets(text: str | None, sizes: Sizes) -> Sizes:
    """``--budgets train=200,sample=120``: seconds per stage, over the defaults (a short lease)."""
    if not text:
        return sizes
    given = {}
    for item in text.split(","):
        name, _, seconds = item.partition("=")
        if name.strip() not in STAGES or not seconds.strip().replace(".", "", 1).isdigit():
            raise SystemExit(f"error: --budgets {item!r}: write STAGE=SECONDS with a stage of {','.join(STAGES)}")
        given[name.strip()] = float(seconds)
    return replace(sizes, budgets={**sizes.budgets, **given})


def run_suite(args) -> int:
    sizes = stage_budgets(args.budgets, SMOKE if args.smoke else FULL)
    suite = Suite(args, sizes)
    chosen = [x.strip() for x in args.stages.split(",") if x.strip()]
    bad = [x for x in chosen if x not in STAGES]
    if bad:
        raise SystemExit(f"error: --stages {','.join(bad)}: not among {','.join(STAGES)}")

    def on_signal(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, on_signal)
    suite.say(f"out: {suite.out} | mode: {suite.summary['mode']} | budget {suite.left() / 60:.0f} min | "
              f"stages: {','.join(chosen)}")
    stop = None
    try:
        try:
            setup(suite)
        except (StageFailed, TimeoutError, Skip) as e:
            suite.summary["setup"]["error"] = str(e)
            stop = f"setup failed: {e}"
        for name in STAGES:
            rec = suite.summary["stages"][name]
            if name not in chosen:
                rec.update(status="skipped", reason="not in --stages")
                continue
            if stop:
                rec.update(status="skipped", reason=f"stopped early: {stop}")
                continue
            status = run_stage(suite, name, rec)
            if name == "cuda" and status in ("failed", "timeout") and not args.keep_going:
                stop = "the CUDA tests did not pass (logs/cuda-tests.log); --keep-going measures anyway"
            suite.save()
        statuses = [r["status"] for r in suite.summary["stages"].values()]
        suite.summary["status"] = "stopped" if stop else "finished"
        return 1 if stop or any(x in ("failed", "timeout") for x in statuses) else 0
    except KeyboardInterrupt as e:
        suite.summary["status"] = f"interrupted ({e})"
        for rec in suite.summary["stages"].values():
            if rec["status"] == "running":
                rec.update(status="timeout", reason=f"interrupted ({e})")
        return 130
    finally:
        if suite.proc is not None:
            kill_group(suite.proc)
        suite.summary["finished"] = now()
        suite.save()
        suite.say(f"{suite.summary['status']}: {suite.out / 'summary.md'}")
        print(summary_markdown(suite.summary), flush=True)


def run_stage(suite: Suite, name: str, rec: dict) -> str:
    budget = min(suite.sizes.budgets.get(name, 1e9), suite.left() - 5)
    rec.clear()
    rec.update(status="running", started=now(), budget_seconds=round(budget))
    if budget < 30:
        rec.update(status="skipped", reason=f"no time left in the suite's budget ({suite.left():.0f} s)")
        return "skipped"
    suite.save()
    suite.say(f"stage {name} (budget {budget:.0f} s)")
    t = suite.stage_t0 = time.time()
    try:
        STAGE_FNS[name](suite, rec, budget)
        rec["status"] = "ok"
    except Skip as e:
        rec.update(status="skipped", reason=str(e))
    except TimeoutError as e:
        rec.update(status="timeout", reason=str(e))
    except StageFailed as e:
        rec.update(status="failed", reason=str(e))
    except Exception as e:  # noqa: BLE001 - a bug in one stage must not lose the others' results
        import traceback
        (suite.logs / f"stage-{name}.traceback").write_text(traceback.format_exc())
        rec.update(status="failed", reason=f"{type(e).__name__}: {e} (logs/stage-{name}.traceback)")
    rec["seconds"] = round(time.time() - t, 1)
    suite.save()
    suite.say(f"stage {name}: {rec['status']}{' -- ' + rec['reason'] if rec.get('reason') else ''}")
    return rec["status"]


# --- summary.md ----------------------------------------------------------------------------------------------------
def summary_markdown(S: dict) -> str:
    env = S.get("env") or {}
    L = [f"# zoo GPU suite ({S['mode']})", "",
         f"- command: `{S['command']}`",
         f"- device: {env.get('device_name', '?')}; torch {env.get('torch', '?')}; "
         f"CUDA {env.get('cuda_version') or '-'}; "
         f"python {env.get('python', '?')}; zoo commit {env.get('git_commit') or 'n/a'} "
         f"(sources {env.get('source_digest') or 'n/a'})",
         f"- peer: {(env.get('peer') or {}).get('version') or (env.get('peer') or {}).get('missing', '?')}; "
         f"torch-fidelity {env.get('torch_fidelity', '?')}",
         f"- data: {(env.get('data') or {}).get('note', '?')}",
         f"- started {S['started']}, status **{S['status']}**, {S.get('wall_seconds')} s so far"
         + (f", finished {S['finished']}" if S.get("finished") else ""),
         f"- reference: {S['reference']}", "", "| stage | status | seconds | note |", "|---|---|---|---|"]
    for name, r in S["stages"].items():
        L.append(f"| {name} | {r['status']} | {r.get('seconds', '-')} | {r.get('reason') or headline(name, r)} |")
    st = S["stages"]
    if st["cuda"].get("tests"):
        L += ["", "## a. CUDA tests", "", f"{st['cuda']['passed']} passed, {st['cuda']['failed']} failed, "
              f"{st['cuda']['skipped']} skipped of {st['cuda']['collected']}", ""]
        L += [f"- {t['status']}: `{t['test']}` ({t['seconds']} s)" for t in st["cuda"]["tests"]]
        L += [f"- **{f['test']}**: {f['message']}" for f in st["cuda"].get("failures", [])]
    tr = st["train"]
    if tr.get("rows") or tr.get("peak"):
        peak = tr.get("peak") or {}
        L += ["", "## b. Training throughput", "", f"Peak: {peak.get('tflops', '-')} TFLOP/s ({peak.get('what', '-')})."
              f" FLOPs per image are forward + backward of one training step (torch.utils.flop_counter).", "",
              "| who | what | batch | img/s (steady) | img/s (wall) | GFLOP/img | TFLOP/s | MFU | x peer Trainer | "
              "x per FLOP | note |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in tr.get("rows", []):
            L.append(f"| {r['who']} | {r['what']} | {r.get('batch', '-')} | {fmt(r.get('images_per_s'))} | "
                     f"{fmt(r.get('wall_images_per_s'))} | {fmt(r.get('gflop_per_image'), 2)} | "
                     f"{gfmt(r.get('tflops'))} | {pct(r.get('mfu'))} | {fmt(r.get('x_peer_trainer'), 2)} | "
                     f"{fmt(r.get('x_peer_trainer_per_flop'), 2)} | "
                     f"{r.get('error', '')} |")
        if tr.get("peer_note"):
            L.append(f"\n{tr['peer_note']}")
        if tr.get("flops", {}).get("peer"):
            p = tr["flops"]["peer"]
            L.append(f"\nPeer U-Net: Unet({p['dim']}, (1,2,4)), the dim whose FLOPs per image come closest to zoo's "
                     f"({p['train_gflop']:.2f} vs {tr['flops']['zoo']['train_gflop']:.2f} GFLOP/img).")
    sa = st["sample"]
    if sa.get("rows"):
        L += ["", "## c. Sampling speed", "", "| who | what | sampler | n | batch | img/s | TFLOP/s | note |",
              "|---|---|---|---|---|---|---|---|"]
        L += [f"| {r['who']} | {r.get('what', '')} | {r.get('sampler', '-')} | {r.get('n', '-')} | "
              f"{r.get('batch', '-')} | "
              f"{fmt(r.get('images_per_s'))} | {gfmt(r.get('tflops'))} | {r.get('error') or r.get('note', '')} |"
              for r in sa["rows"]]
        for key in ("zoo_note", "peer_note", "zoo_error", "peer_error"):
            if sa.get(key) or (sa.get("zoo") or {}).get(key):
                L.append(f"\n{sa.get(key) or sa['zoo'][key]}")
    ev = st["eval"]
    if ev.get("rows"):
        L += ["", "## d. Evaluation speed", "", "| what | n | wall s (process) | s inside | sampler | FID | note |",
              "|---|---|---|---|---|---|---|"]
        L += [f"| {r['what']} | {r['n']} | {r['wall_seconds']} | {r.get('inside_seconds', '-')} | "
              f"{r.get('sampler')}{'-' + str(r['sampling_steps']) if r.get('sampling_steps') else ''} | "
              f"{fmt(r.get('fid'), 2)} | "
              f"{r.get('error', '')} |" for r in ev["rows"]]
    su = st["study"]
    if su.get("rows") or su.get("training"):
        L += ["", "## e. MNIST study", "", f"{su.get('minutes_per_model') or su.get('steps_per_model')} "
              f"{'min' if su.get('minutes_per_model') else 'steps'} per model, n = {su.get('n')}; "
              f"full report in {su.get('folder')}/", "", "| model | FID | IS | steps | train s | sample s/1k | error |",
              "|---|---|---|---|---|---|---|"]
        rows = su.get("rows") or [{"model": t["model"], "steps": t.get("steps"), "error": t.get("error", "")}
                                  for t in su.get("training", [])]
        L += [f"| {r['model']} | {fmt(r.get('fid'), 2)} | {fmt(r.get('is_mean'), 2)} | {r.get('steps', '-')} | "
              f"{r.get('train_seconds', '-')} | {r.get('sample_seconds_per_1000', '-')} | {r.get('error') or ''} |"
              for r in rows]
    return "\n".join(L) + "\n"


def headline(name: str, r: dict) -> str:
    res = r.get("result") or {}
    if name == "cuda" and "collected" in r:
        return f"{r['passed']} passed, {r['failed']} failed, {r['skipped']} skipped"
    if name == "train" and res:
        return (f"zoo {fmt(res.get('zoo_images_per_s'))} img/s vs peer Trainer "
                f"{fmt(res.get('peer_trainer_images_per_s'))}"
                f" = {fmt(res.get('x_peer_trainer'), 2)}x (target 5x: {yes(res.get('meets_x_peer'))}); MFU "
                f"{pct(res.get('mfu'))} (target 6%: {yes(res.get('meets_mfu'))})")
    if name == "sample" and res:
        return (f"DDIM zoo {fmt(res.get('zoo_ddim_images_per_s'))} img/s vs peer "
                f"{fmt(res.get('peer_ddim_images_per_s'))}"
                f" (target 2,000: {yes(res.get('meets_target'))})")
    if name == "eval" and res:
        return (f"cold {res.get('cold_seconds')} s, warm {res.get('warm_seconds')} s "
                f"(target 15 s: {yes(res.get('meets_target'))})")
    if name == "study" and r.get("rows"):
        best = min((x for x in r["rows"] if x.get("fid") is not None), key=lambda x: x["fid"], default=None)
        return f"{len(r['rows'])} models; best FID {fmt(best and best['fid'], 2)} ({best and best['model']})"
    return ""


def fmt(v, digits: int = 0) -> str:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,.{digits}f}" if isinstance(v, (int, float)) else str(v)


def gfmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def sig(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant figures (CPU smoke numbers are tiny, GPU ones large)."""
    return float(f"{x:.{digits}g}")


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def yes(v) -> str:
    return "n/a" if v is None else "met" if v else "MISSED"


# --- workers: each runs in its own process (python gpu_suite.py --worker NAME --params JSON) ------------------------
def emit_row(row: dict) -> None:
    print(ROW + json.dumps(row), flush=True)


def sync(device) -> None:
    import torch
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def w_env(p: dict) -> dict:
    import importlib.metadata as md
    import platform
    import torch
    out = {"torch": torch.__version__, "python": platform.python_version(), "cuda": torch.cuda.is_available(),
           "cuda_version": torch.version.cuda, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "platform": platform.platform()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(device_name=torch.cuda.get_device_name(0),
                   capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                   gpu_memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                   bf16=torch.cuda.is_bf16_supported())
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            out["nvidia_smi"] = smi.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    else:
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
        out["device_name"] = f"CPU: {cpu}, {os.cpu_count()} cores"
    for name, key in ((PEER, "peer"), ("torch-fidelity", "torch_fidelity")):
        try:
            version = md.version(name)
        except md.PackageNotFoundError:
            version = None
        if key == "peer":
            missing = [n for n in (PEER, "ema-pytorch", "accelerate", "pytorch-fid") if not has_dist(n)]
            ok = not missing
            if ok:
                try:
                    import denoising_diffusion_pytorch  # noqa: F401
                except Exception as e:  # noqa: BLE001
                    ok, missing = False, [f"import failed: {type(e).__name__}: {e}"[:200]]
            out["peer"] = {"ok": ok, "version": f"{PEER} {version}" if version else None,
                           "missing": ", ".join(missing) or None}
        else:
            out[key] = version
    import zoo
    out["zoo"] = zoo.__version__
    out["data"] = data_info()
    return out


def has_dist(name: str) -> bool:
    import importlib.metadata as md
    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


def data_info() -> dict:
    """Which MNIST split the runs use: the 60k training split where its files are, else the seeded 9k/1k
    holdout of the 10k test split (as the CPU studies do)."""
    from zoo import ZooError
    from zoo.config import Config
    from zoo.data import load_images
    try:
        n = len(load_images(Config({"name": "mnist", "split": "train"}), "all"))
        return {"ok": True, "sets": ["data.name=mnist"], "references": ["test"],
                "note": f"MNIST training split ({n} images); FID against the test split"}
    except ZooError:
        pass
    try:
        n = len(load_images(Config({"name": "mnist", "split": "test"}), "all"))
    except ZooError as e:
        return {"ok": False, "error": str(e)[:300], "note": f"no MNIST: {str(e)[:120]}"}
    return {"ok": True, "sets": ["data.name=mnist", "data.split=test", "data.holdout=1000"],
            "references": ["holdout", "test"],
            "note": f"no MNIST training split here: a seeded {n - 1000}-image slice of the {n}-image test split, "
                    f"scored against the 1,000 held out (and the whole test split)"}


def w_peak(p: dict) -> dict:
    """Dense matmul rate: bf16 on CUDA (what the matrix units and the models' autocast use), fp32 on CPU."""
    import torch
    dev = torch.device(p["device"])
    n, reps = int(p["size"]), int(p["reps"])
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=dev, dtype=dtype, generator=g)
    for _ in range(3):
        a @ b
    sync(dev)
    times = []
    for _ in range(reps):
        if dev.type == "cuda":
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            a @ b
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) / 1e3)
        else:
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
    sec = statistics.median(times)
    return {"tflops": sig(2 * n ** 3 / sec / 1e12), "what": f"{str(dtype).split('.')[-1]} {n}x{n}x{n} matmul, "
            f"median of {reps} (random data)"}


def count_flops(fn, n: int) -> float:
    """FLOPs per image of ``fn()`` over a batch of ``n``; attention through the math kernel, whose matmuls the
    counter sees on every device (the fused kernels' FLOPs are the same)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with sdpa_kernel([SDPBackend.MATH]), counter:
        fn()
    return counter.get_total_flops() / n


def zoo_config(p: dict, extra=()):
    """The DDPM config to measure: the one the train stage's run resolved (``p["run"]``), else the device's
    default (``p["preset"]``, ``p["sets"]``); ``extra`` overrides on top."""
    import zoo
    from zoo.api import run_config
    if p.get("run"):
        return run_config(p["run"], sets=[f"trainer.device={p['device']}", *extra])
    return zoo.model_config("ddpm", preset=p["preset"], sets=[*p["sets"], *extra])


def peer_unet(dim: int):
    from denoising_diffusion_pytorch import Unet
    return Unet(int(dim), dim_mults=(1, 2, 4), channels=1)


def w_flops(p: dict) -> dict:
    import torch
    import zoo
    dev = torch.device(p["device"])
    cfg = zoo_config(p)
    torch.manual_seed(0)
    model = zoo.create_model("ddpm", cfg).to(dev)
    n, size = 2, int(cfg.data.image_size)
    x = torch.rand(n, *model.image_shape, device=dev) * 2 - 1
    t = torch.full((n,), 10, device=dev)
    zoo_train = count_flops(lambda: model.training_loss(x, "main")["loss"].backward(), n)
    with torch.no_grad():
        zoo_fwd = count_flops(lambda: model.net(x, t), n)
    tr = cfg.trainer
    out = {"zoo": {"train_gflop": round(zoo_train / 1e9, 4), "forward_gflop": round(zoo_fwd / 1e9, 4),
                   "params": sum(q.numel() for q in model.parameters()), "image_size": size,
                   "model": {k: v for k, v in dict(cfg.model).items() if not isinstance(v, dict)},
                   "trainer": {"compile": bool(tr.compile), "precision": str(tr.precision),
                               "channels_last": str(tr.channels_last), "batch_size": int(tr.batch_size)}}}
    if not p["peer"]:
        return out
    from denoising_diffusion_pytorch import GaussianDiffusion
    xp = torch.rand(n, 1, size, size, device=dev)
    tried = {}
    for dim in range(8, 257, 8):  # the peer's Unet width whose training FLOPs per image match zoo's best
        unet = peer_unet(dim).to(dev)
        diff = GaussianDiffusion(unet, image_size=size, timesteps=1000).to(dev)
        tried[dim] = count_flops(lambda: diff(xp).backward(), n)  # noqa: B023 - called at once, in this pass
        if tried[dim] > 1.3 * zoo_train:
            break
    dim = min(tried, key=lambda d: abs(tried[d] - zoo_train))
    unet = peer_unet(dim).to(dev)
    with torch.no_grad():
        fwd = count_flops(lambda: unet(xp * 2 - 1, t), n)
    out["peer"] = {"dim": dim, "train_gflop": round(tried[dim] / 1e9, 4), "forward_gflop": round(fwd / 1e9, 4),
                   "params": sum(q.numel() for q in unet.parameters()),
                   "mismatch": round(tried[dim] / zoo_train - 1, 4),
                   "candidates_gflop": {d: round(f / 1e9, 3) for d, f in tried.items()}}
    return out


def write_peer_folder(folder: Path, sets: list[str], limit: int | None) -> int:
    """The zoo run's training images as PNGs: the peer's Trainer reads an image folder."""
    from PIL import Image
    from zoo.config import Config, parse_set
    from zoo.data import load_images
    data = parse_set(sets)["data"]
    images = load_images(Config(data), "train")
    images = images[:limit] if limit else images
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.png"))) != len(images):
        for i, img in enumerate(images):
            Image.fromarray(img[0].numpy(), mode="L").save(folder / f"{i:05d}.png")
    return len(images)


def w_peer_train(p: dict) -> dict:
    """The peer's own Trainer end to end (folder dataset, DataLoader workers, accelerate, EMA): warm up, then
    time more steps of the same Trainer."""
    import torch
    from denoising_diffusion_pytorch import GaussianDiffusion, Trainer
    n_images = write_peer_folder(Path(p["folder"]), p["sets"], p["limit"])
    cuda = torch.device(p["device"]).type == "cuda"
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(peer_unet(p["dim"]), image_size=int(p["size"]), timesteps=1000, sampling_timesteps=50)
    trainer = Trainer(diffusion, p["folder"], train_batch_size=int(p["batch"]), train_num_steps=int(p["warmup"]),
                      save_and_sample_every=10 ** 9, calculate_fid=False, amp=cuda, mixed_precision_type="bf16",
                      results_folder=p["results"], augment_horizontal_flip=False, num_samples=16)
    t = time.perf_counter()
    trainer.train()
    warm = time.perf_counter() - t
    trainer.train_num_steps = int(p["warmup"]) + int(p["steps"])
    sync(p["device"])
    t = time.perf_counter()
    trainer.train()
    sync(p["device"])
    sec = time.perf_counter() - t
    return {"images_per_s": round(int(p["steps"]) * int(p["batch"]) / sec, 1), "timed_seconds": round(sec, 2),
            "warmup_seconds": round(warm, 2), "warmup_steps": int(p["warmup"]), "images": n_images,
            "note": f"steps {p['warmup']}..{int(p['warmup']) + int(p['steps'])} of one Trainer (after its warm-up)"}


def w_peer_step(p: dict) -> dict:
    import torch
    from denoising_diffusion_pytorch import GaussianDiffusion
    dev = torch.device(p["device"])
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(peer_unet(p["dim"]), image_size=int(p["size"]), timesteps=1000).to(dev)
    opt = torch.optim.Adam(diffusion.parameters(), lr=1e-4)
    x = torch.rand(int(p["batch"]), 1, int(p["size"]), int(p["size"]), device=dev)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = diffusion(x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    for _ in range(max(1, int(p["reps"]) // 5)):
        step()
    sync(dev)
    t = time.perf_counter()
    for _ in range(int(p["reps"])):
        step()
    sync(dev)
    sec = time.perf_counter() - t
    return {"images_per_s": round(int(p["reps"]) * int(p["batch"]) / sec, 1), "timed_seconds": round(sec, 2)}


def w_zoo_sample(p: dict) -> dict:
    """zoo's DDPM (the device's default config, random weights: speed does not depend on them) sampled with
    DDIM and the few-step solver, eager and compiled (model.compile_sampler), timed end to end."""
    import torch
    import zoo
    sys.path.insert(0, str(HERE))
    from sample_speed import gflop_per_call, time_sampler
    dev = torch.device(p["device"])
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out = {"note": None}
    for compiled in ([False, True] if p["compile"] else [False]):
        cfg = zoo_config(p, [f"model.compile_sampler={str(compiled).lower()}"])
        torch.manual_seed(0)
        model = zoo.create_model("ddpm", cfg).to(dev).eval()
        if dev.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        out["image_size"] = int(cfg.data.image_size)
        with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
            gflop = gflop_per_call(model, dev)
        choices = model.sample_options["sampler"].choices or ()
        plan = [("ddim", p["ddim_steps"])]
        if "dpm++" in choices:
            plan.append(("dpm++", p["few_steps"]))
        else:
            out["note"] = f"the DDPM plugin has no dpm++ sampler here (samplers: {', '.join(choices)}): no few-step row"
        for sampler, steps in plan:
            what = f"zoo DDPM ({'compiled' if compiled else 'eager'}, {cfg.trainer.precision} autocast)"
            try:
                r = time_sampler(model, dev, int(p["n"]), int(p["batch"]), sampler, int(steps), None, 0)
                r["tflops"] = sig(r["images_per_s"] * r["network_calls_per_image"] * gflop / 1e3)
                row = {"who": "zoo", "what": what, **r}
            except Exception as e:  # noqa: BLE001 - one sampler failing is a row, not the stage
                row = {"who": "zoo", "what": what, "sampler": f"{sampler}-{steps}",
                       "error": f"{type(e).__name__}: {e}"[:300]}
            emit_row(row)
    return out


def w_peer_sample(p: dict) -> dict:
    """The peer's GaussianDiffusion.sample (DDIM at ``steps``), bf16 autocast on CUDA like zoo's."""
    import torch
    from denoising_diffusion_pytorch import GaussianDiffusion
    dev = torch.device(p["device"])
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    dim = p["dim"]
    if dim is None:  # the train stage did not run: match FLOPs here
        dim = w_flops({"device": p["device"], "preset": p["match_preset"], "sets": p["sets"], "run": p["run"],
                       "peer": True})["peer"]["dim"]
    torch.manual_seed(0)
    unet = peer_unet(dim).to(dev).eval()
    size, n, batch = int(p["size"]), int(p["n"]), int(p["batch"])
    with torch.no_grad():
        fwd = count_flops(lambda: unet(torch.rand(2, 1, size, size, device=dev), torch.full((2,), 10, device=dev)), 2)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    with amp:
        GaussianDiffusion(unet, image_size=size, timesteps=1000, sampling_timesteps=2).to(dev).sample(batch_size=batch)
    for steps in p["steps"]:
        diffusion = GaussianDiffusion(unet, image_size=size, timesteps=1000, sampling_timesteps=int(steps)).to(dev)
        sync(dev)
        t = time.perf_counter()
        with amp:
            imgs = [diffusion.sample(batch_size=min(batch, n - s)) for s in range(0, n, batch)]
        sync(dev)
        sec = time.perf_counter() - t
        ok = all(bool(torch.isfinite(i).all()) for i in imgs)
        ips = n / sec
        emit_row({"who": "peer", "what": f"{PEER} GaussianDiffusion.sample, Unet({dim}, (1,2,4)), bf16 autocast",
                  "sampler": f"ddim-{steps}", "n": n, "batch": batch, "seconds": round(sec, 3),
                  "images_per_s": round(ips, 2), "tflops": sig(ips * int(steps) * fwd / 1e12),
                  **({} if ok else {"error": "non-finite images"})})
    return {"dim": dim}


def w_study_train(p: dict) -> dict:
    """One family trained exactly as `zoo compare --budget-minutes M` trains it: compare's own plan and
    train_all, with the settings the later `zoo compare` call repeats (so that it reuses the run)."""
    from zoo.compare import plan, train_all
    t = time.perf_counter()
    entries = plan([p["model"]], Path(p["out"]), preset=p["preset"], sets=p["sets"], budget_minutes=p["minutes"],
                   steps=p["steps"])
    errors = train_all(entries, sets=p["sets"], budget_minutes=p["minutes"], n=p["n"],
                       echo=lambda m: print(m, flush=True))
    out = {"model": p["model"], "wall_seconds": round(time.perf_counter() - t, 1)}
    if p["model"] in errors:
        out["error"] = errors[p["model"]]
        return out
    run = entries[0].run
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "loss" in r]
    out.update(run=str(run), steps=steps[-1]["step"] if steps else None,
               train_seconds=steps[-1].get("time") if steps else None)
    return out


WORKERS = {f.__name__: f for f in (w_env, w_peak, w_flops, w_peer_train, w_peer_step, w_zoo_sample, w_peer_sample,
                                    w_study_train)}


# --- detached runs on a lent GPU machine: start once, wait, pack -------------------------------------------------
def launch(args, argv: list[str]) -> int:
    """Start the suite in its own session (it outlives this call), wait up to --wait seconds printing its
    progress, then --pack. Called again with the same arguments it only waits and packs."""
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log, pidfile = out / "suite.log", out / "suite.pid"
    pid = int(pidfile.read_text()) if pidfile.is_file() else None
    alive = pid is not None and pid_alive(pid)
    status = read_status(out)
    if pid is None:
        child = [sys.executable, str(Path(__file__).resolve()), *strip_launcher_flags(argv)]
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   ZOO_GPU_SUITE_COMMAND=shlex.join(["python3", "benchmarks/gpu_suite.py", *argv]))
        with open(log, "ab") as f:
            proc = subprocess.Popen(child, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # setsid: it outlives this call
        pidfile.write_text(str(proc.pid))
        pid, alive = proc.pid, True
        print(f"started the suite (pid {pid}); log: {log}", flush=True)
    elif alive:
        print(f"the suite is running (pid {pid}, status {status}); waiting", flush=True)
    else:
        print(f"the suite (pid {pid}) has ended: {status}", flush=True)
    deadline, pos = time.time() + float(args.wait or 0), 0
    while True:
        if log.is_file():
            with open(log, "rb") as f:
                f.seek(pos)
                chunk = f.read()
                pos += len(chunk)
            text = chunk.decode(errors="replace")
            progress = [line for line in text.splitlines() if line.startswith("[gpu-suite")]
            if progress:
                print("\n".join(progress), flush=True)
        if not pid_alive(pid) or time.time() >= deadline:
            break
        time.sleep(5)
    if args.pack:
        pack(out, Path(args.pack))
    status = read_status(out)
    if pid_alive(pid):
        print(f"STILL RUNNING (pid {pid}, {status}): issue the same command again now (the machine is kept for "
              f"30 s after a call)", flush=True)
        return 0
    if (out / "summary.md").is_file():
        print((out / "summary.md").read_text(), flush=True)
    print(f"FINISHED: {status}", flush=True)
    return 0 if status.startswith("finished ") else 1


def pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reaps it when it is our own child that has exited
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def read_status(out: Path) -> str:
    try:
        s = json.loads((out / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "not started"
    stages = ", ".join(f"{k} {v['status']}" for k, v in s["stages"].items())
    return f"{s['status']} ({stages})"


def strip_launcher_flags(argv: list[str]) -> list[str]:
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        name = a.split("=", 1)[0]
        if name in LAUNCHER_FLAGS:
            skip = LAUNCHER_FLAGS[name] if "=" not in a else 0
            continue
        out.append(a)
    return out


PACK_SKIP_SUFFIXES = (".pt", ".pth", ".npz", ".npy", ".safetensors", ".whl", ".pid")
PACK_SKIP_DIRS = {"cache", "stats-cache", "peer-data", "peer-results", "checkpoints", "__pycache__"}


def pack(out: Path, dest: Path, limit: int = 15 * 2 ** 20) -> None:
    """summary.md, summary.json, suite.log and results.tgz (the out folder, without checkpoints, caches and
    the peer's image folder) into ``dest``: at most 4 files, each under the 16 MiB a device call returns."""
    import shutil
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("summary.md", "summary.json", "suite.log"):
        if (out / name).is_file():
            shutil.copy(out / name, dest / name)
    date = time.strftime("%Y-%m-%d")
    try:
        date = json.loads((out / "summary.json").read_text())["started"][:10]
    except (OSError, json.JSONDecodeError, KeyError):
        pass
    for drop_images in (False, True):
        tgz = dest / "results.tgz"

        def keep(info: tarfile.TarInfo):
            parts = Path(info.name).parts
            if set(parts) & PACK_SKIP_DIRS or info.name.endswith(PACK_SKIP_SUFFIXES):
                return None
            if drop_images and "samples" in parts[:-1]:  # noqa: B023 - tar.add below uses it in this pass
                return None
            return info
        with tarfile.open(tgz, "w:gz") as tar:
            tar.add(out, arcname=f"gpu-{date}", filter=keep)
        if tgz.stat().st_size <= limit:
            break
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.2f} MiB" for p in sorted(dest.iterdir()))
    print(f"packed {dest}: {sizes}", flush=True)


# --- command line ---------------------------------------------------------------------------------------------------
def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="results folder [benchmarks/results/gpu-<date>; --smoke: tmp/gpu-smoke]")
    ap.add_argument("--smoke", action="store_true",
                    help="every stage on the CPU at tiny sizes (the test suite runs it)")
    ap.add_argument("--data", default=os.environ.get("ZOO_DATA"), help="folder with the MNIST IDX files [$ZOO_DATA]")
    ap.add_argument("--wheels", help="install every *.whl in this folder first (no network; benchmarks/GPU.md)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {','.join(STAGES)} [all]")
    ap.add_argument("--minutes", type=float, help="the whole suite's budget [24; --smoke 8]")
    ap.add_argument("--study-minutes", type=float, help="training minutes per model in the study "
                    "[min(3, what the budget leaves)]")
    ap.add_argument("--study-models", help=f"comma-separated [{','.join(FAMILIES)}]")
    ap.add_argument("--tests", default="tests", help="what `pytest -m cuda` runs [tests]")
    ap.add_argument("--budgets", help="seconds per stage, e.g. train=200,sample=120,eval=90 [cuda=480,train=420,"
                    "sample=300,eval=150]: a short lease")
    ap.add_argument("--cuda-k", help="only the CUDA tests pytest -k selects (e.g. a rerun of the ones that failed)")
    ap.add_argument("--keep-going", action="store_true", help="measure even when the CUDA tests fail")
    ap.add_argument("--detach", action="store_true", help="start the suite in its own session and return (see --wait)")
    ap.add_argument("--wait", type=float, default=0,
                    help="with --detach: wait this many seconds for it, printing progress")
    ap.add_argument("--pack", help="with --detach: copy summary.md/.json, suite.log and results.tgz into this folder")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.out:
        args.out = str(REPO / "tmp" / "gpu-smoke") if args.smoke else \
            str(HERE / "results" / f"gpu-{time.strftime('%Y-%m-%d')}")
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        result = WORKERS[args.worker](json.loads(args.params))
        print(RESULT + json.dumps(result, default=str), flush=True)
        return 0
    if args.detach:
        return launch(args, argv)
    return run_suite(args)


if __name__ == "__main__":
    sys.exit(main())

"""The third-party plugin experience, through the real entry-point mechanism: `zoo plugins new`, the guide's
example plugin, the WGAN-GP example package (installed like any third-party package) and plugin isolation."""
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import zoo
from conftest import MNIST_SETS, REPO
from helpers import zoo_cli
from plugin_env import BROKEN_SOURCES, make_dist, toy_dist
from zoo import hookimpl
from zoo.cli import main
from zoo.extractors import mnist_extractor
from zoo.testing import check_dataset, check_extractor, registry_with
from zoo.registry import registry, use_registry

SETS = [a for s in MNIST_SETS for a in ("--set", s)]
# `python -c BOOT SITE MODULE ARGS...` runs `python -m MODULE ARGS...` with SITE processed as a site directory
# (its .pth files included): what an editable `pip install` into a virtualenv gives, without touching the venv.
BOOT = ("import runpy, site, sys; site.addsitedir(sys.argv.pop(1)); mod = sys.argv.pop(1); "
        "runpy.run_module(mod, run_name='__main__', alter_sys=True)")


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def subprocess_env(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", ZOO_TEST_SETS=" ".join(MNIST_SETS), **extra)


def run_with_site(site_dir, module, *args, cwd=None, timeout=180):
    return subprocess.run([sys.executable, "-c", BOOT, str(site_dir), module, *map(str, args)], cwd=cwd,
                          env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def presets_of(listing: str, model: str) -> dict:
    """``{preset: help}`` from the ``--preset`` lines under MODEL's row of `zoo list`."""
    lines = listing.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(f"{model} "))
    found = {}
    for line in lines[i + 1:]:
        m = re.match(r"  --preset (\S+)\s+\S+\s*(.*)$", line)
        if not m:
            break
        found[m.group(1)] = m.group(2)
    return found


def metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def fresh_registry(tmp_path):
    """Forget the plugin modules a test imported from tmp_path, and give back the registry from before it."""
    before = use_registry(None)
    yield
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
    use_registry(before)


# --- zoo plugins new ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("My VAE", "plugin name 'My VAE' is not valid"),
    ("2vae", "plugin name '2vae' is not valid"),
    ("vae-", "plugin name 'vae-' is not valid"),
    ("zoo-vae", "name the model, not the package"),
    ("vae", "model name 'vae' is already registered by plugin 'vae'"),
    ("datasets", "plugin name 'datasets' is already used by zoo"),
    ("plugins", "import name 'zoo_plugins' is already taken"),
])
def test_new_plugin_rejects_bad_names(name, expected, tmp_path):
    code, out = run("plugins", "new", name, "--dir", tmp_path / "p")
    assert code == 2 and expected in out, out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out
    assert not (tmp_path / "p").exists()


def test_new_plugin_refuses_a_non_empty_target(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    code, out = run("plugins", "new", "my-model", "--dir", tmp_path)
    assert code == 2 and f"target '{tmp_path}' already exists and is not an empty directory" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.slow
def test_new_plugin_installs_lists_trains_and_passes_its_own_tests(tmp_path):
    pkg, site_dir = tmp_path / "zoo-my-flow", tmp_path / "site"
    code, out = run("plugins", "new", "my-flow", "--dir", pkg)
    assert code == 0, out
    assert f"pip install -e {pkg}" in out
    for f in ("pyproject.toml", "README.md", ".gitignore", "zoo_my_flow/__init__.py", "zoo_my_flow/model.py",
              "tests/test_model.py"):
        assert (pkg / f).is_file(), f
    meta = tomllib.loads((pkg / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "zoo-my-flow"
    assert meta["project"]["entry-points"]["zoo.plugins"] == {"my-flow": "zoo_my_flow.model"}
    assert not re.search(r"\{\{\w+\}\}", "".join(p.read_text() for p in pkg.rglob("*") if p.is_file()))

    # the real thing: an editable pip install (into a throwaway site directory, not the shared venv)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "-e", str(pkg), "--target", str(site_dir)],
                         capture_output=True, text=True, timeout=120)
    assert pip.returncode == 0, pip.stderr
    listing = run_with_site(site_dir, "zoo", "list")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("my-flow "))
    assert row.split()[1:3] == ["vae", "my-flow"]
    assert presets_of(listing.stdout, "my-flow") == {"tiny": "smoke test: seconds on a CPU, not for results"}
    # an unconditional plugin written for today's API: listed as such, and conditioning it is one clear line
    header = next(line for line in listing.stdout.splitlines() if line.startswith("model "))
    assert row[header.index("cond.")] == "-", row
    detail = run_with_site(site_dir, "zoo", "list", "my-flow")
    assert detail.returncode == 0 and "conditional: no" in detail.stdout, detail.stdout
    cond = run_with_site(site_dir, "zoo", "train", "my-flow", "--preset", "tiny", *SETS, "--set",
                         "model.conditional=true", "--out", tmp_path / "cond")
    lines = cond.stderr.strip().splitlines()
    assert cond.returncode == 2 and len(lines) == 1 and lines[0].startswith(
        "error: model 'my-flow' cannot be conditional (model.conditional=true): models that can: "), cond.stderr
    check = run_with_site(site_dir, "zoo", "plugins", "--check")
    assert check.returncode == 0 and re.search(r"^my-flow\s+zoo-my-flow\s+0\.1\.0", check.stdout, re.M), check.stdout

    train = run_with_site(site_dir, "zoo", "train", "my-flow", "--preset", "tiny", *SETS, "--set",
                          "trainer.max_steps=100", "--out", tmp_path / "run")
    assert train.returncode == 0, train.stderr
    rows = metrics(tmp_path / "run")
    assert rows[-1]["loss"] < rows[0]["loss"]  # the template model learns
    assert (tmp_path / "run" / "samples.png").is_file()

    tests = run_with_site(site_dir, "pytest", "-q", "-p", "no:cacheprovider", cwd=pkg)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert re.search(r"\b[1-9]\d* passed", tests.stdout) and "failed" not in tests.stdout


# --- the guide's example plugin ---------------------------------------------------------------------
@pytest.mark.slow
def test_guide_example_plugin_is_short_and_trains(tmp_path, monkeypatch, fresh_registry):
    guide = (REPO / "docs" / "plugins.md").read_text()
    section = guide.split("## A whole plugin in 60 lines", 1)[1].split("\n## ", 1)[0]
    toml_src = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    py_src = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(toml_src.splitlines()) + len(py_src.splitlines()) <= 80
    meta = tomllib.loads(toml_src)
    (module,) = meta["tool"]["setuptools"]["py-modules"]
    root = make_dist(tmp_path / "site", meta["project"]["name"], meta["project"]["entry-points"]["zoo.plugins"],
                     {module: py_src}, version=meta["project"]["version"])
    monkeypatch.syspath_prepend(str(root))
    reg = registry(reload=True)
    assert not [f for f in reg.failures if f.plugin == "mlp-vae"], reg.failures
    assert reg.models["mlp-vae"].plugin == "mlp-vae"
    train = zoo_cli("train", "mlp-vae", "--preset", "tiny", *SETS, "--set", "trainer.max_steps=60", "--set",
                    "trainer.log_every=20", "--out", tmp_path / "run", site=root, timeout=180)
    assert train.returncode == 0, train.stderr
    rows = metrics(tmp_path / "run")
    assert rows[-1]["loss"] < rows[0]["loss"]
    images = zoo.load_run(tmp_path / "run").sample(4, torch.Generator().manual_seed(0))
    assert images.shape == (4, 1, 28, 28) and 0 <= images.min() and images.max() <= 1


# --- the WGAN-GP example, installed like a third-party package ----------------------------------------
@pytest.fixture(scope="module")
def wgan_gp_installed():
    import importlib.metadata as md
    try:
        dist = md.distribution("zoo-wgan-gp")
    except md.PackageNotFoundError:
        pytest.fail("the example plugin is not installed: run `python -m pip install -e examples/zoo-wgan-gp` "
                    "(.ci/run does)")
    return dist


def test_wgan_gp_is_discovered_like_a_builtin(wgan_gp_installed):
    reg = registry(reload=True)
    entry = reg.models["wgan-gp"]
    assert (entry.plugin, entry.family) == ("wgan-gp", "gan") and "tiny" in entry.presets
    assert any(p.name == "wgan-gp" and p.distribution == "zoo-wgan-gp" and p.module == "zoo_wgan_gp"
               and p.version == wgan_gp_installed.version for p in reg.plugins)
    code, out = run("list")
    row = next(line for line in out.splitlines() if line.startswith("wgan-gp "))
    assert code == 0 and "Gulrajani" in row and presets_of(out, "wgan-gp")["tiny"].startswith("smoke test: 30 steps")
    code, out = run("plugins")
    assert code == 0 and re.search(r"wgan-gp\s+zoo-wgan-gp\s+0\.1\.0\s+zoo_wgan_gp\s+wgan-gp", out)


@pytest.mark.slow
def test_wgan_gp_trains_with_zoo_train_tiny(wgan_gp_installed, tmp_path):
    out_dir = tmp_path / "wgan"
    zoo_script = Path(sys.executable).with_name("zoo")  # the installed console script, as a user runs it
    train = subprocess.run([str(zoo_script), "train", "wgan-gp", "--preset", "tiny", *SETS, "--out", str(out_dir)],
                           env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert train.returncode == 0 and "finished: 30 steps" in train.stdout, train.stderr
    rows = metrics(out_dir)
    assert {"critic_loss", "g_loss", "wasserstein", "gp"} <= set(rows[0])
    assert all(torch.isfinite(torch.tensor([r["critic_loss"], r["g_loss"], r["gp"]])).all() for r in rows)
    # the critic learns to tell real from generated images: its Wasserstein estimate grows from ~0
    assert rows[-1]["wasserstein"] > rows[0]["wasserstein"] + 1.0
    model = zoo.load_run(out_dir)
    images = model.sample(6, torch.Generator().manual_seed(3))
    assert images.shape == (6, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(images, model.sample(6, torch.Generator().manual_seed(3)))
    code, out = run("sample", out_dir, "-n", "4", "--out", tmp_path / "g.png", "--sampler", "ddim")
    # checked against the plugin's declared sample_options (none) before the run is even loaded
    assert code == 2 and "model 'wgan-gp' has no sampling option 'sampler'" in out
    # an unconditional plugin unchanged by class conditioning: trained and sampled as above; no labels
    code, out = run("sample", out_dir, "-n", "4", "--out", tmp_path / "g.png", "--label", "3")
    assert code == 2 and "this run of 'wgan-gp' is unconditional" in out and len(out.strip().splitlines()) == 1
    code, out = run("train", "wgan-gp", "--preset", "tiny", *SETS, "--set", "model.conditional=true",
                    "--out", tmp_path / "cond")
    assert code == 2 and "model 'wgan-gp' cannot be conditional" in out and not (tmp_path / "cond").exists()


@pytest.mark.slow
def test_wgan_gp_package_tests_pass(wgan_gp_installed):
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=REPO / "examples" / "zoo-wgan-gp", env=subprocess_env(), capture_output=True,
                           text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert re.search(r"\b[1-9]\d* passed", tests.stdout) and "failed" not in tests.stdout


# --- isolation ----------------------------------------------------------------------------------------
BROKEN = {
    **BROKEN_SOURCES,
    "nosample": """
        from zoo import ZooModel, hookimpl
        class NoSample(ZooModel):
            def training_loss(self, x, phase):
                return {"loss": x.mean()}
        @hookimpl
        def zoo_register_models(register):
            register(NoSample, name="nosample")
    """,
    "typohook": """
        from zoo import hookimpl
        from toyzoo import Toy
        @hookimpl
        def zoo_register_model(register):
            register(Toy, name="typo")
    """,
    "halfway": """
        from zoo import hookimpl
        from toyzoo import Toy
        @hookimpl
        def zoo_register_models(register):
            register(Toy, name="halfway-ok")
            raise ValueError("gave up after one model")
    """,
    "newerapi": "ZOO_API = 2\n",
    "olderapi": "ZOO_API = 0\n",
    "strapi": "ZOO_API = '1'\n",
}
EXPECTED = {
    "broken-import": "failed to import brokenimport: ModuleNotFoundError: No module named 'does_not_exist_anywhere'",
    "raising": "zoo_register_models raised RuntimeError: boom in hook",
    "zdupe": "model name 'toy' is already registered by plugin 'toy'",
    "nosample": "model 'nosample' breaks the contract: NoSample does not implement sample()",
    "typo": "zoo_register_model() is not a zoo hook, so it is never called (did you mean zoo_register_models?)",
    "halfway": "zoo_register_models raised ValueError: gave up after one model",
    "newer": "needs zoo plugin API 2, this zoo provides 1 (upgrade zoo)",
    "older": "needs zoo plugin API 0, this zoo provides 1 (upgrade the plugin)",
    "strapi": "ZOO_API = '1' is not an integer",
    "datasets": "the plugin name 'datasets' of zoo-broken (never_imported) is taken by zoo: rename the entry point",
}


@pytest.fixture
def broken_env(tmp_path, monkeypatch, fresh_registry):
    root = toy_dist(tmp_path / "site")
    make_dist(root, "zoo-broken", {"broken-import": "brokenimport", "raising": "raisinghook", "zdupe": "dupeplugin",
                                   "nosample": "nosample", "typo": "typohook", "halfway": "halfway",
                                   "newer": "newerapi", "older": "olderapi", "strapi": "strapi",
                                   "datasets": "never_imported"}, BROKEN)
    monkeypatch.syspath_prepend(str(root))
    registry(reload=True)
    return root


def test_zoo_plugins_names_each_broken_plugin_once_and_why(broken_env):
    code, out = run("plugins")
    assert code == 0
    table, failed = out.split("\nfailed:\n", 1)
    for plugin, reason in EXPECTED.items():
        assert f"  {plugin}: {reason}" in failed, (plugin, failed)
        assert not re.search(rf"^{plugin}\s+zoo-broken", table, re.M), plugin  # listed once: not as loaded too
    assert re.search(r"^toy\s+zoo-toy\s+0\.1\.0", table, re.M)  # the good plugin of the same environment
    assert re.search(r"^datasets\s+zoo\s", table, re.M)  # zoo's own `datasets`, not the impostor's name clash
    assert "(still adds: halfway-ok)" in failed and "Traceback" not in out
    assert "`zoo plugins -v` shows the tracebacks" in out


def test_zoo_plugins_check_json_and_tracebacks(broken_env, monkeypatch):
    code, out = run("plugins", "--check")
    assert code == 1 and "  raising: zoo_register_models raised RuntimeError: boom in hook" in out

    code, out = run("plugins", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is False and report["api_version"] == zoo.API_VERSION
    plugins = {(p["name"], p["distribution"]): p for p in report["plugins"]}
    assert len(plugins) == len(report["plugins"])  # each plugin once
    toy = plugins["toy", "zoo-toy"]
    assert (toy["status"], toy["version"], toy["module"], toy["failures"]) == ("ok", "0.1.0", "toyzoo", [])
    assert toy["adds"] == {"models": ["toy", "toycond", "toygan"], "datasets": [], "extractors": []}
    raising = plugins["raising", "zoo-broken"]
    assert raising["status"] == "failed" and raising["module"] == "raisinghook"
    (failure,) = raising["failures"]
    assert failure["error"] == EXPECTED["raising"]
    assert 'raisinghook.py", line' in failure["traceback"] and "RuntimeError: boom in hook" in failure["traceback"]
    assert "zoo/registry.py" not in failure["traceback"]  # the plugin's frames, not zoo's guard
    assert plugins["halfway", "zoo-broken"]["adds"]["models"] == ["halfway-ok"]
    assert plugins["broken-import", "zoo-broken"]["module"] == "brokenimport"
    assert "ModuleNotFoundError" in plugins["broken-import", "zoo-broken"]["failures"][0]["traceback"]
    assert plugins["datasets", "zoo"]["status"] == "ok" and plugins["datasets", "zoo-broken"]["status"] == "failed"
    assert {p["status"] for p in report["plugins"] if p["distribution"] == "zoo"} == {"ok"}

    code, out = run("plugins", "--json", "--check")
    assert code == 1 and json.loads(out)["ok"] is False

    code, out = run("plugins", "-v")
    assert code == 0 and "Traceback (most recent call last):" in out and 'raisinghook.py", line' in out


def test_strict_plugins_make_a_failure_an_error_with_its_traceback(broken_env, monkeypatch):
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    code, out = run("list")
    assert code == 2
    lines = out.strip().splitlines()
    assert lines[-1].startswith("error: plugin 'broken-import' failed: failed to import brokenimport")
    assert "[ZOO_STRICT_PLUGINS=1 makes this an error]" in lines[-1] and "more: `zoo plugins` lists them" in lines[-1]
    assert 'raisinghook.py", line' in out and "RuntimeError: boom in hook" in out
    code, out = run("plugins")  # still lists everything, with tracebacks, and fails like --check
    assert code == 1 and "Traceback (most recent call last):" in out and re.search(r"^toy\s+zoo-toy", out, re.M)


def test_other_models_list_and_train_while_broken_plugins_are_installed(broken_env, tmp_path):
    code, out = run("list")
    assert code == 0 and re.search(r"^toy\s+toy\s+toy\s", out, re.M) and re.search(r"^vae\s", out, re.M)
    assert "warning: plugin 'raising': zoo_register_models raised RuntimeError: boom in hook" in out
    assert not re.search(r"^(typo|nosample)\s", out.split("\n\n")[0], re.M)
    code, out = run("train", "toy", "--preset", "tiny", *SETS, "--set", "trainer.max_steps=10", "--out",
                    tmp_path / "run")
    assert code == 0 and "finished: 10 steps" in out, out
    code, out = run("train", "nosample", *SETS, "--out", tmp_path / "other")
    assert code == 2 and "unknown model 'nosample'" in out and "plugins that failed to load:" in out
    assert "nosample" in out.split("plugins that failed to load:")[1]


def test_disabling_a_plugin_by_name(broken_env, monkeypatch):
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "raising,newer")
    failed = {f.plugin for f in registry(reload=True).failures}
    assert "raising" not in failed and "newer" not in failed and "zdupe" in failed


# --- start-up: `zoo --help` and a cached `zoo list` import no torch ---------------------------------------
HELP_PROBE = """
import sys
from zoo.cli import main
for args in {commands!r}:
    try:
        main(args, prog_name="zoo", standalone_mode=False)
    except SystemExit:
        pass
import zoo
from zoo import hookimpl, ZooError, API_VERSION
print("HEAVY:", sorted(m for m in ("torch", "numpy", "yaml", "torchvision", "zoo.contract") if m in sys.modules))
"""
COMMANDS = [["--help"], ["list", "--help"], ["plugins", "--help"], ["plugins", "new", "--help"], ["train", "--help"],
            ["sample", "--help"], ["eval", "--help"], ["eval-net", "--help"], ["compare", "--help"],
            ["show-config", "--help"], ["export", "--help"]]


def test_help_of_every_command_imports_no_torch():
    """`zoo --help` / `zoo COMMAND --help` stay fast (benchmarks/cli_speed.py times them): no heavy import."""
    assert {c[0] for c in COMMANDS if c[0] != "--help"} == set(main.commands)  # every command is probed
    probe = subprocess.run([sys.executable, "-c", HELP_PROBE.format(commands=COMMANDS)], env=subprocess_env(),
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert "Usage: zoo train [OPTIONS] [MODEL]" in probe.stdout and "Usage: zoo list [OPTIONS] [MODEL]" in probe.stdout
    assert probe.stdout.strip().splitlines()[-1] == "HEAVY: []"


@pytest.mark.slow
def test_zoo_list_is_cached_and_refreshed_when_a_plugin_changes(tmp_path, monkeypatch, fresh_registry):
    from zoo.catalog import cache_path, listing
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    root = toy_dist(tmp_path / "site")
    monkeypatch.syspath_prepend(str(root))
    use_registry(None)
    snap, how = listing()
    assert how == "refreshed" and cache_path().is_file() and "toy" in {m["name"] for m in snap["models"]}
    use_registry(None)  # a new process: nothing loaded
    assert listing() == (snap, "cached")
    module = root / "toyzoo.py"

    def edit():
        os.utime(module, ns=(module.stat().st_atime_ns, module.stat().st_mtime_ns + 10**9))
        use_registry(None)
    edit()
    assert listing()[1] == "refreshed"
    use_registry(None)
    assert listing()[1] == "cached"
    # a module of the same name imported from elsewhere (as a test session does) does not hide the edit
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "toyzoo.py").write_text("")
    elsewhere = importlib.util.spec_from_file_location("toyzoo", tmp_path / "elsewhere" / "toyzoo.py")
    monkeypatch.setitem(sys.modules, "toyzoo", importlib.util.module_from_spec(elsewhere))
    use_registry(None)
    listing()
    edit()
    assert listing()[1] == "refreshed"
    monkeypatch.delitem(sys.modules, "toyzoo")
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "toy")
    use_registry(None)
    snap, how = listing()
    assert how == "refreshed" and "toy" not in {m["name"] for m in snap["models"]}
    monkeypatch.delenv("ZOO_DISABLE_PLUGINS")
    make_dist(root, "zoo-broken", {"raising": "raisinghook"}, {"raisinghook": BROKEN_SOURCES["raisinghook"]})
    for _ in range(2):  # a listing with a failure is never reused: the fix may be a newly installed dependency
        use_registry(None)
        snap, how = listing()
        assert how == "refreshed" and snap["failures"][0]["plugin"] == "raising"

    # the real thing, in a fresh process: the second `zoo list` reads the cache and imports no torch
    (root / "zoo_broken-0.1.0.dist-info" / "entry_points.txt").write_text("[zoo.plugins]\n")
    probe = ("import sys; from zoo.cli import main\ntry:\n    main(['list'], prog_name='zoo')\nexcept SystemExit:\n"
             "    pass\nprint('torch' in sys.modules)")
    env = subprocess_env(ZOO_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(root))
    outs = [subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=180)
            for _ in range(2)]
    assert [o.stdout.strip().splitlines()[-1] for o in outs] == ["True", "False"], [o.stderr for o in outs]
    assert outs[0].stdout == outs[1].stdout.replace("False", "True") and "toy two-phase model" in outs[1].stdout


# --- zoo list: presets, and one model in detail ----------------------------------------------------------
class Described:
    """Hand-declared settings, presets and sampling options, as `zoo list` shows them."""

    @hookimpl
    def zoo_register_models(self, register):
        from toyzoo import Toy

        from zoo import Key

        class Shown(Toy):
            description = "a model with everything declared"
            config = {**Toy.config, "model": {**Toy.config["model"],
                                              "depth": Key(3, "number of conv blocks", ge=1),
                                              "mode": Key("fast", "how to run", choices=("fast", "slow"))}}
            presets = {"tiny": {"trainer": {"max_steps": 30}}, "wide": {"model": {"width": 32}}}
            preset_help = {"tiny": "smoke test: seconds on a CPU", "wide": "4x the channels"}
            sample_options = {"temperature": Key(1.0, "scale of the latent noise", gt=0)}
        register(Shown, name="shown")
        register(Shown, name="shown-slow", config={"model": {"mode": "slow"}})


@pytest.mark.slow
def test_zoo_list_shows_presets_and_one_model_in_detail(tmp_path, monkeypatch, fresh_registry):
    monkeypatch.syspath_prepend(str(toy_dist(tmp_path / "site")))
    with registry_with("datasets", "vae", "ddpm", described=Described()):
        code, out = run("list")
        assert code == 0, out
        assert presets_of(out, "shown") == {"tiny": "smoke test: seconds on a CPU", "wide": "4x the channels"}
        assert "tiny" in presets_of(out, "vae") and "tiny" in presets_of(out, "ddpm")
        assert re.search(r"^mnist\s+datasets\s+1x28x28\s+train,test\s+mnist\s", out, re.M)  # its extractor

        code, out = run("list", "shown-slow")
        assert code == 0, out
        assert out.startswith("shown-slow: a model with everything declared\nfamily toy, plugin described, ")
        assert "parameters with no --preset: its defaults, no preset\n" in out  # which preset each count is at
        assert re.search(r"^  wide\s+\S+\s+4x the channels$", out, re.M)
        assert re.search(r"^  model\.depth\s+3\s+int >= 1\s+number of conv blocks$", out, re.M)
        assert re.search(r"^  model\.mode\s+slow\s+one of: fast, slow\s+how to run$", out, re.M)  # the variant's
        assert re.search(r"^  model\.width\s+8\s+int$", out, re.M)  # a plain value: its type, no help yet
        assert "trainer.max_steps=40" in out
        assert re.search(r"^  temperature\s+1\.0\s+float > 0\s+scale of the latent noise$", out, re.M)

        code, out = run("list", "ddpm")
        assert code == 0 and re.search(r"^  steps\s", out, re.M) and re.search(r"^  sampler\s", out, re.M)
        chosen = re.search(r"([\d.]+M) parameters with no --preset: preset (cpu|gpu) \(auto: training on", out)
        assert chosen and re.search(rf"^  {chosen[2]}\s+{chosen[1]}\s", out, re.M)  # the count of the preset named
        code, out = run("list")
        assert re.search(rf"^ddpm\s+diffusion\s+ddpm\s+{chosen[1]} \({chosen[2]}\)\s", out, re.M)
        code, out = run("list", "vae")
        assert code == 0 and "sampling options: none" in out
        code, out = run("list", "shwon")
        assert code == 2 and out.strip() == ("error: unknown model 'shwon' (did you mean 'shown' or 'shown-slow'?) "
                                             "-- `zoo list` shows the 6 available")


# --- zoo.testing's checks for datasets and extractors, and the zoo_registry fixture -----------------------
def test_builtin_dataset_and_extractor_pass_their_checks(mnist_root):
    images = check_dataset("mnist", sets=[*MNIST_SETS, f"data.root={mnist_root}"])
    assert images.shape == (10000, 1, 28, 28)
    ext = check_extractor("mnist", images=images[:32])
    assert ext.input_channels == 1


def good_loader(root, split, download):
    if not (Path(root) / "marker").exists():
        raise zoo.ZooError(f"no data in {root}")
    return torch.arange(4 * 28 * 28, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(4, 1, 28, 28)


def channels_last_loader(root, split, download):
    return good_loader(root, split, download).permute(0, 2, 3, 1)


def random_loader(root, split, download):
    good_loader(root, split, download)
    return torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)


def labelled_loader(root, split, download):
    return good_loader(root, split, download), torch.tensor([0, 1, 2, 3])


def float_labels_loader(root, split, download):
    return good_loader(root, split, download), torch.rand(4)


def careless_loader(root, split, download):
    return torch.load(Path(root) / "marker" / "images.pt")  # FileNotFoundError when missing


class Datasets:
    @hookimpl
    def zoo_register_datasets(self, register):
        register("good", good_loader, channels=1, image_size=28, description="fine")
        register("nhwc", channels_last_loader, channels=1, image_size=28, description="wrong layout")
        register("random", random_loader, channels=1, image_size=28, description="not deterministic")
        register("careless", careless_loader, channels=1, image_size=28, description="wrong error")
        register("nodesc", good_loader, channels=1, image_size=28)
        register("wrong-extractor", good_loader, channels=1, image_size=28, description="x", extractor="nope")
        register("few-classes", labelled_loader, channels=1, image_size=28, description="x", num_classes=2)
        register("float-labels", float_labels_loader, channels=1, image_size=28, description="x")


@pytest.mark.parametrize("name, problem", [
    ("nhwc", r"the loader returns \(4, 28, 28, 1\): 28 channels, registered channels=1"),
    ("random", "loading the split twice gave other images"),
    ("careless", "with no files the loader raised FileNotFoundError"),
    ("nodesc", "has no description"),
    ("wrong-extractor", "declares extractor 'nope', which is not registered"),
    ("few-classes", r"labels 0\.\.3 are not class indices 0\.\.1 \(registered num_classes=2\)"),
    ("float-labels", r"loader returned labels that are not 4 integer class indices >= 0 \(one per image\)"),
])
def test_check_dataset_catches_broken_datasets(tmp_path, zoo_registry, name, problem):
    (tmp_path / "marker").mkdir()
    torch.save(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), tmp_path / "marker" / "images.pt")
    zoo_registry("extractors", datasets=Datasets())
    assert check_dataset("good", root=tmp_path).shape == (4, 1, 28, 28)
    with pytest.raises(AssertionError, match=f"dataset '{name}': {problem}"):
        check_dataset(name, root=tmp_path)


def batch_dependent_extractor():
    ext = mnist_extractor()
    ext.net.train()  # BatchNorm-free network: emulate batch statistics by centring over the batch
    forward = ext.forward
    ext.forward = lambda x: tuple(t - t.mean(0, keepdim=True) for t in forward(x))
    return ext


def test_check_extractor_catches_broken_extractors(zoo_registry):
    class Extractors:
        @hookimpl
        def zoo_register_extractors(self, register):
            register("batchy", batch_dependent_extractor, description="features depend on the batch")
            register("notone", lambda: torch.nn.Linear(2, 2), description="not a torch-fidelity extractor")
    zoo_registry(extractors=Extractors())
    with pytest.raises(AssertionError, match="extractor 'batchy': an image's 'features' features depend on the rest"):
        check_extractor("batchy")
    with pytest.raises(AssertionError, match="extractor 'notone': factory returned Linear, not a torch_fidelity"):
        check_extractor("notone")


def test_zoo_registry_fixture_gives_a_fresh_registry(zoo_registry):
    outer = registry()
    reg = zoo_registry("datasets")
    assert registry() is reg is not outer and not reg.models and "mnist" in reg.datasets
    with pytest.raises(zoo.ZooError, match="unknown model 'vae'"):
        zoo.create_model("vae")
    inner = zoo_registry("vae", "datasets")
    assert registry() is inner and list(inner.models) == ["vae"]

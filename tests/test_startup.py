"""Bad input is rejected before torch loads (issue 22.6): arguments, files and config are checked against the
`zoo list` index, and the index follows an installed plugin without a separate slow `zoo list`."""
import os
import subprocess
import sys

import pytest
from conftest import MNIST_SETS
from plugin_env import toy_dist

from zoo.registry import loaded, model_config, registry, use_registry

# `python -c PROBE ARGS...` runs `zoo ARGS...` as the console script does, then says whether torch was imported.
PROBE = ("import runpy, sys\nsys.argv = ['zoo', *sys.argv[1:]]\ncode = 0\ntry:\n"
         "    runpy.run_module('zoo', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
         "print('torch imported:', 'torch' in sys.modules)\nsys.exit(code)")


def zoo(*args, env, cwd=None):
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)
    return done.returncode, done.stdout.strip().splitlines()[-1], done.stderr.strip().splitlines()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A fresh index of its own, built once by `zoo list` (the one slow command here)."""
    cache = tmp_path_factory.mktemp("index")
    e = dict(os.environ, ZOO_CACHE=str(cache), OMP_NUM_THREADS="1")
    code, torch_line, _ = zoo("list", env=e)
    assert code == 0 and torch_line == "torch imported: True"  # building the index loads every plugin
    return e


@pytest.mark.parametrize("args, says", [
    (["train", "ddpm", "-c", "missing.yaml"], "config file 'missing.yaml' not found"),
    (["train", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["train", "dppm", "--preset", "tiny"], "did you mean 'ddpm'"),
    (["train", "ddpm", "--preset", "tinny"], "model 'ddpm' has no preset 'tinny'"),
    (["train", "ddpm", "--set", "trainer.lr=abc"], "trainer.lr in --set expects float > 0"),
    (["train", "vae", "--set", "model.latnt=8"], "unknown config key 'model.latnt' in --set"),
    (["show-config", "ddpm", "--set", "model.dim=0"], "model.dim=0 (in --set) must be >= 1"),
    (["sample", "missing-dir", "-o", "grid.png"], "run directory 'missing-dir' does not exist"),
    (["eval", "missing-dir"], "run directory 'missing-dir' does not exist"),
    (["eval", "--images", "missing.npz"], "'missing.npz' does not exist"),
    (["eval", "--images", "missing.npz", "--metrics", "fdi"], "does not exist"),
    (["train", "--resume", "--out", "missing-dir"], "run directory 'missing-dir' does not exist"),
])
def test_bad_input_is_one_line_and_imports_no_torch(env, tmp_path, args, says):
    code, torch_line, stderr = zoo(*args, env=env, cwd=tmp_path)
    assert code == 2 and len(stderr) == 1 and stderr[0].startswith("error: ") and says in stderr[0], stderr
    assert torch_line == "torch imported: False"
    assert list(tmp_path.iterdir()) == []  # nothing written either


def test_the_index_follows_an_installed_plugin(env, tmp_path):
    """Installing a plugin makes the index stale: the next command that loads the plugins anyway (here a
    `zoo train` with a bad value) rebuilds it on the way, and later bad input and `zoo list` import no torch."""
    site = toy_dist(tmp_path / "site")
    e = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")])))
    code, torch_line, stderr = zoo("train", "toy", "--set", "trainer.lr=abc", env=e, cwd=tmp_path)
    assert code == 2 and len(stderr) == 1 and "trainer.lr in --set expects float > 0" in stderr[0], stderr
    assert torch_line == "torch imported: True"  # the index was stale: the plugins were loaded
    code, torch_line, stderr = zoo("train", "toy", "--set", "model.nosuch=1", env=e, cwd=tmp_path)
    assert code == 2 and "unknown config key 'model.nosuch'" in stderr[0] and torch_line == "torch imported: False"
    listing = subprocess.run([sys.executable, "-m", "zoo", "list", "toy"], env=e, capture_output=True, text=True,
                             timeout=120, check=False)
    assert listing.returncode == 0 and listing.stdout.startswith("toy: ")
    # ... and uninstalling it: the name is unknown again at once (the index is rebuilt once more)
    code, _, stderr = zoo("train", "toy", env=env, cwd=tmp_path)
    assert code == 2 and "unknown model 'toy'" in stderr[0]


def test_the_index_resolves_every_config_as_the_plugins_do(env, monkeypatch):
    """The declarations cached in the index give exactly the config the loaded plugins give, for every
    built-in model and preset (and the ones zoo picks with no preset)."""
    monkeypatch.setenv("ZOO_CACHE", env["ZOO_CACHE"])
    before = use_registry(None)
    try:
        sets = [*MNIST_SETS, "trainer.lr=1e-3", "model.dim=8"]
        names = ["ddpm", "ddpm-convnext", "vae", "ae", "gan", "dcgan"]
        from_index = {(n, p): model_config(n, preset=p, sets=sets if n.startswith("ddpm") else MNIST_SETS)
                      for n in names for p in (None, "tiny")}
        assert not loaded()  # no plugin was loaded: every config came from the index
        registry()
        for (n, p), cfg in from_index.items():
            assert cfg == model_config(n, preset=p, sets=sets if n.startswith("ddpm") else MNIST_SETS), (n, p)
    finally:
        use_registry(before)


def test_the_index_keeps_only_declarations_json_gives_back_exactly():
    """A Key's type, choices and bounds survive the index; a declaration JSON would change (a tuple, a type it
    cannot name) is left out, and that model's config then comes from its plugin."""
    from pathlib import Path

    from zoo.catalog import _decode, _portable
    from zoo.config import Key
    tree = {"model": {"dim": Key(8, "width", ge=1), "kind": Key("a", choices=("a", "b")),
                      "scale": Key(None, type=(int, float), gt=0), "mults": Key([1, 2], item=int, length=2)},
            "trainer": {"lr": 1e-3}}
    assert repr(_decode(_portable(lambda: tree))) == repr(tree)
    assert _portable(lambda: {"model": {"path": Key(None, type=Path)}}) is None
    assert _portable(lambda: {"model": {"pair": (1, 2)}}) is None


@pytest.mark.parametrize("config, label, says", [
    ("model_name: vae\n", "3", "this run of 'vae' is unconditional (trained without labels)"),
    ("model_name: vae\nmodel: {conditional: true}\ndata: {num_classes: 10}\n", "11",
     "--label 11 is out of range: this run has 10 classes (0..9)"),
    ("model_name: vae\nmodel: {conditional: true}\ndata: {num_classes: 10}\n", "two", "--label 'two'"),
])
def test_bad_labels_are_rejected_before_torch(env, tmp_path, config, label, says):
    """`zoo sample --label` is checked against the run's config.yaml alone (issue 23)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(config)
    code, torch_line, stderr = zoo("sample", run, "--label", label, "-o", "grid.png", env=env, cwd=tmp_path)
    assert code == 2 and len(stderr) == 1 and stderr[0].startswith("error: ") and says in stderr[0], stderr
    assert torch_line == "torch imported: False" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_model_that_cannot_be_conditional_is_rejected_before_torch(env, tmp_path):
    """The index knows which models can be conditional: `toy` cannot, `toycond` (same plugin) can."""
    site = toy_dist(tmp_path / "site")
    e = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")])))
    zoo("train", "toy", "--set", "trainer.lr=abc", env=e, cwd=tmp_path)  # the index follows the plugin
    code, torch_line, stderr = zoo("train", "toy", "--set", "model.conditional=true", env=e, cwd=tmp_path)
    assert code == 2 and len(stderr) == 1, stderr
    assert stderr[0].startswith("error: model 'toy' cannot be conditional (model.conditional=true): models that "
                                "can: ") and "toycond" in stderr[0] and "(`zoo list` marks them)" in stderr[0]
    assert torch_line == "torch imported: False"

"""Registry discovery, config layering, bad-input errors, data loading."""
import gzip
import sys

import pytest
import torch
import yaml
from click.testing import CliRunner

from conftest import FASHION_ROOT
from helpers import zoo_cli
from plugin_env import BROKEN_SOURCES, make_dist, toy_dist
import zoo
from zoo import ZooError, hookimpl
from zoo.cli import main
from zoo.config import Config
from zoo.data import load_images, read_idx, to_model_input
from zoo.env import env_flag
from zoo.registry import Registry, model_config, registry
from zoo.testing import check_dataset, registry_with


@pytest.fixture
def toy_env(tmp_path, monkeypatch):
    """The toy plugin installed as a real distribution on sys.path."""
    root = toy_dist(tmp_path / "site")
    monkeypatch.syspath_prepend(str(root))
    registry(reload=True)
    yield root
    sys.modules.pop("toyzoo", None)
    registry(reload=True)


def run(*args, **kw):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False, **kw)
    return result.exit_code, result.output


# --- registry ---------------------------------------------------------------------------------
def test_entry_point_plugin_is_discovered(toy_env):
    reg = registry()
    assert reg.models["toy"].plugin == "toy"
    assert reg.models["toygan"].family == "toy"
    assert any(p.name == "toy" and p.distribution == "zoo-toy" and p.version == "0.1.0" for p in reg.plugins)
    code, out = run("list")
    assert code == 0 and "toy two-phase model for tests" in out and "mnist" in out
    code, out = run("plugins")
    assert code == 0 and "zoo-toy" in out and "toygan" in out


def test_builtins_come_through_the_same_entry_point_group():
    import importlib.metadata as md
    eps = {ep.name: ep.value for ep in md.entry_points(group="zoo.plugins")}
    assert eps["datasets"] == "zoo_plugins.datasets"
    assert "mnist" in registry().datasets and registry().datasets["mnist"].plugin == "datasets"


def test_broken_plugins_are_reported_and_others_keep_working(tmp_path, monkeypatch):
    root = toy_dist(tmp_path / "site")
    make_dist(root, "zoo-broken", {"broken_import": "brokenimport", "raising": "raisinghook",
                                   "zdupe": "dupeplugin", "future": "futureplugin", "notamodel": "notamodel"}, {
        **BROKEN_SOURCES,
        "futureplugin": "ZOO_API = 99\n",
        "notamodel": """
            from zoo import hookimpl
            @hookimpl
            def zoo_register_models(register):
                register(dict, name="dictmodel")
        """,
    })
    monkeypatch.syspath_prepend(str(root))
    try:
        reg = registry(reload=True)
        errors = {f.plugin: f.error for f in reg.failures}
        assert "does_not_exist_anywhere" in errors["broken_import"]
        assert "boom in hook" in errors["raising"]
        assert "'toy' is already registered by plugin 'toy'" in errors["zdupe"]
        assert "API 99" in errors["future"]
        assert "not a subclass of zoo.ZooModel" in errors["notamodel"]
        assert reg.models["toy"].plugin == "toy" and "toygan" in reg.models
        code, out = run("plugins")
        assert code == 0 and "boom in hook" in out and "zoo-toy" in out
        code, out = run("show-config", "toy")
        assert code == 0 and "width: 8" in out
    finally:
        for m in ("toyzoo", "brokenimport", "raisinghook", "dupeplugin", "futureplugin", "notamodel"):
            sys.modules.pop(m, None)
        registry(reload=True)


def test_zoo_plugins_env_restricts_loading(toy_env, monkeypatch):
    monkeypatch.setenv("ZOO_PLUGINS", "datasets")
    reg = registry(reload=True)
    assert "toy" not in reg.models and "mnist" in reg.datasets
    monkeypatch.delenv("ZOO_PLUGINS")
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "toy")
    assert "toy" not in registry(reload=True).models


def test_direct_registration_object():
    reg = Registry()
    from zoo_plugins import datasets
    reg.add_plugin(datasets, "datasets")
    assert set(reg.datasets) >= {"mnist", "fashion-mnist", "cifar10", "folder"}


# --- hooks are called through pluggy -----------------------------------------------------------
def loader(root, split, download):
    return torch.zeros(2, 1, 28, 28, dtype=torch.uint8)


class Plain:
    @hookimpl
    def zoo_register_datasets(self, register):
        CALLS.append("plain")
        register("shared-name", loader, channels=1, image_size=28, description="from plain")


class First:
    @hookimpl(tryfirst=True)
    def zoo_register_datasets(self, register):
        CALLS.append("first")
        register("shared-name", loader, channels=3, image_size=28, description="from first")


class Last:
    @hookimpl(trylast=True)
    def zoo_register_datasets(self, register):
        CALLS.append("last")


class NoArgument:
    @hookimpl
    def zoo_register_datasets(self):
        CALLS.append("no-argument")


class Raising:
    @hookimpl
    def zoo_register_datasets(self, register):
        CALLS.append("raising")
        register("raising-one", loader, channels=1, image_size=28)
        raise RuntimeError("broken on purpose")


class Wrapper:
    @hookimpl(wrapper=True)
    def zoo_register_datasets(self, register):
        CALLS.append("wrapper-before")
        result = yield
        CALLS.append("wrapper-after")
        return result


class RaisingWrapper:
    @hookimpl(wrapper=True)
    def zoo_register_datasets(self, register):
        raise RuntimeError("wrapper broke before yielding")
        yield  # unreachable: makes this a generator, as pluggy requires of a wrapper


class UnknownArgument:
    @hookimpl
    def zoo_register_datasets(self, register, datasets):
        CALLS.append("unknown-argument")


CALLS: list = []


@pytest.fixture
def calls():
    CALLS.clear()
    yield CALLS
    CALLS.clear()


def test_tryfirst_and_trylast_order_the_hooks(calls):
    with registry_with(plain=Plain(), last=Last(), first=First()) as reg:
        assert calls == ["first", "plain", "last"]
        assert reg.datasets["shared-name"].plugin == "first" and reg.datasets["shared-name"].channels == 3
        assert [(f.plugin, f.error) for f in reg.failures] == [
            ("plain", "dataset name 'shared-name' is already registered by plugin 'first'")]
    with registry_with(plain=Plain(), other=Plain()) as reg:  # no option: listed order, the first keeps it
        assert reg.datasets["shared-name"].plugin == "plain" and reg.failures[0].plugin == "other"


def test_a_raising_plugin_is_isolated_and_keeps_its_traceback(calls):
    with registry_with(raising=Raising(), plain=Plain(), broken_wrapper=RaisingWrapper()) as reg:
        assert calls == ["raising", "plain"]
        assert reg.datasets["shared-name"].plugin == "plain" and "raising-one" in reg.datasets
        errors = {f.plugin: f for f in reg.failures}
        assert errors["raising"].error == "zoo_register_datasets raised RuntimeError: broken on purpose"
        assert "test_foundation.py" in errors["raising"].detail and "broken on purpose" in errors["raising"].detail
        assert errors["broken_wrapper"].error == ("zoo_register_datasets raised RuntimeError: wrapper broke "
                                                  "before yielding")
        assert {p["name"]: p["status"] for p in reg.report()} == {"raising": "failed", "plain": "ok",
                                                                  "broken_wrapper": "failed"}


def test_wrappers_and_impls_without_the_argument_are_called(calls):
    with registry_with(wrapper=Wrapper(), noarg=NoArgument(), plain=Plain()) as reg:
        assert calls == ["wrapper-before", "no-argument", "plain", "wrapper-after"]
        assert not reg.failures and "shared-name" in reg.datasets


def test_an_impl_with_an_unknown_argument_is_reported(calls):
    with registry_with(bad=UnknownArgument(), plain=Plain()) as reg:
        assert calls == ["plain"]
        (failure,) = reg.failures
        assert failure.plugin == "bad" and failure.error.startswith("invalid plugin:")
        assert "{'datasets'} are declared in the hookimpl but can not be found in the hookspec" in failure.error
        assert "\n" not in failure.error


def test_adding_a_plugin_later_runs_only_its_hooks(calls):
    with registry_with(plain=Plain()) as reg:
        reg.add_plugin(NoArgument(), "later")
        assert calls == ["plain", "no-argument"] and not reg.failures


def test_registry_with_names_installed_plugins_and_restores_the_registry():
    outer = registry()
    with registry_with("datasets", "vae") as reg:
        assert registry() is reg and sorted(reg.models) == ["vae"] and "mnist" in reg.datasets
        assert [p.name for p in reg.plugins] == ["datasets", "vae"]
    assert registry() is outer
    with pytest.raises(ZooError, match="no installed zoo plugin .* is named 'no-such-plugin'"):
        with registry_with("no-such-plugin"):
            pass


def test_the_register_callables_match_the_documented_protocols():
    import inspect
    from zoo import hookspecs
    reg = Registry()
    for protocol, registrar in ((hookspecs.RegisterModel, reg._register_model),
                                (hookspecs.RegisterDataset, reg._register_dataset),
                                (hookspecs.RegisterExtractor, reg._register_extractor)):
        documented = list(inspect.signature(protocol.__call__).parameters.values())[1:]  # without self
        actual = list(inspect.signature(registrar).parameters.values())
        assert [(p.name, p.default, p.annotation) for p in actual] == \
            [(p.name, p.default, p.annotation) for p in documented], protocol.__name__


def test_a_dataset_declares_its_extractor():
    assert registry().dataset("mnist").extractor == "mnist"
    assert registry().dataset("cifar10").extractor is None

    class Declares:
        @hookimpl
        def zoo_register_datasets(self, register):
            register("mine", loader, channels=1, image_size=28, extractor="inception")
            register("bad", loader, channels=1, image_size=28, extractor=3)
    with registry_with(declares=Declares()) as reg:
        assert reg.datasets["mine"].extractor == "inception" and "bad" not in reg.datasets
        assert [f.error for f in reg.failures] == ["dataset 'bad': extractor must be the name of a feature "
                                                   "extractor, got 3"]


# --- config -----------------------------------------------------------------------------------
def test_config_precedence(toy_env, tmp_path):
    cfg = model_config("toy")
    assert cfg.trainer.max_steps == 40 and cfg.model.width == 8 and cfg.trainer.lr == 3e-3
    cfg = model_config("toy", preset="tiny")
    assert cfg.trainer.max_steps == 30
    f = tmp_path / "c.yaml"
    f.write_text("trainer:\n  max_steps: 25\n  lr: 0.01\nmodel:\n  width: 4\n")
    cfg = model_config("toy", preset="tiny", file=f)
    assert (cfg.trainer.max_steps, cfg.trainer.lr, cfg.model.width) == (25, 0.01, 4)
    cfg = model_config("toy", preset="tiny", file=f, sets=["trainer.max_steps=7", "trainer.lr=1e-3",
                                                          "trainer.betas=[0.5, 0.9]"])
    assert (cfg.trainer.max_steps, cfg.trainer.lr, cfg.trainer.betas) == (7, 1e-3, [0.5, 0.9])
    code, out = run("show-config", "toy", "-p", "tiny", "-c", str(f), "--set", "model.width=2")
    assert code == 0
    shown = yaml.safe_load(out)
    assert shown["model"]["width"] == 2 and shown["trainer"]["max_steps"] == 25 and shown["model_name"] == "toy"


@pytest.mark.parametrize("args, expected", [
    (["train", "toyy"], "unknown model 'toyy' (did you mean 'toy'"),
    (["show-config", "toy", "--set", "trainer.lrr=1"],
     "unknown config key 'trainer.lrr' in --set (did you mean 'trainer.lr'"),
    (["show-config", "toy", "--set", "trainer.lr=abc"], "trainer.lr in --set expects float > 0, like 0.003, got 'abc'"),
    (["show-config", "toy", "--set", "trainer.max_steps=1.5"], "expects int"),
    (["show-config", "toy", "-c", "/nonexistent/c.yaml"], "config file '/nonexistent/c.yaml' not found"),
    (["show-config", "toy", "-p", "huge"], "model 'toy' has no preset 'huge'"),
    (["show-config", "toy", "--set", "noequals"], "is not KEY=VALUE"),
    (["train", "toy", "--set", "data.root=/no/such/dir"], "data root '/no/such/dir' (from data.root) does not exist"),
])
def test_bad_input_is_one_line_exit_2(toy_env, args, expected, tmp_path):
    code, out = run(*args, "--out", str(tmp_path / "r")) if args[0] == "train" else run(*args)
    assert code == 2, out
    assert expected in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_malformed_yaml_names_the_line(toy_env, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("trainer:\n  lr: 0.1\n  max_steps: [1, 2\nmodel: {}\n")
    code, out = run("show-config", "toy", "-c", str(f))
    assert code == 2 and "malformed YAML" in out and "line 4" in out and "Traceback" not in out


# --- data -------------------------------------------------------------------------------------
def test_mnist_test_split_from_shared_files(mnist_root):
    images, labels = load_images(Config({"name": "mnist", "root": str(mnist_root), "split": "test"}),
                                 part="all", with_labels=True)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and set(labels.tolist()) == set(range(10))
    assert 0.12 < images.float().mean().item() / 255 < 0.14  # MNIST's mean intensity
    train = load_images(Config({"name": "mnist", "root": str(mnist_root), "split": "test", "holdout": 1000}))
    hold = load_images(Config({"name": "mnist", "root": str(mnist_root), "split": "test", "holdout": 1000}),
                       part="holdout")
    assert len(train) == 9000 and len(hold) == 1000


def test_holdout_is_seeded_and_disjoint(mnist_root):
    cfg = Config({"name": "mnist", "root": str(mnist_root), "split": "test", "holdout": 1000})
    a, b = load_images(cfg, "holdout"), load_images(cfg, "holdout")
    assert torch.equal(a, b)
    everything = load_images(cfg, "all").flatten(1)
    train = load_images(cfg, "train").flatten(1)
    assert len({bytes(r.numpy()) for r in everything}) - len({bytes(r.numpy()) for r in train}) > 900


def test_missing_train_split_gives_clear_error(mnist_root):
    with pytest.raises(ZooError) as e:
        load_images(Config({"name": "mnist", "root": str(mnist_root), "split": "train"}))
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and str(mnist_root) in msg and "data.root" in msg and "ZOO_DATA" in msg


def test_missing_split_via_cli_is_one_line(toy_env, tmp_path):
    code, out = run("train", "toy", "--out", str(tmp_path / "r"), "--set", "data.split=train")
    assert code == 2 and len(out.strip().splitlines()) == 1
    assert "train-images-idx3-ubyte" in out and "Traceback" not in out


def test_reads_uncompressed_idx_in_mnist_raw(tmp_path, mnist_root):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(gzip.open(mnist_root / "t10k-images-idx3-ubyte.gz").read())
    images = load_images(Config({"name": "mnist", "root": str(tmp_path), "split": "test"}), "all")
    assert images.shape == (10000, 1, 28, 28)
    assert torch.equal(images[:, 0], read_idx(mnist_root / "t10k-images-idx3-ubyte.gz"))


def test_truncated_idx_is_a_clear_error(tmp_path, mnist_root):
    data = gzip.open(mnist_root / "t10k-images-idx3-ubyte.gz").read()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(data[:5000])
    with pytest.raises(ZooError, match="truncated"):
        load_images(Config({"name": "mnist", "root": str(tmp_path), "split": "test"}), "all")


@pytest.mark.skipif(not (FASHION_ROOT / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
def test_fashion_mnist_full_size():
    train, labels = load_images(Config({"name": "fashion-mnist", "root": str(FASHION_ROOT), "split": "train"}),
                                "all", with_labels=True)
    test = load_images(Config({"name": "fashion-mnist", "root": str(FASHION_ROOT), "split": "test"}), "all")
    assert train.shape == (60000, 1, 28, 28) and test.shape == (10000, 1, 28, 28)
    assert labels.bincount().tolist() == [6000] * 10


def test_pipeline_maps_size_and_range(mnist_root):
    x = load_images(Config({"name": "mnist", "root": str(mnist_root), "split": "test"}), "all")[:8]
    y = to_model_input(x, 32, 1, (-1.0, 1.0), "pad")
    assert y.shape == (8, 1, 32, 32) and y.min() == -1 and y.max() == 1
    assert torch.all(y[:, :, :2] == -1)  # padded border is background
    z = to_model_input(x, 28, 3, (0.0, 1.0))
    assert z.shape == (8, 3, 28, 28) and 0 <= z.min() and z.max() <= 1
    w = to_model_input(x, 16, 1, (0.0, 1.0), "interpolate")
    assert w.shape == (8, 1, 16, 16)


def test_load_dataset_is_the_split_as_stored(mnist_root, monkeypatch):
    images, labels = zoo.load_dataset("mnist", "test", mnist_root, with_labels=True)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8 and labels.shape == (10000,)
    assert torch.equal(images, load_images(Config({"name": "mnist", "root": str(mnist_root), "split": "test"}),
                                           "all"))
    monkeypatch.setenv("ZOO_DATA", str(mnist_root))
    assert torch.equal(zoo.load_dataset("mnist", "test"), images)  # root=None: $ZOO_DATA, as data.root does
    with pytest.raises(ZooError, match="dataset 'mnist' has no split 'valid' \\(splits: train, test"):
        zoo.load_dataset("mnist", "valid")
    with pytest.raises(ZooError, match="root='/no/such/dir'\\): that folder does not exist"):
        zoo.load_dataset("mnist", "test", "/no/such/dir")
    with pytest.raises(ZooError, match="unknown dataset 'mnsit' \\(did you mean 'mnist'"):
        zoo.load_dataset("mnsit", "test")


def test_model_input_is_exactly_k_over_255_at_native_size_only(mnist_root):
    x = zoo.load_dataset("mnist", "test", mnist_root)[:64]
    for lo, hi in ((-1.0, 1.0), (0.0, 1.0)):
        for size in (28, 32):  # native, and zero-padded to 32: still on the 8-bit grid
            k = (to_model_input(x, size, 1, (lo, hi), "pad") - lo) / (hi - lo) * 255
            assert torch.allclose(k, k.round(), atol=1e-4)
        k = (to_model_input(x, 24, 1, (lo, hi), "interpolate") - lo) / (hi - lo) * 255
        assert not torch.allclose(k, k.round(), atol=1e-4)  # resized: off the grid (documented)


def test_derived_dataset_example_from_the_guide(mnist_root):
    """docs/plugins.md's derived dataset (built on zoo.load_dataset) as a plugin, through zoo.testing."""
    import re
    import types
    from conftest import REPO
    guide = (REPO / "docs" / "plugins.md").read_text()
    section = guide.split("### Deriving a dataset from another one", 1)[1].split("\n#", 1)[0]
    module = types.ModuleType("inverted_mnist_example")
    exec(re.search(r"```python\n(.*?)```", section, re.S).group(1), module.__dict__)
    with registry_with("datasets", module) as reg:
        assert not reg.failures
        images = check_dataset("inverted-mnist", split="test", root=mnist_root)
        assert torch.equal(images, 255 - zoo.load_dataset("mnist", "test", mnist_root))
        assert reg.datasets["inverted-mnist"].extractor is None  # the mnist classifier was not made for it


def test_folder_dataset(tmp_path):
    from torchvision.utils import save_image
    for i in range(3):
        save_image(torch.rand(3, 20, 24), tmp_path / f"{i}.png")
    images = load_images(Config({"name": "folder", "root": str(tmp_path), "split": "all"}), "all")
    assert images.shape == (3, 3, 20, 20) and images.dtype == torch.uint8
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ZooError, match="no images"):
        load_images(Config({"name": "folder", "root": str(empty), "split": "all"}), "all")


# --- environment switches ---------------------------------------------------------------------
@pytest.mark.parametrize("value, on", [
    ("", False), ("0", False), ("no", False), ("false", False), ("off", False), (" No ", False), ("FALSE", False),
    ("1", True), ("yes", True), ("true", True), ("on", True),
])
def test_env_flag_reads_every_switch_the_same_way(monkeypatch, value, on):
    monkeypatch.setenv("ZOO_SOME_SWITCH", value)
    assert env_flag("ZOO_SOME_SWITCH") is on and env_flag("ZOO_SOME_SWITCH", default=True) is on
    monkeypatch.delenv("ZOO_SOME_SWITCH")
    assert env_flag("ZOO_SOME_SWITCH") is False and env_flag("ZOO_SOME_SWITCH", default=True) is True


@pytest.mark.slow
def test_zoo_offline_no_means_downloads_are_allowed(tmp_path):
    """``ZOO_OFFLINE=no`` once turned offline mode on. A fresh process, so that its download goes through a proxy
    that refuses at once: the test never touches the network."""
    refused = "http://127.0.0.1:9"
    proxies = {k: refused for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    r = zoo_cli("train", "vae", "--preset", "tiny", "--set", f"data.root={tmp_path}", "--out", tmp_path / "run",
                env={"ZOO_OFFLINE": "no", "no_proxy": None, "NO_PROXY": None, **proxies}, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "train-images-idx3-ubyte" in r.stderr and "download failed" in r.stderr, r.stderr


def test_zoo_offline_1_means_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    code, out = run("train", "vae", "--preset", "tiny", "--set", f"data.root={tmp_path}", "--out", str(tmp_path / "r"))
    assert code == 2 and "train-images-idx3-ubyte" in out and "download is off" in out, out

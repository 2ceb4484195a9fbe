"""Config keys declared once (zoo.Key): validation at every layer, the user file, provenance in show-config,
device-chosen presets and the generated reference (docs/config.md)."""

import pytest
import torch
import yaml
from click.testing import CliRunner

import zoo
from conftest import MNIST_SETS, REPO
from helpers import zoo_cli
from zoo import Key, ZooError
from zoo.api import run_config
from zoo.cli import main
from zoo.config import BASE, base_config, leaves, resolve
from zoo.config_docs import COMMAND, builtin_models, reference_markdown
from zoo.registry import check_config, create_model, model_config, model_schema
from zoo.testing import check_model_contract

SETS = [a for s in MNIST_SETS for a in ("--set", s)]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def one_line_error(code, out):
    assert code == 2, out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    return out.strip()


@pytest.fixture
def user_file(tmp_path, monkeypatch):
    """Write the user file ($ZOO_CONFIG) for one test."""
    path = tmp_path / "user.yaml"
    monkeypatch.setenv("ZOO_CONFIG", str(path))

    def write(text):
        path.write_text(text)
        return path
    return write


# --- the declarations ---------------------------------------------------------------------------
def test_every_key_is_declared_with_help_and_a_valid_default():
    for path, key in leaves(BASE):
        assert isinstance(key, Key) and key.help, path
        assert key.check(path, key.default, "BASE") == key.default
    for entry in builtin_models():
        for path, key in leaves(model_schema(entry.name)["model"], "model."):
            assert isinstance(key, Key) and key.help, (entry.name, path)
        for preset in entry.presets:  # every preset resolves, builds, and says what it is for
            assert entry.cls.preset_help.get(preset), (entry.name, preset)
            check_config(model_config(entry.name, preset=preset))
        assert "smoke test" in entry.cls.preset_help["tiny"]
    assert "mean over" in BASE["trainer"]["log_every"].help  # logged values are means over the log window


def test_a_variant_keeps_the_declaration_and_changes_only_the_default():
    key = model_schema("ddpm-convnext")["model"]["unet"]
    assert key.default == "convnext" and key.help == model_schema("ddpm")["model"]["unet"].help
    with pytest.raises(ZooError, match=r"model.unet='unet' \(in --set\) is not one of convnext, attention"):
        model_config("ddpm-convnext", sets=["model.unet=unet"])


def test_a_plugins_bad_default_is_caught():
    with pytest.raises(ZooError, match=r"model.width=0 \(in model 'x' defaults\) must be >= 1"):
        resolve({"model": {"width": Key(0, "channels", ge=1)}}, model_label="model 'x' defaults")


@pytest.mark.parametrize("sets, expected", [
    (["trainer.batch_size=-4"], "trainer.batch_size=-4 (in --set) must be >= 1"),
    (["trainer.lr=0"], "trainer.lr=0.0 (in --set) must be > 0"),
    (["ema.decay=1"], "ema.decay=1.0 (in --set) must be in [0, 1)"),
    (["trainer.n_samples=0"], "trainer.n_samples=0 (in --set) must be in [1, 1024]"),
    (["trainer.grad_clip=-1"], "trainer.grad_clip=-1.0 (in --set) must be > 0"),
    (["trainer.warmup_steps=-1"], "trainer.warmup_steps=-1 (in --set) must be >= 0"),
    (["trainer.betas=[0.9, 1.0]"], "trainer.betas=[0.9, 1.0] (in --set) must have each item in [0, 1)"),
    (["trainer.betas=[0.9]"], "trainer.betas=[0.9] (in --set) must have 2 items"),
    (["trainer.precision=fp8"], "trainer.precision='fp8' (in --set) is not one of auto, fp32, bf16, fp16"),
    (["trainer.device=gpu"], "trainer.device='gpu' (in --set) does not match"),
    (["data.resize=crop"], "data.resize='crop' (in --set) is not one of pad, interpolate"),
    (["trainer.max_steps=2.5"], "trainer.max_steps in --set expects int >= 1 or null"),
    (["model.latent=0"], "model.latent=0 (in --set) must be >= 1"),
    (["model.hidden=[64, 0]"], "model.hidden=[64, 0] (in --set) must have each item >= 1"),
    (["model.arch=foo"], "model.arch='foo' (in --set) is not one of mlp, conv"),
    (["model_name=vae"], "'model_name' in --set is filled in by zoo"),
    (["preset=tiny"], "'preset' in --set is filled in by zoo, not set (choose one with --preset NAME)"),
])
def test_out_of_range_values_are_one_line_errors(sets, expected):
    with pytest.raises(ZooError) as e:
        model_config("vae", sets=sets)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_every_layer_is_checked_and_lr_1e3_in_a_file_is_a_number(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("trainer:\n  lr: 1e-3\n  max_steps: 1e3\n")  # PyYAML reads both as strings
    cfg = model_config("vae", file=f)
    assert cfg.trainer.lr == 1e-3 and isinstance(cfg.trainer.lr, float) and cfg.trainer.max_steps == 1000
    f.write_text("ema:\n  decay: 1.5\n")
    with pytest.raises(ZooError, match=rf"ema.decay=1.5 \(in -c file '{f}'\) must be in \[0, 1\)"):
        model_config("vae", file=f)
    with pytest.raises(ZooError, match=r"trainer.lr=-1.0 \(in arguments\) must be > 0"):
        model_config("vae", overrides={"trainer": {"lr": -1}})
    with pytest.raises(ZooError, match=r"model.latent=0 \(in preset 'tiny'\) must be >= 1"):
        resolve({"model": model_schema("vae")["model"]}, {"model": {"latent": 0}}, preset_name="tiny")
    f.write_text(yaml.safe_dump(model_config("vae", preset="tiny").to_dict()))  # a run's config.yaml as -c
    assert model_config("vae", file=f).to_dict() == model_config("vae", preset="tiny").to_dict() | {
        "preset": None, "preset_reason": "defaults (no --preset)"}


def test_a_resumed_runs_set_is_checked_against_the_declarations(tmp_path):
    (tmp_path / "config.yaml").write_text(model_config("vae", preset="tiny").to_yaml())
    assert run_config(tmp_path, ["trainer.max_steps=500"]).trainer.max_steps == 500
    with pytest.raises(ZooError, match=r"trainer.max_steps=-1 \(in --set\) must be >= 1"):
        run_config(tmp_path, ["trainer.max_steps=-1"])


def test_a_run_whose_config_holds_null_for_a_nullable_key_loads(tmp_path):
    # the cpu preset trains by time (trainer.max_steps: null); eval/sample/resume read that config.yaml back
    (tmp_path / "config.yaml").write_text(model_config("ddpm", preset="cpu").to_yaml())
    cfg = run_config(tmp_path)
    assert cfg.trainer.max_steps is None and cfg.trainer.max_minutes > 0
    with pytest.raises(ZooError, match=r"trainer.max_steps=0 \(in --set\) must be >= 1"):
        run_config(tmp_path, ["trainer.max_steps=0"])


@pytest.mark.slow
def test_cli_range_errors_exit_2_with_one_line_and_no_run_directory(tmp_path):
    r = zoo_cli("train", "vae", "--preset", "tiny", *SETS, "--set", "trainer.batch_size=-4", cwd=tmp_path)
    assert "trainer.batch_size=-4 (in --set) must be >= 1" in one_line_error(r.returncode, r.output)
    f = tmp_path / "c.yaml"
    f.write_text("trainer:\n  batch_size: -4\n")
    r = zoo_cli("train", "vae", "-c", f, "--out", tmp_path / "run", cwd=tmp_path)
    assert f"trainer.batch_size=-4 (in -c file '{f}') must be >= 1" in one_line_error(r.returncode, r.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # no runs/, no run directory


# --- the user file ------------------------------------------------------------------------------
def test_user_file_is_merged_under_presets_and_shown_as_the_source(user_file):
    path = user_file("data: {split: test, holdout: 1000}\ntrainer: {lr: 5e-4, max_steps: 77}\n"
                     "models:\n  vae: {model: {latent: 4}}\n  not-installed: {model: {x: 1}}\n")
    cfg = model_config("vae")
    assert (cfg.data.split, cfg.data.holdout, cfg.trainer.lr, cfg.trainer.max_steps, cfg.model.latent) == \
        ("test", 1000, 5e-4, 77, 4)
    cfg = model_config("vae", preset="tiny", sets=["trainer.max_steps=9"])  # preset and --set win over it
    assert (cfg.trainer.lr, cfg.trainer.max_steps, cfg.data.split, cfg.model.latent) == (2e-3, 9, "test", 8)
    assert model_config("gan").model.loss == "bce" and model_config("gan").trainer.lr == 5e-4
    assert base_config().data.split == "test"  # the model-less commands (zoo eval --images) start from it
    code, out = run("show-config", "vae")
    assert code == 0
    assert f"split: test  # from user file {path}\n" in out
    assert f"latent: 4  # from user file {path} (models.vae)\n" in out
    assert "lr: 0.001  # from model 'vae' defaults" not in out and f"lr: 0.0005  # from user file {path}" in out


def test_zoo_testing_honours_the_user_file(user_file):
    user_file("data: {split: test, holdout: 1000}\n")  # MNIST's train split is not on disk here
    check_model_contract("vae", steps=3)


@pytest.mark.parametrize("text, expected", [
    ("model: {latent: 4}\n", "model.* settings differ per model -- put them under models:"),
    ("trainer: {batch_size: 0}\n", "trainer.batch_size=0 (in user file"),
    ("trainer: {lrr: 1}\n", "unknown config key 'trainer.lrr' in user file"),
    ("preset: tiny\n", "'preset' in user file"),
    ("models: {vae: 3}\n", "'models.vae' in user file"),
    ("trainer: [1\n", "malformed YAML in"),
])
def test_a_bad_user_file_is_a_one_line_error_naming_it(user_file, text, expected):
    path = user_file(text)
    code, out = run("show-config", "vae")
    assert expected in one_line_error(code, out) and str(path) in out


def test_user_file_location(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CONFIG", str(tmp_path / "missing.yaml"))
    code, out = run("show-config", "vae")
    assert "user file (ZOO_CONFIG) " in one_line_error(code, out) and "not found" in out
    monkeypatch.delenv("ZOO_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert model_config("vae").data.split == "train"  # no file there: no user layer
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "config.yaml").write_text("data: {split: test}\n")
    assert model_config("vae").data.split == "test"
    monkeypatch.setenv("ZOO_CONFIG", "")  # set but empty: no user file at all
    assert model_config("vae").data.split == "train"


# --- device-chosen presets ----------------------------------------------------------------------
def test_the_preset_follows_the_device_unless_one_is_given(monkeypatch):
    cfg = model_config("ddpm", sets=["trainer.device=cpu"])
    assert (cfg.preset, cfg.preset_reason) == ("cpu", "auto: training on cpu")
    assert cfg.data.image_size == 28 and cfg.model.dim == 32 and cfg.trainer.max_minutes == 20
    cfg = model_config("ddpm", sets=["trainer.device=cuda:1"])  # resolving needs no GPU
    assert (cfg.preset, cfg.preset_reason, cfg.data.image_size) == ("gpu", "auto: training on cuda", 32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # `auto` on a machine with CUDA
    assert model_config("dcgan").preset == "gpu" and model_config("dcgan").model.g_hidden == 1024
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert (model_config("dcgan").preset, model_config("dcgan").model.g_hidden) == ("cpu", 256)
    cfg = model_config("ddpm", preset="tiny")
    assert (cfg.preset, cfg.preset_reason, cfg.model.dim) == ("tiny", "--preset", 8)
    assert model_config("ddpm", preset="gpu", sets=["trainer.device=cpu"]).model.dim == 64  # --preset wins
    cfg = model_config("vae")
    assert (cfg.preset, cfg.preset_reason) == (None, "defaults (no --preset)")


def test_the_device_preset_sees_the_user_files_device(user_file):
    user_file("trainer: {device: 'cuda:0'}\n")
    cfg = model_config("ddpm")
    assert (cfg.preset, cfg.preset_reason, cfg.trainer.device) == ("gpu", "auto: training on cuda", "cuda:0")
    assert model_config("ddpm", sets=["trainer.device=cpu"]).preset == "cpu"  # --set wins over the user file


def test_cpu_presets_are_smaller_and_the_ddpm_one_trains(tmp_path):
    def params(name, preset):
        with torch.device("meta"):
            model = create_model(name, model_config(name, preset=preset))
        return sum(p.numel() for p in model.parameters())
    for name in ("ddpm", "ddpm-convnext", "dcgan"):
        assert params(name, "cpu") < params(name, "gpu") / 3, name
    result = zoo.train("ddpm", preset="cpu", out=tmp_path / "run", quiet=True,
                       sets=MNIST_SETS + ["trainer.max_steps=2", "trainer.batch_size=8", "trainer.n_samples=4",
                                          "model.sample_steps=2", "model.dpm_steps=2"])
    assert result.status == "finished" and result.step == 2
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["preset"], saved["preset_reason"]) == ("cpu", "--preset")


# --- show-config ----------------------------------------------------------------------------------
def test_show_config_names_each_values_source_and_explains(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("trainer:\n  max_steps: 25\n")
    code, out = run("show-config", "ddpm", "-p", "tiny", "-c", f, "--set", "model.dim=16")
    assert code == 0
    expected = model_config("ddpm", preset="tiny", file=f, sets=["model.dim=16"]).to_dict()
    assert yaml.safe_load(out) == expected
    for line in ("seed: 0  # from base default", "image_size: 32  # from model 'ddpm' defaults",
                 "batch_size: 16  # from preset 'tiny'", f"max_steps: 25  # from -c file '{f}'",
                 "dim: 16  # from --set", "preset: tiny  # from zoo", "betas: [0.9, 0.999]  # from base default"):
        assert line in out, line
    code, explained = run("show-config", "ddpm", "-p", "tiny", "--explain")
    assert code == 0 and yaml.safe_load(explained) == model_config("ddpm", preset="tiny").to_dict()
    assert "  # steps per row of metrics.jsonl; each logged value is the mean over those steps" in explained
    assert "# noise schedule of the betas [one of: linear, cosine, sigmoid]\n  schedule: linear" in explained
    assert "[float > 0]\n  lr: 0.001  # from preset 'tiny'" in explained


@pytest.mark.slow
def test_show_config_validates_exactly_as_train_does(tmp_path):
    r = zoo_cli("show-config", "vae", "--set", "model.arch=foo")
    shown = one_line_error(r.returncode, r.output)
    r = zoo_cli("train", "vae", *SETS, "--set", "model.arch=foo", "--out", tmp_path / "run")
    trained = one_line_error(r.returncode, r.output)
    assert shown == trained and "model.arch='foo' (in --set) is not one of mlp, conv" in shown
    # a value only the model itself rejects (not its declaration): show-config builds it on the meta device
    args = ["dcgan", "--set", "data.image_size=30"]
    shown, trained = run("show-config", *args), run("train", *args, *SETS, "--out", tmp_path / "run2")
    assert one_line_error(*shown) == one_line_error(*trained)
    assert "dcgan needs data.image_size divisible by 4" in shown[1]


def test_show_config_needs_a_model_or_reference():
    code, out = run("show-config")
    assert "name a model" in one_line_error(code, out)


# --- docs/config.md -------------------------------------------------------------------------------
def test_the_config_reference_is_current():
    committed = (REPO / "docs" / "config.md").read_text()
    assert committed == reference_markdown(), f"docs/config.md is out of date: run `{COMMAND}`"
    for text in ("`trainer.log_every`", "mean over", "`model.latent_density`", "| `tiny` | smoke test",
                 "| `steps` |", "ZOO_CONFIG"):
        assert text in committed, text
    plugins_md = (REPO / "docs" / "plugins.md").read_text()
    assert "(config.md)" in plugins_md

"""`zoo export`: an exported folder gives exactly the run's model wherever a run is accepted (zoo sample, eval,
compare, zoo.load, hf://ORG/NAME through the real huggingface_hub cache), and a damaged, edited or foreign
file is refused with one line."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MNIST_SETS
from helpers import zoo_cli

import zoo
from zoo.api import load_run, sample_images
from zoo.errors import ZooError
from zoo.export import export
from zoo.registry import list_models

# every family `zoo list` shows (built-ins and the example plugin zoo-wgan-gp, installed in the venv)
FAMILIES = ["ae", "vae", "gan", "lsgan", "dcgan", "ddpm", "ddpm-attention", "ddpm-convnext", "flow",
            "flow-attention", "flow-convnext", "wgan-gp"]
FAST = ["trainer.max_steps=2", "trainer.sample_every=1000", "trainer.eval_every=null"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each family trained for 2 steps (tiny preset), and exported (the default: last checkpoint)."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name in FAMILIES:
        run = root / "runs" / name
        zoo.train(name, preset="tiny", sets=MNIST_SETS + FAST, out=run)
        out[name] = (run, export(run, root / "exports" / name, echo=lambda m: None))
    return out


def test_every_family_is_covered():
    assert set(FAMILIES) == set(list_models())


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_export_samples_bitwise_like_the_run(runs, name):
    run, exported = runs[name]
    a = sample_images(load_run(run), 8, seed=3)
    model = zoo.load(exported)
    b = sample_images(model, 8, seed=3)
    assert torch.equal(a, b)
    assert model.step == 2 and model.cfg.model_name == name
    files = sorted(p.name for p in exported.iterdir())
    assert files == ["README.md", "config.json", "model.safetensors", "samples.png"]
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in exported.iterdir())  # no pickle anywhere


@pytest.mark.slow
def test_ae_export_holds_the_fitted_latent_density(runs):
    run, exported = runs["ae"]
    from safetensors.torch import load_file
    tensors = load_file(exported / "model.safetensors")
    fitted = {k: v for k, v in tensors.items() if k.endswith("fitted")}
    assert fitted and all(bool(v) for v in fitted.values())  # the GMM the trainer fitted after training


@pytest.mark.slow
def test_config_and_card(runs):
    run, exported = runs["ddpm"]
    meta = json.loads((exported / "config.json").read_text())
    assert meta["model_name"] == "ddpm" and meta["plugin"]["package"] == "zoo"
    assert meta["config"]["data"]["root"] is None  # the training machine's path does not travel
    assert meta["config"]["data"]["holdout"] == 1000 and meta["config"]["data"]["split"] == "test"
    size = meta["config"]["data"]["image_size"]
    assert meta["image_shape"] == [1, size, size] and meta["data_range"] == [-1, 1] and meta["weights"]["ema"] is True
    assert len(meta["weights"]["sha256"]) == 64
    card = (exported / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: zoo\n") and "- mnist" in card and "![samples](samples.png)" in card
    wgan = json.loads((runs["wgan-gp"][1] / "config.json").read_text())
    assert wgan["plugin"]["package"] == "zoo-wgan-gp"


@pytest.mark.slow
def test_cli_sample_and_eval_of_an_export_match_the_run(runs, tmp_path):
    run, exported = runs["vae"]
    for src, name in ((run, "run"), (exported, "export")):
        r = zoo_cli("sample", src, "-n", "16", "--out", tmp_path / f"{name}.npz")
        assert r.returncode == 0, r.output
    assert np.array_equal(np.load(tmp_path / "run.npz")["images"], np.load(tmp_path / "export.npz")["images"])
    fids = []
    for src in (run, exported):
        r = zoo_cli("eval", src, "-n", "256", "--metrics", "fid", "--nll", "--nll-n", "10", "--json")
        assert r.returncode == 0, r.output
        got = json.loads(r.stdout)
        fids.append((got["fid"], got["bits_per_dim"]))
    assert fids[0] == fids[1]
    assert not (exported / "eval.json").exists()  # zoo eval never writes into an export


@pytest.mark.slow
def test_compare_ranks_existing_runs_and_exports_without_training(runs, tmp_path):
    (ae_run, _), (gan_run, _), (_, vae_export) = runs["ae"], runs["gan"], runs["vae"]
    out = tmp_path / "cmp"
    r = zoo_cli("compare", ae_run, gan_run, vae_export, "-n", "256", "--fid-points", "0", "--metrics", "fid",
                "--out", out)
    assert r.returncode == 0, r.output
    assert not (out / "runs").exists()  # nothing trained
    board = json.loads((out / "leaderboard.json").read_text())
    assert {row["model"] for row in board["rows"]} == {"ae", "gan", "vae"}
    assert all(row["fid"] is not None and row["steps"] == 2 for row in board["rows"])
    assert [row["fid"] for row in board["rows"]] == sorted(row["fid"] for row in board["rows"])  # ranked
    assert "an export: trained elsewhere" in board["context"]["not trained here"]
    assert "an existing run" in (out / "leaderboard.md").read_text()


def _copy(exported, tmp_path) -> Path:
    dst = tmp_path / "x"
    shutil.copytree(exported, dst)
    return dst


def _refused(src, tmp_path, *words, env=None):
    r = zoo_cli("sample", src, "-n", "2", "--out", tmp_path / "out.png", env=env)
    assert r.returncode == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.output, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    return r.stderr


@pytest.mark.slow
def test_truncated_edited_or_pickled_weights_are_refused(runs, tmp_path):
    _, exported = runs["gan"]
    bad = _copy(exported, tmp_path)
    weights = bad / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    _refused(bad, tmp_path, "truncated or was edited")
    edited = bytearray(data)
    edited[-5] ^= 0xFF  # one weight changed
    weights.write_bytes(bytes(edited))
    with pytest.raises(ZooError, match="does not match the SHA-256 recorded in config.json"):
        zoo.load(bad)


@pytest.mark.slow
def test_a_pickle_renamed_model_safetensors_never_runs(runs, tmp_path):
    """A pickle that would write a file when unpickled, with its SHA-256 put into config.json (an attacker
    controls both files): refused as not safetensors, and nothing ran."""
    _, exported = runs["gan"]
    bad = _copy(exported, tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))
    torch.save({"w": Evil()}, bad / "model.safetensors")
    from zoo.sources import sha256
    meta = json.loads((bad / "config.json").read_text())
    meta["weights"]["sha256"] = sha256(bad / "model.safetensors")
    (bad / "config.json").write_text(json.dumps(meta))
    _refused(bad, tmp_path, "not a valid safetensors file")
    assert not marker.exists()


@pytest.mark.slow
def test_tensors_are_checked_against_the_model_config_json_builds(runs, tmp_path):
    from safetensors.torch import load_file, save_file

    from zoo.sources import sha256
    _, exported = runs["vae"]
    bad = _copy(exported, tmp_path)
    tensors = load_file(bad / "model.safetensors")
    key = next(iter(tensors))
    tensors[key] = tensors[key].double()
    save_file(tensors, str(bad / "model.safetensors"))
    meta = json.loads((bad / "config.json").read_text())
    meta["weights"]["sha256"] = sha256(bad / "model.safetensors")
    (bad / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ZooError, match=f"mismatched {key}"):
        zoo.load(bad)


@pytest.mark.slow
def test_a_missing_plugin_names_the_package_to_install(runs, tmp_path):
    _, exported = runs["wgan-gp"]
    r = zoo_cli("sample", exported, "-n", "2", "--out", tmp_path / "o.png", env={"ZOO_DISABLE_PLUGINS": "wgan-gp"})
    assert r.returncode == 2 and "pip install 'zoo-wgan-gp==" in r.stderr, r.output
    assert r.stderr.count("\n") == 1


def hub_cache(root: Path, repo: str, folder: Path, commit: str = "a" * 40) -> Path:
    """``folder`` placed into a Hugging Face hub cache as a download leaves it: blobs named by their hash,
    ``snapshots/COMMIT/FILE`` symlinks to them, ``refs/main`` naming the commit."""
    import hashlib
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo_dir / "blobs").mkdir()
    for f in folder.iterdir():
        blob = repo_dir / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copy(f, blob)
        (snap / f.name).symlink_to(Path("..", "..", "blobs", blob.name))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return snap


@pytest.mark.slow
def test_hf_uri_offline_from_the_hub_cache(runs, tmp_path):
    run, exported = runs["ddpm"]
    cache = tmp_path / "hf"
    hub_cache(cache / "hub", "someone/zoo-ddpm", exported)
    env = {"HF_HOME": cache, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": None, "HF_TOKEN": None}
    r = zoo_cli("sample", "hf://someone/zoo-ddpm", "-n", "8", "--out", tmp_path / "hub.npz", env=env)
    assert r.returncode == 0, r.output
    r = zoo_cli("sample", run, "-n", "8", "--out", tmp_path / "run.npz")
    assert np.array_equal(np.load(tmp_path / "hub.npz")["images"], np.load(tmp_path / "run.npz")["images"])
    r = zoo_cli("sample", "hf://someone/zoo-ddpm@main", "-n", "2", "--out", tmp_path / "main.png", env=env)
    assert r.returncode == 0, r.output
    for missing in ("hf://someone/elsewhere", "hf://someone/zoo-ddpm@v2"):
        err = _refused(missing, tmp_path, "HF_HUB_OFFLINE=1 is set and it is not in the hub cache", env=env)
        assert str(cache / "hub") in err
    with pytest.raises(ZooError, match="write hf://ORG/NAME"):
        zoo.load("hf://just-a-name")


@pytest.mark.slow
def test_push_needs_a_token_before_any_work(tmp_path):
    """--push is tested up to the network call only (no network here): without a token it stops before
    exporting; with one, the upload's failure is one line."""
    r = zoo_cli("export", tmp_path / "nothing", tmp_path / "out", "--push", "me/model",
                env={"HF_TOKEN": None, "HF_HOME": tmp_path / "hf"})
    assert r.returncode == 2 and "no Hugging Face token" in r.stderr, r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_push_fails_in_one_line_at_the_network_call(runs, tmp_path):
    run, _ = runs["gan"]
    r = zoo_cli("export", run, tmp_path / "out", "--push", "me/model",
                env={"HF_TOKEN": "hf_not_a_real_token", "HF_HOME": tmp_path / "hf", "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: --push me/model: the upload "
                                                                              "failed"), r.output
    assert (tmp_path / "out" / "model.safetensors").is_file()  # the export itself was written first


@pytest.mark.slow
def test_export_best_checkpoint_and_eval_now(tmp_path):
    run = tmp_path / "run"
    zoo.train("vae", preset="tiny", sets=MNIST_SETS + ["trainer.max_steps=6", "trainer.eval_every=3",
                                                        "trainer.eval_n=256"], out=run)
    out = tmp_path / "best"
    r = zoo_cli("export", run, out, "--checkpoint", "best", "--eval", "--eval-n", "300")
    assert r.returncode == 0, r.output
    meta = json.loads((out / "config.json").read_text())
    assert meta["weights"]["checkpoint"] == "best.pt" and meta["scores"]["n"] == 300
    assert "Measured with 300 samples" in (out / "README.md").read_text()
    best = sample_images(load_run(run, checkpoint_name="best.pt"), 4)
    assert torch.equal(best, sample_images(zoo.load(out), 4))
    r = zoo_cli("export", run, out, "--checkpoint", "last")
    assert r.returncode == 2 and "not empty: pass --force" in r.stderr


@pytest.mark.slow
def test_the_ddpm_cpu_preset_exports_under_5_mb(tmp_path):
    """The weights file of the DDPM `cpu` preset (the export's largest part) fits in 5 MB: benchmarks/results/
    export-cpu.md measures the whole folder of its 10-minute run (4.52 MB)."""
    from zoo.export import write_weights
    from zoo.registry import create_model
    model = create_model("ddpm", preset="cpu")
    model.step = 0
    write_weights(model, tmp_path, tmp_path, "last.pt")
    assert (tmp_path / "model.safetensors").stat().st_size <= 4.8e6


@pytest.mark.slow
def test_export_refuses_a_missing_best_checkpoint_and_a_non_empty_target(runs, tmp_path):
    run, exported = runs["gan"]
    with pytest.raises(ZooError, match="has no checkpoints/best.pt: it logged no periodic FID"):
        export(run, tmp_path / "a", checkpoint="best")
    with pytest.raises(ZooError, match="not empty: pass --force"):
        export(run, exported)
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ae", "ddpm"])
def test_a_conditional_export_draws_the_same_classes_as_its_run(tmp_path, name):
    """A conditional run's export keeps what conditioning needs (the label rows, the AE's per-class code
    densities, the class count): the same labels and seed draw the same images from both."""
    run = tmp_path / "run"
    zoo.train(name, preset="tiny", sets=MNIST_SETS + FAST + ["model.conditional=true"], out=run)
    model = zoo.load(export(run, tmp_path / "export", echo=lambda m: None))
    assert model.num_classes == 10
    labels = [7, 7, 3, 0]
    a = sample_images(load_run(run), 4, seed=3, labels=labels)
    assert torch.equal(a, sample_images(model, 4, seed=3, labels=labels))
    assert not torch.equal(a, sample_images(model, 4, seed=3, labels=[1, 1, 1, 1]))

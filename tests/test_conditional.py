"""Class labels from the data to the model (issue 23): labelled datasets, conditional runs in the trainer
(aligned labels, resume, DDP), `zoo sample --label/--guidance`, `zoo list`, the contract's conditional clause.
The conditional model is `toycond`, a stand-in in tests/fixtures/toyzoo.py."""
import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

import zoo
from conftest import MNIST_SETS
from helpers import zoo_cli
from test_trainer import assert_same_state, losses
from zoo import ZooError, checkpoint
from zoo.cli import main
from zoo.config import Config
from zoo.data import load_dataset, load_images, to_model_input, to_uint8
from zoo.testing import check_model_contract, registry_with

COND = [*MNIST_SETS, "model.conditional=true"]


def invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


def one_error(code, out, says):
    lines = out.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], out


def image_folder(root: Path, layout: dict) -> Path:
    """PNGs under ``root``: ``{"cat": 2, "dog": 3}`` -> root/cat/0.png ...; key "" puts them in root itself."""
    for sub, n in layout.items():
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 40 * i + (100 if sub == "dog" else 0), np.uint8)).save(
                root / sub / f"{i}.png")
    return root


# --- data ---------------------------------------------------------------------------------------------
def test_folder_with_a_subfolder_per_class_gives_labels_and_a_flat_one_none(tmp_path):
    labelled = image_folder(tmp_path / "pets", {"dog": 3, "cat": 2})  # class index by sorted name: cat 0, dog 1
    images, labels = load_dataset("folder", "train", labelled, with_labels=True)
    assert images.shape == (5, 3, 8, 8) and labels.tolist() == [0, 0, 1, 1, 1]
    flat = image_folder(tmp_path / "flat", {"": 3})
    assert load_dataset("folder", "train", flat, with_labels=True)[1] is None


def test_a_labelled_folder_trains_conditionally_with_its_class_count(toy, tmp_path):
    root = image_folder(tmp_path / "pets", {"cat": 3, "dog": 3, "emu": 2})
    zoo.train("toycond", out=tmp_path / "r", sets=["data.name=folder", f"data.root={root}", "model.conditional=true",
                                                    "trainer.batch_size=4", "trainer.max_steps=2"])
    model = zoo.load_run(tmp_path / "r")
    assert model.num_classes == 3 and model.seen.tolist() == [3, 3, 2]
    model.sample(3, torch.Generator().manual_seed(0), labels=2)
    with pytest.raises(ZooError, match=r"label 3 is out of range: model 'toycond' has 3 classes \(0..2\)"):
        model.sample(3, torch.Generator().manual_seed(0), labels=3)


def test_a_dataset_plugin_with_other_labels_still_trains_unconditionally(toy, tmp_path):
    """Labels that are not class indices (here: names) were allowed before conditioning: still fine unless a run
    is conditional, which then says what is wrong."""
    import toyzoo

    def names(root, split, download):
        return torch.zeros(40, 1, 28, 28, dtype=torch.uint8), np.array(["cat", "dog"] * 20)

    class Plugin:
        @zoo.hookimpl
        def zoo_register_datasets(self, register):
            register("named", names, channels=1, image_size=28, description="labels are names")
    with registry_with(Plugin(), toy=toyzoo):
        sets = ["data.name=named", "trainer.batch_size=8", "trainer.max_steps=2"]
        assert zoo.train("toycond", out=tmp_path / "u", sets=sets).status == "finished"
        with pytest.raises(ZooError, match="dataset 'named' loader returned labels that are not integer class"):
            zoo.train("toycond", out=tmp_path / "c", sets=[*sets, "model.conditional=true"])


def test_labels_follow_the_holdout_and_the_limit(mnist_root):
    data = Config({"name": "mnist", "split": "test", "holdout": 1000, "limit": 500})
    images, labels = load_images(data, "train", with_labels=True)
    all_images, all_labels = load_dataset("mnist", "test", with_labels=True)
    where = {bytes(img.numpy()): int(y) for img, y in zip(all_images, all_labels)}
    assert len(labels) == 500 and all(where[bytes(img.numpy())] == int(y) for img, y in zip(images, labels))


# --- the trainer --------------------------------------------------------------------------------------
def test_each_batch_gets_its_own_images_labels_and_after_training_gets_pairs(toy, tmp_path, monkeypatch, capsys):
    import toyzoo
    seen, original = [], toyzoo.ToyCond.training_loss

    def spy(self, x, phase, labels=None):
        seen.append((x.detach().clone(), labels.clone()))
        return original(self, x, phase, labels=labels)
    monkeypatch.setattr(toyzoo.ToyCond, "training_loss", spy)
    sets = [*COND, "data.limit=2000", "trainer.max_steps=8", "trainer.sample_every=0", "trainer.n_samples=20"]
    zoo.train("toycond", out=tmp_path / "r", sets=sets, quiet=False)
    assert "; conditional: 10 classes" in capsys.readouterr().out  # the header's data line
    images, labels = load_images(Config({"name": "mnist", "split": "test", "holdout": 1000, "limit": 2000}),
                                 "train", with_labels=True)
    where = {bytes(img.numpy()): int(y) for img, y in zip(images, labels)}
    assert len(seen) == 8
    for x, y in seen:  # every image of every batch came with its own label
        back = to_uint8((x + 1) / 2)
        assert y.dtype == torch.int64 and [where[bytes(img.numpy())] for img in back] == y.tolist()
    cfg = Config(yaml.safe_load((tmp_path / "r" / "config.yaml").read_text()))
    assert cfg.data.num_classes == 10 and cfg.model.conditional is True
    model = zoo.load_run(tmp_path / "r")  # after_training saw (x, labels) pairs: every training label once
    assert model.seen.tolist() == torch.bincount(labels, minlength=10).tolist()


def test_grid_of_a_conditional_run_has_a_row_per_class(toy, tmp_path, monkeypatch):
    import toyzoo
    asked = []
    original = toyzoo.ToyCond.sample

    def spy(self, n, generator, labels=None, **options):
        asked.append(labels.tolist())
        return original(self, n, generator, labels=labels, **options)
    monkeypatch.setattr(toyzoo.ToyCond, "sample", spy)
    zoo.train("toycond", out=tmp_path / "r", sets=[*COND, "trainer.max_steps=2", "trainer.n_samples=25",
                                                    "trainer.grid_seconds=null"])
    assert asked[-1] == [c for c in range(10) for _ in range(2)]  # 25 // 10 = 2 images of each class
    with Image.open(tmp_path / "r" / "samples.png") as grid:  # 2 images a row (28 px + 2 padding), 10 rows
        assert grid.size == (2 + 2 * 30, 2 + 10 * 30)


def test_unconditional_runs_call_the_model_exactly_as_before(toy, tmp_path):
    """toy's training_loss(x, phase) and sample(n, g, **options) take no labels: any labels= would fail."""
    result = zoo.train("toycond", out=tmp_path / "r", sets=[*MNIST_SETS, "trainer.max_steps=3"])
    assert result.status == "finished" and zoo.load_run(tmp_path / "r").num_classes is None
    assert zoo.train("toy", out=tmp_path / "t", sets=[*MNIST_SETS, "trainer.max_steps=3"]).status == "finished"


@pytest.mark.slow
def test_killed_conditional_run_resumes_bitwise(toy_site, tmp_path):
    common = ["--set=trainer.max_steps=40", "--set=trainer.checkpoint_every=20", "--set=trainer.log_every=7",
              "--set=ema.enabled=true", *[f"--set={s}" for s in COND]]
    full, broken = tmp_path / "full", tmp_path / "broken"
    r = zoo_cli("train", "toycond", "--out", full, *common, site=toy_site)
    assert r.returncode == 0, r.stderr
    r = zoo_cli("train", "toycond", "--out", broken, *common, "--set=model.signal_at=27", site=toy_site)
    assert r.returncode == -signal.SIGKILL and checkpoint.load(broken / "checkpoints" / "last.pt")["step"] == 20
    r = zoo_cli("train", "--resume", "--out", broken, "--set=model.signal_at=null", site=toy_site)
    assert r.returncode == 0, r.stderr
    assert_same_state(full, broken)
    assert losses(full) == losses(broken)
    a, b = (checkpoint.load(d / "checkpoints" / "last.pt")["model"]["seen"] for d in (full, broken))
    assert torch.equal(a, b) and int(a.sum()) == 9000


@pytest.mark.slow
def test_ddp_shards_labels_with_their_images(toy_site, tmp_path):
    common = [*[f"--set={s}" for s in COND], "--set=model.dropout=0.0", "--set=trainer.max_steps=6",
              "--set=trainer.batch_size=32", "--set=trainer.device=cpu"]
    r = zoo_cli("train", "toycond", "--out", tmp_path / "one", *common, site=toy_site)
    assert r.returncode == 0, r.stderr
    r = zoo_cli("train", "toycond", "--gpus", "2", "--out", tmp_path / "two", *common, site=toy_site)
    assert r.returncode == 0, r.stderr  # toycond raises on labels not int64 (B,) on the images' device
    one, two = (checkpoint.load(tmp_path / d / "checkpoints" / "last.pt")["model"] for d in ("one", "two"))
    for k in one:
        torch.testing.assert_close(one[k].float(), two[k].float(), rtol=1e-4, atol=1e-5)


# --- one-line errors ----------------------------------------------------------------------------------
def test_conditional_errors_are_one_line(toy, tmp_path):
    flat = image_folder(tmp_path / "flat", {"": 4})
    code, out = invoke("train", "toycond", "--set", "data.name=folder", "--set", f"data.root={flat}", "--set",
                       "model.conditional=true", "--out", tmp_path / "f")
    one_error(code, out, "model.conditional=true needs class labels, and dataset 'folder'")
    assert not (tmp_path / "f").exists()
    code, out = invoke("train", "toy", *[a for s in COND for a in ("--set", s)], "--out", tmp_path / "t")
    one_error(code, out, "model 'toy' cannot be conditional (model.conditional=true): models that can: ae, dcgan, ")
    assert "toycond" in out
    code, out = invoke("train", "toycond", *[a for s in COND for a in ("--set", s)], "--set",
                       "data.num_classes=5", "--out", tmp_path / "k")
    one_error(code, out, "dataset 'mnist' has label 9, but data.num_classes=5")
    with pytest.raises(ZooError, match="cannot be conditional"):
        zoo.create_model("toy", **{"model.conditional": True})


def test_zoo_sample_labels(toy, tmp_path):
    cond, plain = tmp_path / "cond", tmp_path / "plain"
    zoo.train("toycond", out=cond, sets=[*COND, "trainer.max_steps=2"])
    zoo.train("toycond", out=plain, sets=[*MNIST_SETS, "trainer.max_steps=2"])
    one_error(*invoke("sample", cond, "--label", "11", "-o", tmp_path / "a.png"),
              "--label 11 is out of range: this run has 10 classes (0..9)")
    one_error(*invoke("sample", plain, "--label", "3", "-o", tmp_path / "a.png"),
              "this run of 'toycond' is unconditional")
    one_error(*invoke("sample", cond, "--label", "seven", "-o", tmp_path / "a.png"), "--label 'seven'")
    one_error(*invoke("sample", cond, "--guidance", "2", "-o", tmp_path / "a.png"),
              "model 'toycond' has no sampling option 'guidance'")
    assert not (tmp_path / "a.png").exists()

    model = zoo.load_run(cond)
    code, out = invoke("sample", cond, "--label", "7", "-n", "5", "--seed", "3", "-o", tmp_path / "7.npz")
    assert code == 0 and "wrote 5 images" in out
    sevens = np.load(tmp_path / "7.npz")["images"]
    python = to_uint8(model.sample(5, torch.Generator().manual_seed(3), labels=7)).permute(0, 2, 3, 1).numpy()
    assert (sevens == python).all()  # the same images from Python
    code, out = invoke("sample", cond, "--label", "all", "-n", "25", "-o", tmp_path / "all.npz")
    assert code == 0 and "wrote 20 images (2 per class, one row each)" in out, out
    every = np.load(tmp_path / "all.npz")["images"]
    y = torch.arange(10).repeat_interleave(2)
    assert (every == to_uint8(model.sample(20, torch.Generator().manual_seed(0), labels=y))
            .permute(0, 2, 3, 1).numpy()).all()
    code, out = invoke("sample", cond, "--label", "3,5", "-n", "6", "-o", tmp_path / "35.png")
    assert code == 0 and "wrote 6 images (3 per class, one row each)" in out
    with Image.open(tmp_path / "35.png") as grid:
        assert grid.size == (2 + 3 * 30, 2 + 2 * 30)  # 28 px images, 2 px padding: 3 a row, 2 rows


def test_zoo_list_says_which_models_can_be_conditional(toy):
    code, out = invoke("list")
    header = next(line for line in out.splitlines() if line.startswith("model "))
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("toy ", "toycond "))}
    assert code == 0 and rows["toycond"][header.index("cond.")] == "y" and rows["toy"][header.index("cond.")] == "-"
    code, out = invoke("list", "toycond")
    assert code == 0 and "conditional: yes -- --set model.conditional=true" in out
    code, out = invoke("list", "toy")
    assert code == 0 and "conditional: no (models that can: " in out and "toycond" in out and "ddpm" in out


# --- the contract ---------------------------------------------------------------------------------------
def test_contract_checks_a_conditional_model(toy):
    import toyzoo
    check_model_contract("toycond", sets=MNIST_SETS)

    class Deaf(toyzoo.ToyCond):  # draws the same images whatever labels it is asked for
        def sample(self, n, generator, labels=None, **options):
            if self.num_classes is not None:
                self.sample_labels(n, labels)
            return toyzoo.Toy.sample(self, n, generator, **options)

    class Lax(toyzoo.ToyCond):  # accepts any label
        def sample(self, n, generator, labels=None, **options):
            if options:
                raise ValueError(f"unknown options {options}")
            z = toyzoo.randn((n, self.cfg.model.width, 14, 14), generator, self.device)
            if self.num_classes is not None:
                y = torch.as_tensor(labels if labels is not None else 0).expand(n) % self.num_classes
                z = self.code(z, y)
            return toyzoo.to_unit(self.dec(z))

    class Plugin:
        @zoo.hookimpl
        def zoo_register_models(self, register):
            register(Deaf, name="deaf")
            register(Lax, name="lax")
    with registry_with("datasets", Plugin()):
        with pytest.raises(AssertionError, match=r"model 'deaf' \(conditional\): .*labels are ignored"):
            check_model_contract("deaf", sets=MNIST_SETS)
        with pytest.raises(AssertionError, match=r"model 'lax' \(conditional\): sample\(\) accepted label 10"):
            check_model_contract("lax", sets=MNIST_SETS)


def test_model_sample_labels_from_python(toy):
    model = zoo.create_model("toycond", **{"model.conditional": True, "data.split": "test"})
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert model.num_classes == 10 and model.sample(4, g(), labels=[1, 2, 3, 4]).shape == (4, 1, 28, 28)
    assert torch.equal(model.sample(3, g(), labels=2), model.sample(3, g(), labels=torch.tensor([2, 2, 2])))
    with pytest.raises(ZooError, match="label 11 is out of range"):
        model.sample(2, g(), labels=11)
    x = to_model_input(load_images(Config({"name": "mnist", "split": "test", "limit": 4}), "all"), 28, 1)
    assert torch.isfinite(model.training_loss(x, "main", labels=torch.arange(4))["loss"])


# --- zoo compare ----------------------------------------------------------------------------------------
def test_compare_step_time_probe_gives_a_conditional_model_labels(toy):
    from zoo.compare_train import step_seconds
    for sets in (COND, MNIST_SETS):  # toycond raises on labels in the wrong kind of run
        assert step_seconds(zoo.model_config("toycond", sets=sets), budget_seconds=0.1, max_steps=1) > 0


@pytest.mark.slow
def test_compare_trains_and_scores_a_conditional_model(toy, tmp_path, monkeypatch):
    import zoo.compare_report
    shown, show = [], zoo.compare_report._show
    monkeypatch.setattr(zoo.compare_report, "_show", lambda ax, images, nrow: (shown.append((len(images), nrow)),
                                                                            show(ax, images, nrow)))
    code, out = invoke("compare", "toycond", "--out", tmp_path, "--steps", 6, "-n", 300, "--fid-points", 0,
                       "--metrics", "fid", *[a for s in COND for a in ("--set", s)])
    assert code == 0, out
    rows = json.loads((tmp_path / "leaderboard.json").read_text())["rows"]
    assert rows[0]["model"] == "toycond" and rows[0]["fid"] > 0  # sampled with balanced labels
    assert zoo.load_run(tmp_path / "runs" / "toycond").num_classes == 10
    assert shown[0] == (60, 10)  # samples.png: one class a column (balanced labels ask for class i % 10)

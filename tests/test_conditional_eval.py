"""Metrics that judge conditioning, on real MNIST (CPU): label accuracy, intra-class FID, the guidance sweep
(`zoo eval RUN --guidance 0,1,2`) and compare's columns. A stand-in conditional model draws real digits of
the class asked for; its `guidance` option mixes in noise."""
import json
import re

import pytest
import torch
from click.testing import CliRunner
from conftest import MNIST_SETS

from zoo import Key, ZooModel, hookimpl
from zoo.cli import main
from zoo.config import Config
from zoo.contract import rand
from zoo.data import load_images
from zoo.evaluate import evaluate

pytestmark = pytest.mark.filterwarnings("ignore:the 'mnist' feature extractor was trained on")
DATA = {"name": "mnist", "split": "test", "holdout": 1000}


class RealDigits(ZooModel):
    """Draws real training digits of the requested class; ``guidance`` w mixes in noise (w / (w + 2))."""
    family = "toy"
    can_condition = True
    config = {"model": {"conditional": Key(False, "class-conditional")}, "data": {"image_size": 28}}
    sample_options = {"guidance": Key(0.0, "noise mixed in", type=float, ge=0)}

    def __init__(self, cfg):
        super().__init__(cfg)
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        images, labels = load_images(cfg.data, "train", with_labels=True)
        order = labels.argsort(stable=True)
        self.images, counts = images[order], labels.bincount(minlength=10)
        self.starts, self.counts = counts.cumsum(0) - counts, counts

    def training_loss(self, x, phase, labels=None):
        return {"loss": self.anchor.sum()}

    @torch.no_grad()
    def sample(self, n, generator, labels=None, guidance=0.0):
        y = self.sample_labels(n, labels, torch.device("cpu")) if self.num_classes else \
            torch.randint(0, 10, (n,), generator=generator)   # an unconditional run: any class
        pick = torch.randint(0, 1 << 30, (n,), generator=generator)
        x = self.images[self.starts[y] + pick % self.counts[y]].float() / 255
        a = guidance / (guidance + 2)
        return (1 - a) * x + a * rand(x.shape, generator)


class NoGuidance(RealDigits):
    sample_options = {}

    def sample(self, n, generator, labels=None):
        return super().sample(n, generator, labels)


class StandIns:
    @hookimpl
    def zoo_register_models(self, register):
        register(RealDigits, name="realdigits", description="real digits of the class asked for")
        register(NoGuidance, name="noguide", description="real digits, no guidance option")


def make_run(path, name, conditional=True):
    """A run directory as training leaves it (config.yaml, checkpoints/last.pt), without training."""
    from zoo import checkpoint
    from zoo.registry import complete_data_config, model_config, registry
    cfg = model_config(name, sets=MNIST_SETS + [f"model.conditional={str(conditional).lower()}"])
    if conditional and not cfg.data.get("num_classes"):
        cfg.data["num_classes"] = 10   # zoo fills it in from the dataset's labels when training starts
    complete_data_config(cfg)
    model = registry().model(name).cls(cfg)
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(cfg.to_yaml())
    checkpoint.save({"config": cfg.to_dict(), "model": model.state_dict(), "step": 0}, path / "checkpoints" / "last.pt")
    return path


@pytest.fixture
def standins(zoo_registry):
    return zoo_registry("datasets", "extractors", "metrics", standins=StandIns())


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("stats")


@pytest.fixture(scope="module")
def digits(mnist_root):
    """(held-out images, labels), (training images, labels) of the test split."""
    return load_images(Config(DATA), "holdout", with_labels=True), load_images(Config(DATA), "train", with_labels=True)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_label_accuracy_of_real_digits_with_true_and_shuffled_labels(digits, cache):
    (images, labels), _ = digits
    true = evaluate(images, data=DATA, labels=labels, metrics="label-acc", cache_dir=cache)
    assert true["label_accuracy"] > 0.97 and true["label_accuracy"] == true["label_accuracy_real"]
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    wrong = evaluate(images, data=DATA, labels=shuffled, metrics="label-acc", cache_dir=cache)
    assert 0.05 < wrong["label_accuracy"] < 0.15
    assert wrong["label_accuracy_real"] == true["label_accuracy_real"]   # the ceiling: the real labels


def test_intra_class_fid_small_for_the_same_class_and_large_for_another(digits, cache):
    _, (images, labels) = digits   # digits never held out, against the held-out digits of each class
    same = evaluate(images[:2000], data=DATA, labels=labels[:2000], metrics="intra-fid", cache_dir=cache)
    other = evaluate(images[:2000], data=DATA, labels=(labels[:2000] + 1) % 10, metrics="intra-fid", cache_dir=cache)
    assert len(same["intra_fid_per_class"]) == 10 and same["intra_fid_classes"] == 10
    assert same["intra_fid"] < 10 < 50 < other["intra_fid"]
    assert all(s < o for s, o in zip(same["intra_fid_per_class"], other["intra_fid_per_class"]))


def test_images_with_labels_in_their_npz_are_judged_from_the_cli(digits, tmp_path, cache):
    from zoo.images import write_images
    (images, labels), _ = digits
    write_images(images[:300].float() / 255, tmp_path / "x.npz", labels=(labels[:300] + 1) % 10)
    r = cli("eval", "--images", tmp_path / "x.npz", "--set", "data.split=test", "--set", "data.holdout=1000",
            "--metrics", "label-acc", "-n", 200, "--cache-dir", cache, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["n"] == 200 and got["label_accuracy"] < 0.05 and got["label_accuracy_real"] > 0.97


def test_unlabelled_samples_omit_the_conditional_metrics(digits, cache):
    (images, _), _ = digits
    r = evaluate(images, data=DATA, metrics="fid,label-acc,intra-fid", cache_dir=cache)
    assert r["fid"] is not None and r["label_accuracy"] is None and r["intra_fid"] is None
    assert "asked for no labels" in r["label_accuracy_note"]


def test_eval_of_a_conditional_run_samples_balanced_labels_and_prints_the_ceiling(standins, tmp_path, cache):
    run = make_run(tmp_path / "run", "realdigits")
    r = cli("eval", run, "-n", 300, "--metrics", "fid,label-acc,intra-fid", "--cache-dir", cache)
    assert r.exit_code == 0, r.output
    got = json.loads((run / "eval.json").read_text())
    assert got["num_classes"] == 10 and got["sample_labels"].startswith("balanced")
    assert got["label_accuracy"] > 0.97 and got["intra_fid_images"][3][0] == 30   # 300 samples, 30 per class
    assert f"label acc  {got['label_accuracy']:.3f} (real {got['label_accuracy_real']:.3f})" in r.output
    assert "intra-FID" in r.output


def test_guidance_sweep_gives_a_table_eval_json_and_a_plot(standins, tmp_path, cache):
    run = make_run(tmp_path / "run", "realdigits")
    r = cli("eval", run, "--guidance", "0,1,4", "-n", 300, "--metrics", "fid,label-acc,intra-fid",
            "--cache-dir", cache, "--out", tmp_path / "plots" / "sweep.png")
    assert r.exit_code == 0, r.output
    got = json.loads((run / "eval.json").read_text())
    assert got["guidance"] == [0.0, 1.0, 4.0] and [s["sample_options"] for s in got["sweep"]] == \
        [{"guidance": w} for w in (0.0, 1.0, 4.0)]
    fids = [s["fid"] for s in got["sweep"]]
    intra = [s["intra_fid"] for s in got["sweep"]]
    assert fids == sorted(fids) and intra == sorted(intra) and got["sweep"][0]["label_accuracy"] > 0.97
    lines = r.output.splitlines()
    header = next(i for i, line in enumerate(lines) if "guidance" in line and "label acc" in line)
    assert [line.split()[0] for line in lines[header + 1:header + 4]] == ["0", "1", "4"]
    assert "label accuracy of the real images" in r.output
    assert (tmp_path / "plots" / "sweep.png").read_bytes()[:4] == b"\x89PNG" and got["plot"].endswith("sweep.png")
    one = cli("eval", run, "--guidance", "2", "-n", 300, "--metrics", "fid", "--cache-dir", cache, "--json")
    assert one.exit_code == 0, one.output
    plain = json.loads(one.stdout)
    assert plain["sample_options"] == {"guidance": 2.0} and "sweep" not in plain and plain["fid"] is not None


@pytest.mark.parametrize("name, conditional, args, needle", [
    ("noguide", True, ["--guidance", "0,1"], "model 'noguide' has no 'guidance' sampling option"),
    ("noguide", True, ["--guidance", "2"], "model 'noguide' has no 'guidance' sampling option"),
    ("realdigits", False, ["--guidance", "0,2"], "--guidance needs a conditional run"),
    ("realdigits", True, ["--guidance", "0,-1"], "--guidance -1: guidance scales are numbers >= 0"),
    ("realdigits", True, ["--guidance", "0,x"], "--guidance '0,x': expected a scale"),
    ("realdigits", True, ["--out", "p.png"], "--out is where a guidance sweep's plot goes"),
    ("realdigits", True, ["--guidance", "0,1", "--option", "guidance=3"], "both set 'guidance'"),
    ("realdigits", True, ["--guidance", "0,1", "--nll"], "--nll with a guidance sweep"),
])
def test_bad_guidance_is_a_one_line_error(standins, tmp_path, name, conditional, args, needle):
    run = make_run(tmp_path / "run", name, conditional)
    r = cli("eval", run, *args)
    assert r.exit_code == 2 and r.output.count("\n") == 1 and r.output.startswith("error: "), r.output
    assert needle in r.output and not (run / "eval.json").exists()


def test_compare_shows_label_columns_with_a_dash_for_unconditional_runs(standins, tmp_path, cache):
    runs = [make_run(tmp_path / "cond", "realdigits"), make_run(tmp_path / "plain", "realdigits", conditional=False)]
    r = cli("compare", *runs, "--out", tmp_path / "cmp", "-n", 300)
    assert r.exit_code == 0, r.output
    assert re.search(r"\[compare\] cond \(\d/2\): FID [\d.]+, label acc (0\.9\d\d|1\.000)", r.output), r.output
    rows = {row["model"]: row for row in json.loads((tmp_path / "cmp" / "leaderboard.json").read_text())["rows"]}
    assert rows["cond"]["label_accuracy"] > 0.97 and rows["cond"]["intra_fid"] is not None
    assert rows["plain"]["label_accuracy"] is None and rows["plain"]["intra_fid"] is None
    md = (tmp_path / "cmp" / "leaderboard.md").read_text().splitlines()
    header = next(line for line in md if line.startswith("| # |"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert "label acc ↑" in cols and "intra-FID ↓" in cols
    for line in md:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == len(cols) and cells[1] in rows:
            acc = cells[cols.index("label acc ↑")]
            assert (acc == "—") == (cells[1] == "plain"), line


class FitsAfterTraining(RealDigits):
    """Keeps the first item ``after_training`` gets (as the AE's per-class latent density would read it)."""
    def after_training(self, batches):
        self.first = next(iter(batches))


@pytest.mark.parametrize("conditional", [True, False])
def test_compare_refits_a_best_checkpoint_with_aligned_labels_when_conditional(mnist_root, conditional):
    from zoo.compare_score import finish_training
    from zoo.registry import complete_data_config, model_config
    from zoo.testing import registry_with
    with registry_with("datasets", standins=StandIns()):
        cfg = model_config("realdigits", sets=MNIST_SETS + [f"model.conditional={str(conditional).lower()}"])
        cfg.data["num_classes"] = 10 if conditional else None
        complete_data_config(cfg)
        model = FitsAfterTraining(cfg)
        finish_training(model)
    images, labels = load_images(cfg.data, "train", with_labels=True)
    bs = int(cfg.trainer.batch_size)
    if conditional:
        x, y = model.first
        assert x.shape[0] == bs and torch.equal(y, labels[:bs])
    else:
        assert torch.is_tensor(model.first) and model.first.shape[0] == bs


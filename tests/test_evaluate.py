"""The evaluation harness on real MNIST (CPU): metric sanity, agreement with a direct computation,
image inputs and their errors, caching, offline Inception, the shipped classifier."""
import json
import sys

import numpy as np
import pytest
import scipy.linalg
import torch
from click.testing import CliRunner
from torchvision.transforms.functional import gaussian_blur
from torchvision.utils import save_image

import zoo
from conftest import MNIST_SETS
from helpers import zoo_cli
from plugin_env import toy_dist
from zoo import ZooError
from zoo.cli import main
from zoo.config import Config
from zoo.data import holdout_split, load_images
from zoo.evaluate import evaluate, quick_fid
from zoo.extractors import INCEPTION_FILE, accuracy, indices_sha256, load_mnist_weights, mnist_extractor
from zoo.registry import registry

# The default reference (the 9k training images) trained the shipped extractor; one test checks the warning.
pytestmark = pytest.mark.filterwarnings("ignore:the 'mnist' feature extractor was trained on")

DATA = {"name": "mnist", "split": "test", "holdout": 1000}
CLI_DATA = [f"--set=data.{s.split('.', 1)[1]}" for s in MNIST_SETS]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("stats")


@pytest.fixture(scope="module")
def holdout(mnist_root):
    """The 1000 held-out real test images (never seen by the shipped extractor) and their labels."""
    return load_images(Config(DATA), "holdout", with_labels=True)


@pytest.fixture(scope="module")
def blurred(holdout):
    return gaussian_blur(holdout[0], kernel_size=5, sigma=1.0)


@pytest.fixture(scope="module")
def noise(holdout):
    return torch.randint(0, 256, holdout[0].shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def score(images, cache, **kw):
    return evaluate(images, data=DATA, cache_dir=cache, **kw)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(r, *needles):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit))
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# --- metric sanity ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_blurred_noise_are_ordered(holdout, blurred, noise, tmp_path):
    cache = tmp_path / "stats"
    with pytest.warns(UserWarning, match="feature extractor was trained on 9000 of the 9000 reference images"):
        real = score(holdout[0], cache)                   # unseen real digits vs the 9k training images
    assert real["reference_stats"] == "computed" and real["n_reference"] == 9000 and real["extractor"] == "mnist"
    assert list(cache.glob("mnist-test-train-mnist-*.pt"))
    blur = score(blurred, cache, metrics="fid,is,prc")
    rand = score(noise, cache)
    assert blur["reference_stats"] == rand["reference_stats"] == "cached"
    assert blur["kid_mean"] is None and blur["fid"] is not None

    assert real["fid"] < 2.0 and real["is_mean"] >= 9.5
    assert real["precision"] > 0.8 and real["recall"] > 0.8 and abs(real["kid_mean"]) < 0.01
    assert rand["is_mean"] < 1.5 and rand["precision"] < 0.05 and rand["recall"] < 0.05 and rand["kid_mean"] > 1
    assert 10 * real["fid"] < blur["fid"] and 10 * blur["fid"] < rand["fid"]
    assert rand["is_mean"] < blur["is_mean"] < real["is_mean"]
    assert blur["recall"] < real["recall"]
    # the default reference (the 9k training images) trained the shipped extractor: the result says so
    assert any("'mnist' feature extractor was trained on 9000 of the 9000 reference images" in w
               for w in real["warnings"])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Matrix is singular")  # dead ReLU units: singular covariances, as usual
def test_fid_equals_direct_scipy_computation(holdout, blurred, cache):
    ext = mnist_extractor()
    real = load_images(Config(DATA), "train")
    with torch.no_grad():
        f_real = ext(real)[0].double().numpy()
        f_fake = ext(blurred)[0].double().numpy()
    mu1, mu2 = f_fake.mean(0), f_real.mean(0)
    s1, s2 = np.cov(f_fake, rowvar=False), np.cov(f_real, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    direct = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    harness = score(blurred, cache, metrics="fid")["fid"]
    assert harness == pytest.approx(direct, rel=1e-3)


def test_registered_with_torch_fidelity(holdout, blurred, tmp_path):
    """torch-fidelity's own calculate_metrics with the registered extractor gives the harness's FID."""
    import torch_fidelity

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    real = holdout[0][:500]
    np.save(tmp_path / "real.npy", real.numpy())
    theirs = torch_fidelity.calculate_metrics(input1=Images(blurred), input2=Images(real), fid=True,
                                              feature_extractor="zoo-mnist", cuda=False, cache=False,
                                              save_cpu_ram=True, verbose=False)
    ours = evaluate(blurred, reference=str(tmp_path / "real.npy"), metrics="fid", cache_dir=tmp_path)
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-3)


def test_shipped_weights_reach_accuracy_on_the_holdout(holdout):
    net, meta = load_mnist_weights()
    assert accuracy(net, *holdout) >= 0.985
    # the weights record which images trained them: the seeded 9k slice of the test split
    assert (meta["dataset"], meta["split"], meta["holdout"], meta["n_train"]) == ("mnist", "test", 1000, 9000)
    assert meta["indices_sha256"] == indices_sha256(holdout_split(10000, 1000)[0])
    assert meta["command"].startswith("zoo eval-net train --out zoo/assets/mnist_cnn.pt")


def test_unseen_reference_gives_no_overlap_warning(holdout, cache):
    r = evaluate(holdout[0][:500], reference="holdout", data=DATA, cache_dir=cache, metrics="fid")
    assert r["warnings"] == [] and r["n_reference"] == 1000 and r["fid"] < 5


# --- images in, errors out --------------------------------------------------------------------------
@pytest.mark.slow
def test_images_from_png_folder_and_npz_agree(holdout, tmp_path, cache):
    x = holdout[0][:300]
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(x):
        save_image(img.float() / 255, folder / f"{i:04d}.png")
    np.savez(tmp_path / "x.npz", images=x.permute(0, 2, 3, 1).numpy())           # uint8 NHWC
    np.save(tmp_path / "x.npy", x.float().numpy() / 255)                            # float NCHW in [0, 1]
    results = []
    for path in (folder, tmp_path / "x.npz", tmp_path / "x.npy"):
        r = cli("eval", "--images", path, *CLI_DATA, "--metrics", "fid,is,kid", "--cache-dir", cache, "--json")
        assert r.exit_code == 0, r.output
        results.append(json.loads(r.stdout))
    assert {"fid", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall", "extractor",
            "n"} <= set(results[0])
    assert [r["n"] for r in results] == [300] * 3
    assert results[0]["fid"] == pytest.approx(results[1]["fid"], rel=1e-6)
    assert results[1]["fid"] == pytest.approx(results[2]["fid"], rel=1e-6)


@pytest.mark.parametrize("case, needle", [
    ("nan", "NaN"), ("range", "must be in [0, 1]"), ("shape", "channels"), ("empty_array", "no images"),
    ("empty_folder", "no images"), ("keys", "name the images 'images'"), ("missing", "does not exist"),
])
def test_bad_images_are_one_line_errors(case, needle, tmp_path, cache):
    path = tmp_path / "x.npz"
    if case == "nan":
        a = np.random.rand(10, 28, 28).astype(np.float32)
        a[3, 4, 5] = np.nan
        np.savez(path, images=a)
    elif case == "range":
        np.savez(path, images=np.full((10, 28, 28), 2.0, np.float32))
    elif case == "shape":
        np.savez(path, images=np.zeros((10, 5, 28, 28), np.uint8))
    elif case == "empty_array":
        np.savez(path, images=np.zeros((0, 28, 28), np.uint8))
    elif case == "empty_folder":
        path = tmp_path / "empty"
        path.mkdir()
    elif case == "keys":
        np.savez(path, a=np.zeros((10, 28, 28), np.uint8), b=np.zeros((10, 28, 28), np.uint8))
    elif case == "missing":
        path = tmp_path / "nope.npz"
    assert_one_line_error(cli("eval", "--images", path, *CLI_DATA, "--cache-dir", cache), needle)


def test_bad_metric_and_reference_are_clear(holdout, cache):
    with pytest.raises(ZooError, match="unknown metric 'fdi'.*did you mean 'fid'"):
        score(holdout[0][:50], cache, metrics="fdi")
    with pytest.raises(ZooError, match="--reference 'tset' is neither a split.*did you mean 'test'"):
        score(holdout[0][:50], cache, reference="tset")


def test_inception_offline_without_weights_is_one_clear_line(tmp_path, monkeypatch, holdout):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))   # an empty hub cache
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    np.save(tmp_path / "x.npy", holdout[0][:20].numpy())
    r = cli("eval", "--images", tmp_path / "x.npy", *CLI_DATA, "--extractor", "inception")
    assert_one_line_error(r, INCEPTION_FILE, "https://github.com/toshas/torch-fidelity/releases/",
                          str(tmp_path / "torch" / "hub" / "checkpoints"), "--inception-weights PATH")
    r = cli("eval", "--images", tmp_path / "x.npy", *CLI_DATA, "--inception-weights", tmp_path / "missing.pth")
    assert_one_line_error(r, "missing.pth", "does not exist")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    r = cli("eval", "--images", tmp_path / "x.npy", *CLI_DATA, "--inception-weights", tmp_path / "junk.pth")
    assert_one_line_error(r, "junk.pth", "is not torch-fidelity's Inception weights")


def test_extractors_come_from_the_plugin_hook():
    reg = registry()
    assert {"mnist", "inception"} <= set(reg.extractors)
    assert reg.extractors["mnist"].plugin == "extractors"


# --- runs -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_eval_run_writes_eval_json_and_quick_fid_agrees(toy, tmp_path, cache):
    run = tmp_path / "run"
    zoo.train("toy", out=run, sets=MNIST_SETS + ["trainer.max_steps=10"])
    r = cli("eval", run, "-n", 300, "--metrics", "fid,is,kid,prc", "--cache-dir", cache)
    assert r.exit_code == 0, r.output
    assert "FID" in r.stdout and "precision" in r.stdout and "wrote" in r.stdout
    saved = json.loads((run / "eval.json").read_text())
    assert saved["n"] == 300 and saved["extractor"] == "mnist" and saved["model"] == "toy" and saved["seed"] == 0
    assert saved["fid"] > 0 and saved["zoo"] == zoo.__version__ and saved["seconds"] > 0
    assert "training images" in saved["reference"] and saved["n_reference"] == 9000
    model = zoo.load_run(run)
    assert quick_fid(model, model.cfg, n=300) == pytest.approx(saved["fid"], rel=1e-6)  # same seed, same samples
    r = cli("eval", run, "-n", 300, "--metrics", "fid", "--reference", "holdout", "--cache-dir", cache, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_reference"] == 1000


def test_trainer_logs_periodic_fid(toy, tmp_path, cache, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(cache))
    run = tmp_path / "run"
    zoo.train("toy", out=run, sets=MNIST_SETS + ["trainer.max_steps=10", "trainer.eval_every=5",
                                                  "trainer.eval_n=200"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    fids = [r for r in rows if "fid" in r]
    assert [r["step"] for r in fids] == [5, 10] and all(r["fid"] > 0 for r in fids)
    assert (run / "checkpoints" / "best.pt").is_file()


@pytest.mark.slow
def test_eval_net_train_is_deterministic_and_records_its_data(tmp_path):
    outs = [tmp_path / "a.pt", tmp_path / "b.pt"]
    for out in outs:
        r = cli("eval-net", "train", "--steps", 3, "--data", "test-holdout", "--out", out)
        assert r.exit_code == 0, r.output
    (net_a, meta_a), (net_b, meta_b) = (load_mnist_weights(p) for p in outs)
    for k, v in net_a.state_dict().items():
        assert torch.equal(v, net_b.state_dict()[k]), k
    assert meta_a["split"] == "test" and meta_a["holdout"] == 1000 and meta_a["n_train"] == 9000
    blob = torch.load(outs[0], weights_only=True)
    assert set(blob) == {"state_dict", "meta"}
    assert all(isinstance(v, (str, int, float, dict, type(None))) for v in blob["meta"].values())


# --- CLI-level checks (subprocess: exit code, one line, no traceback) -------------------------------
def assert_subprocess_error(r, *needles):
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.slow
def test_images_pointing_at_a_run_directory_says_use_zoo_eval_run(tmp_path):
    run = tmp_path / "runs" / "vae"
    (run / "checkpoints").mkdir(parents=True)
    (run / "samples").mkdir()
    (run / "config.yaml").write_text("model_name: vae\n")
    for i in range(51):   # the 51 sample-grid PNGs that were once scored as 51 samples
        save_image(torch.rand(3, 62, 62), run / "samples" / f"step-{i:06d}.png")
    save_image(torch.rand(3, 62, 62), run / "samples.png")
    before = sorted(p.name for p in run.rglob("*"))
    r = zoo_cli("eval", "--images", run)
    assert_subprocess_error(r, f"'{run}' is a zoo run directory", f"`zoo eval {run}`")
    r = zoo_cli("eval", "--images", run / "samples")
    assert_subprocess_error(r, "is the samples folder of a zoo run directory", f"`zoo eval {run}`")
    assert sorted(p.name for p in run.rglob("*")) == before   # no debris (no eval.json)


@pytest.mark.slow
def test_too_few_images_for_fid_is_a_warning_in_the_output_and_the_json(holdout, tmp_path, cache):
    np.save(tmp_path / "few.npy", holdout[0][:100].numpy())
    r = zoo_cli("eval", "--images", tmp_path / "few.npy", *CLI_DATA, "--reference", "holdout", "--metrics", "fid",
                "--cache-dir", cache, "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: FID from 100 images is not meaningful"), r.stderr
    assert "at least 256 on each side (2 x 128" in lines[0]
    assert out["warnings"] == [lines[0][len("warning: "):]] and out["fid_min_images"] == 256 and out["fid"] > 0
    # at the floor, no warning
    enough = evaluate(holdout[0][:256], reference="holdout", data=DATA, cache_dir=cache, metrics="fid")
    assert enough["warnings"] == []


# --- ± only where it means something -------------------------------------------------------------
def test_plus_minus_only_where_the_spread_means_something():
    from zoo.cli_eval import result_table
    base = {k: None for k in ("fid", "precision", "recall")}
    one_split = result_table({**base, "is_mean": 5.6754, "is_std": 0.0, "is_splits": 1, "n": 1000,
                              "kid_mean": 0.012345, "kid_std": 0.0, "kid_subsets": 100, "kid_subset_size": 1000,
                              "kid_subsets_differ": False})
    assert "±" not in one_split
    assert "IS         5.675 (1 split of 1000 images; a spread needs 2000 or more)" in one_split
    assert "KID        0.01235 (1 subset: all 1000 images on both sides, no spread)" in one_split
    ten = result_table({**base, "is_mean": 5.6754, "is_std": 0.1234, "is_splits": 10, "n": 10000,
                        "kid_mean": 0.0012345, "kid_std": 0.0000456, "kid_subsets": 100, "kid_subset_size": 1000,
                        "kid_subsets_differ": True})
    assert "IS         5.68 ± 0.12 (std over 10 splits)" in ten
    assert "KID        0.001234 ± 0.000046 (std over 100 subsets of 1000)" in ten   # no "± 0.00000"


@pytest.mark.slow
def test_cli_table_shows_splits_and_subsets(holdout, cache):
    x = load_images(Config(DATA), "train")[:2000]    # 2 IS splits of 1000
    np.save(cache / "two-thousand.npy", x.numpy())
    r = cli("eval", "--images", cache / "two-thousand.npy", *CLI_DATA, "--reference", "holdout",
            "--metrics", "is,kid", "--cache-dir", cache)
    assert r.exit_code == 0, r.output
    is_row = next(line for line in r.stdout.splitlines() if line.startswith("IS "))
    kid_row = next(line for line in r.stdout.splitlines() if line.startswith("KID "))
    assert is_row.endswith("(std over 2 splits)") and " ± " in is_row
    assert kid_row.endswith("(std over 100 subsets of 1000)") and " ± 0.00000 " not in kid_row


# --- mode coverage of digits ---------------------------------------------------------------------
def test_modes_of_real_digits_and_of_one_digit_copied(holdout, cache):
    real = score(holdout[0], cache, metrics="modes", reference="holdout")
    assert real["modes"] == 10 and real["class_kl"] < 0.02 and real["mean_confidence"] > 0.95
    assert sum(real["modes_histogram"]) == pytest.approx(1.0, abs=1e-3) and real["modes_min_share"] == 0.02
    one = score(holdout[0][:1].expand(500, -1, -1, -1), cache, metrics="modes", reference="holdout")
    assert one["modes"] == 1 and one["class_kl"] == pytest.approx(np.log(10), abs=1e-9)
    assert sorted(one["modes_histogram"])[-1] == 1.0
    # a collapse onto two digits: 2 modes, KL = log 5
    threes, sevens = holdout[0][holdout[1] == 3], holdout[0][holdout[1] == 7]
    k = min(len(threes), len(sevens))
    r = score(torch.cat([threes[:k], sevens[:k]]), cache, metrics="modes", reference="holdout")
    assert r["modes"] == 2 and r["class_kl"] == pytest.approx(np.log(5), abs=0.1)   # ~2% misread digits


# --- the extractor a dataset declares --------------------------------------------------------------
DIGIT_PLUGIN = """
from zoo import hookimpl
from zoo_plugins.datasets import mnist


def inverted(root, split, download):
    images, labels = mnist(root, split, download)
    return 255 - images, labels


@hookimpl
def zoo_register_datasets(register):
    register("inverted-mnist", inverted, channels=1, image_size=28, description="MNIST, black on white")
    try:
        register("digits", mnist, channels=1, image_size=28, description="MNIST again", extractor="mnist")
    except TypeError:   # a zoo whose dataset registrar takes no extractor yet: the test sets it
        register("digits", mnist, channels=1, image_size=28, description="MNIST again")
"""


@pytest.fixture
def digit_plugin(tmp_path_factory, monkeypatch):
    from plugin_env import make_dist
    site = make_dist(tmp_path_factory.mktemp("site"), "zoo-digits", {"digits": "digitzoo"}, {"digitzoo": DIGIT_PLUGIN})
    monkeypatch.syspath_prepend(str(site))
    reg = registry(reload=True)
    assert not reg.failures, reg.failures
    entry = reg.datasets["digits"]
    if getattr(entry, "extractor", None) is None:
        entry.extractor = "mnist"
    yield site
    sys.modules.pop("digitzoo", None)
    registry(reload=True)


@pytest.mark.slow
def test_extractor_not_made_for_the_data_warns(digit_plugin, holdout, cache):
    inverted = {**DATA, "name": "inverted-mnist"}
    with pytest.warns(UserWarning, match="made for mnist, not for 'inverted-mnist'"):
        r = evaluate(255 - holdout[0], reference="holdout", data=inverted, cache_dir=cache, metrics="fid,modes")
    assert r["extractor"] == "mnist"
    mismatch = [w for w in r["warnings"] if "made for" in w]
    assert mismatch == ["the 'mnist' feature extractor was made for mnist, not for 'inverted-mnist': its features "
                        "and classes may not fit these images, so the scores can mislead -- 'inverted-mnist' "
                        "declares no extractor: use a general one (--extractor inception) or one made for it (a "
                        "dataset plugin names it when it registers the dataset)"]
    assert r["modes"] is None and r["class_kl"] is None and "not for 'inverted-mnist'" in r["modes_note"]
    # a dataset that declares the extractor: no warning, and the digits classifier counts its modes
    declared = evaluate(holdout[0], reference="holdout", data={**DATA, "name": "digits"}, cache_dir=cache,
                        metrics="fid,modes")
    assert declared["warnings"] == [] and declared["modes"] == 10


@pytest.mark.slow
def test_cli_warns_once_about_the_extractor_in_output_and_json(digit_plugin, holdout, tmp_path, cache):
    import os
    np.save(tmp_path / "inverted.npy", (255 - holdout[0][:300]).numpy())
    env = {"PYTHONPATH": os.pathsep.join([str(digit_plugin), os.environ.get("PYTHONPATH", "")])}
    r = zoo_cli("eval", "--images", tmp_path / "inverted.npy", "--set", "data.name=inverted-mnist", *CLI_DATA,
                "--reference", "holdout", "--metrics", "fid", "--cache-dir", cache, "--json", env=env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: the 'mnist' feature extractor was made for mnist, "
                                                   "not for 'inverted-mnist'"), r.stderr
    assert json.loads(r.stdout)["warnings"] == [lines[0][len("warning: "):]]


# --- sampling options: --option KEY=VALUE, --sampler/--steps/--eta as shortcuts -----------------------
OPTION_PLUGIN = """
from zoo import Key, hookimpl
from zoo.contract import randn, to_unit
from toyzoo import Toy


class ToyTemperature(Toy):
    sample_options = {"temperature": Key(1.0, "scale of the latent noise", gt=0)}

    def sample(self, n, generator, temperature=1.0):
        z = randn((n, self.cfg.model.width, *[s // 2 for s in self.image_shape[1:]]), generator, self.device)
        return to_unit(self.dec(z * temperature))


@hookimpl
def zoo_register_models(register):
    register(ToyTemperature, name="toytemp")
"""


@pytest.fixture(scope="module")
def temp_run(tmp_path_factory, mnist_root):
    from plugin_env import make_dist
    site = toy_dist(tmp_path_factory.mktemp("optsite"))
    make_dist(site, "zoo-toytemp", {"toytemp": "toytemp"}, {"toytemp": OPTION_PLUGIN})
    sys.path.insert(0, str(site))
    registry(reload=True)
    run = tmp_path_factory.mktemp("toytemp") / "run"
    zoo.train("toytemp", out=run, sets=MNIST_SETS + ["trainer.max_steps=2"])
    yield run, site
    sys.path.remove(str(site))
    for m in ("toyzoo", "toytemp"):
        sys.modules.pop(m, None)
    registry(reload=True)


def test_option_reaches_the_models_declared_sampling_options(temp_run, cache):
    run, _ = temp_run
    fids = {}
    for t in ("0.25", "2"):
        r = cli("eval", run, "-n", 300, "--metrics", "fid", "--option", f"temperature={t}", "--cache-dir", cache,
                "--json")
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["sample_options"] == {"temperature": float(t)}
        fids[t] = out["fid"]
    assert fids["0.25"] != fids["2"]


@pytest.mark.parametrize("args, needle", [
    (["--option", "temprature=1"], "has no sampling option 'temprature' (did you mean 'temperature'?)"),
    (["--option", "temperature=-1"], "(in --option) must be > 0"),
    (["--option", "temperature=hot"], "temperature in --option expects float"),
    (["--steps", "5"], "model 'toytemp' has no sampling option 'steps' (its options: temperature"),
    (["--steps", "5", "--option", "steps=3"], "--steps and --option steps=... both set 'steps'"),
    (["--option", "temperature"], "is not KEY=VALUE"),
])
def test_bad_options_are_one_line_errors_before_any_work(temp_run, args, needle):
    run, _ = temp_run
    (run / "eval.json").unlink(missing_ok=True)
    assert_one_line_error(cli("eval", run, *args), needle)
    assert not (run / "eval.json").exists()


@pytest.mark.slow
def test_bad_option_from_the_shell(temp_run):
    run, site = temp_run
    r = zoo_cli("eval", run, "--option", "temprature=1", env={"PYTHONPATH": str(site)})
    assert_subprocess_error(r, "did you mean 'temperature'?")

"""Metrics are a registry filled through the `zoo_register_metrics` hook: a plugin's metric reaches
`zoo eval` (table and --json), `zoo compare`'s leaderboard and report.html; density/coverage is built in."""
import json

import pytest
import torch
from click.testing import CliRunner
from conftest import MNIST_SETS

import zoo
from zoo import hookimpl
from zoo.cli import main
from zoo.config import Config
from zoo.data import load_images
from zoo.evaluate import evaluate
from zoo.metrics import Score

DATA = {"name": "mnist", "split": "test", "holdout": 1000}


def ink(inputs):
    """The share of lit pixels: a toy metric that needs only the images."""
    return {"ink": float((inputs.images > 127).double().mean()), "ink_note": "pixels above 127"}


class InkPlugin:
    @hookimpl
    def zoo_register_metrics(self, register):
        register("ink", ink, (Score("ink", "ink share", "down", 4),), needs=("images",), description="lit pixels")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:the 'mnist' feature extractor was trained on")
def test_a_plugins_metric_reaches_eval_json_the_leaderboard_and_the_report(toy, zoo_registry, tmp_path):
    reg = zoo_registry("datasets", "extractors", "metrics", "toy", ink=InkPlugin())
    assert not reg.failures and list(reg.metrics)[-1] == "ink" and reg.metrics["ink"].plugin == "ink"
    run = tmp_path / "run"
    zoo.train("toy", out=run, sets=MNIST_SETS + ["trainer.max_steps=5"])
    cache = ["--cache-dir", tmp_path / "stats"]
    r = cli("eval", run, "-n", 300, "--metrics", "fid,ink", *cache, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert 0 <= got["ink"] <= 1 and got["ink_note"] == "pixels above 127" and got["metrics"] == ["fid", "ink"]
    assert got["is_mean"] is None  # not asked for
    r = cli("eval", run, "-n", 300, "--metrics", "ink", *cache)
    assert r.exit_code == 0 and f"ink share  {got['ink']:.4f}" in r.stdout, r.output
    r = cli("eval", run, "--metrics", "inc")
    assert r.exit_code == 2 and "unknown metric 'inc' (did you mean 'ink'?)" in r.output
    r = cli("compare", run, "--out", tmp_path / "cmp", "-n", 300, "--metrics", "fid,ink")
    assert r.exit_code == 0, r.output
    md = (tmp_path / "cmp" / "leaderboard.md").read_text()
    assert "| modes ↑ | class KL ↓ | ink share ↓ | params |" in md and f"| {got['ink']:.4f} |" in md
    row = json.loads((tmp_path / "cmp" / "leaderboard.json").read_text())["rows"][0]
    assert row["ink"] == pytest.approx(got["ink"]) and row["is_mean"] is None
    assert "<th>ink share ↓</th>" in (tmp_path / "cmp" / "report.html").read_text()


@pytest.mark.filterwarnings("ignore:the 'mnist' feature extractor was trained on")
def test_density_and_coverage_order_real_and_noise(mnist_root, tmp_path):
    real = load_images(Config(DATA), "holdout")
    noise = torch.randint(0, 256, real.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    cache = tmp_path / "stats"
    good = evaluate(real, data=DATA, cache_dir=cache, metrics="density")
    bad = evaluate(noise, data=DATA, cache_dir=cache, metrics="density")
    assert good["metrics"] == ["density"] and good["fid"] is None and good["dc_samples"] == 1000
    assert 0.7 < good["density"] < 1.5 and good["coverage"] > 0.8   # unseen real digits: about 1, most balls hit
    assert bad["density"] < 0.05 and bad["coverage"] < 0.05


def test_the_extractor_warning_is_one_short_line_once_per_command(capsys):
    import warnings

    from zoo.cli_compare import clean_warnings
    from zoo.evaluate import overlap_warning
    with clean_warnings():
        for n in (9000, 10000, 9000):  # the training images, then the whole test split, of two models
            warnings.warn(overlap_warning("mnist", {"overlap": 9000, "n": n}), stacklevel=1)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and len(lines[0]) < 200, lines
    assert lines[0] == ("warning: the 'mnist' feature extractor was trained on 9000 of the 9000 reference images, so "
                        "scores are optimistic -- avoid it with --reference holdout (images it never saw)")

"""`zoo compare`: equal-budget training, one scoring path, leaderboard files, a report a browser renders."""
import csv
import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from conftest import MNIST_SETS
from zoo.cli import main


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "report"
    args = ["compare", "ae", "gan", "no-such-model", "--out", str(out), "--steps", "40", "-n", "300",
            "--preset", "tiny", "--reference", "holdout", "--reference", "test", "--title", "tiny comparison"]
    for s in MNIST_SETS:
        args += ["--set", s]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return out, res.output


def test_compare_writes_every_report_file(report):
    out, output = report
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "samples.png", "curves.png", "report.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "runs" / "ae" / "checkpoints" / "last.pt").is_file()
    assert "| 1 |" in output  # the table is printed too


def test_leaderboard_ranks_by_fid_and_lists_the_failure(report):
    out, _ = report
    data = json.loads((out / "leaderboard.json").read_text())
    rows = {r["model"]: r for r in data["rows"]}
    assert set(rows) == {"ae", "gan", "no-such-model"}
    assert "no-such-model" in rows["no-such-model"]["error"] and rows["no-such-model"]["fid"] is None
    scored = [r for r in data["rows"] if r["fid"] is not None]
    assert [r["model"] for r in scored] == sorted(rows_ok := ["ae", "gan"], key=lambda m: rows[m]["fid"])
    assert data["rows"][-1]["model"] == "no-such-model"  # failures sort last
    for m in rows_ok:
        r = rows[m]
        assert r["fid"] > 0 and r["fid_test"] > 0 and 1 <= r["is_mean"] <= 10 and 0 <= r["precision"] <= 1
        assert r["steps"] == 40 and r["params"] > 0 and r["sample_seconds_per_1000"] > 0
    ctx = data["context"]
    assert "held-out" in ctx["reference (FID, KID, precision/recall)"]
    assert "test split (all images)" in ctx["reference of 'FID vs test'"]
    assert ctx["budget"] == "40 steps" and ctx["device"] == "CPU"
    with open(out / "leaderboard.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["model"] for r in csv_rows] == [r["model"] for r in data["rows"]] and "fid_test" in csv_rows[0]
    md = (out / "leaderboard.md").read_text()
    assert "FID vs test" in md and "![samples](samples.png)" in md


def test_runs_are_reused_and_run_directories_are_accepted(report, tmp_path):
    out, _ = report
    res = CliRunner().invoke(main, ["compare", str(out / "runs" / "ae"), "--out", str(tmp_path / "again"),
                                    "-n", "200", "--metrics", "fid"])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "again" / "leaderboard.json").read_text())["rows"]
    assert rows[0]["model"] == "ae" and rows[0]["fid"] > 0 and rows[0]["is_mean"] is None


def test_bad_preset_spec_is_a_one_line_error(tmp_path):
    res = CliRunner().invoke(main, ["compare", "ae", "--out", str(tmp_path), "--preset", "vae=tiny"])
    assert res.exit_code == 2 and "preset given for vae, which is not among the models compared" in res.output
    assert "Traceback" not in res.output


def test_report_html_renders_in_a_headless_browser(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        pytest.skip("no chromium here (.ci/run installs it)")
    out, _ = report
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--hide-scrollbars", "--window-size=1200,1400", f"--screenshot={shot}",
                    (out / "report.html").as_uri()], capture_output=True, timeout=120)
    assert shot.is_file(), "chromium wrote no screenshot"
    from PIL import Image
    img = Image.open(shot).convert("L")
    hist = img.histogram()
    # a rendered page: mostly white background, but real content (table text, sample grids, plots)
    dark = sum(hist[:128]) / sum(hist)
    assert 0.005 < dark < 0.6, dark
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<table id=\"leaderboard\">" in html

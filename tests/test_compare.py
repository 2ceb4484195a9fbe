"""`zoo compare`: checks before training, equal-budget training with a periodic FID, best and last checkpoints,
one scoring path, leaderboard files, per-model loss panels, the memorisation check, a report a browser renders."""
import csv
import itertools
import json
import shutil
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from conftest import MNIST_SETS
from helpers import zoo_cli, zoo_env

from zoo.cli import main
from zoo.registry import model_config

SETS = [a for s in MNIST_SETS for a in ("--set", s)]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(stderr: str, *parts):
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for p in parts:
        assert p in lines[0], (p, lines[0])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """ae and gan trained 40 steps (a periodic FID every 5, as --set), plus a run whose checkpoint is broken: it
    fails."""
    base = tmp_path_factory.mktemp("compare")
    broken = base / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.yaml").write_text(model_config("vae", preset="tiny", sets=MNIST_SETS).to_yaml())
    (broken / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    out = base / "report"
    res = zoo_cli("compare", "ae", "gan", broken, "--out", out, "--steps", 40, "-n", 300, "--preset", "tiny",
                  "--reference", "holdout", "--reference", "test", "--title", "tiny comparison", *SETS,
                  "--set", "trainer.eval_every=5", "--set", "trainer.eval_n=300")
    return out, res


@pytest.mark.slow
def test_a_failing_model_exits_nonzero_and_the_leaderboard_is_still_written(report):
    out, res = report
    assert res.returncode == 1, res.stderr
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "samples.png", "curves.png",
                 "memorisation.png", "report.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "runs" / "ae" / "checkpoints" / "last.pt").is_file()
    assert "| 1 |" in res.stdout  # the table is printed too
    assert res.stderr.strip().splitlines()[-1].startswith("error: 1 of 3 models failed (broken)")
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_progress_lines_and_warnings_are_one_clean_line_each(report):
    _, res = report
    err = res.stderr
    assert "[compare] ae (1/2): training into" in err and "[compare] ae (1/2): trained 40 steps in" in err
    assert "[compare] gan (2/2): trained 40 steps" in err and "left for" in err  # an ETA once one model is timed
    assert "[compare] scoring gan:" in err
    # --reference test: the mnist extractor trained on those images -- the harness warns, compare prints one line
    warned = [line for line in err.splitlines() if "feature extractor was trained on" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: ")  # once, though both models raised it
    assert "UserWarning" not in err and "warnings.warn" not in err and ".py:" not in err


@pytest.mark.slow
def test_leaderboard_ranks_best_checkpoints_and_reports_the_last(report):
    out, _ = report
    data = json.loads((out / "leaderboard.json").read_text())
    rows = {r["model"]: r for r in data["rows"]}
    assert set(rows) == {"ae", "gan", "broken"}
    assert rows["broken"]["error"] and rows["broken"]["fid"] is None and data["rows"][-1]["model"] == "broken"
    scored = [r["model"] for r in data["rows"] if r["fid"] is not None]
    assert scored == sorted(["ae", "gan"], key=lambda m: rows[m]["fid"])
    for m in scored:
        r = rows[m]
        assert r["fid"] > 0 and r["fid_test"] > 0 and 1 <= r["is_mean"] <= 10 and 0 <= r["precision"] <= 1
        assert r["steps"] == 40 and r["params"] > 0 and r["sample_seconds_per_1000"] > 0
        # the periodic FID: every 5 of 40 steps, so 8 points; the best of them is the checkpoint ranked
        curve = r["fid_curve"]
        assert [p[0] for p in curve] == [5, 10, 15, 20, 25, 30, 35, 40]
        assert r["best_step"] == min(curve, key=lambda p: p[2])[0]
        assert r["fid_last"] > 0 and (r["fid_last"] == r["fid"]) == (r["best_step"] == 40)
        assert r["bits_per_dim"] is None  # not asked for (--nll)
        assert r["modes"] is not None  # mode coverage is measured by default
        assert r["sample_options"] == {}
    ctx = data["context"]
    assert "held-out" in ctx["reference (FID, KID, precision/recall)"]
    assert "test split (all images)" in ctx["reference of 'FID vs test'"]
    assert ctx["budget"] == "40 steps" and ctx["device"] == "CPU"
    assert "best by periodic FID where a run logged one (runs trained here: up to 8 points of up to 300 samples, " \
        "taking at most 25% of the training time" in ctx["checkpoint ranked"]
    with open(out / "leaderboard.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["model"] for r in csv_rows] == [r["model"] for r in data["rows"]]
    assert {"fid", "fid_last", "best_step", "fid_test", "bits_per_dim", "modes", "class_kl"} <= set(csv_rows[0])
    md = (out / "leaderboard.md").read_text()
    assert "FID ↓ (best ckpt) | FID last | best step | FID vs test" in md and "![samples](samples.png)" in md


@pytest.mark.slow
def test_curves_have_one_loss_panel_per_model_and_fid_for_every_model(report, tmp_path):
    from zoo.compare_report import curves_figure
    out, _ = report
    rows = [{"model": m, "_run": str(out / "runs" / m)} for m in ("ae", "gan")] + [{"model": "broken"}]
    drawn = curves_figure(rows, tmp_path / "curves.png")
    assert drawn == {"fid": ["ae", "gan"], "loss_panels": ["ae", "gan"]}
    assert (tmp_path / "curves.png").stat().st_size > 0


@pytest.mark.slow
def test_memorisation_section_pairs_samples_with_training_images(report):
    out, _ = report
    rows = {r["model"]: r for r in json.loads((out / "leaderboard.json").read_text())["rows"]}
    for m in ("ae", "gan"):
        near = rows[m]["nearest"]
        assert len(near["indices"]) == len(near["distances"]) == 8 and near["searched"] == 9000
        assert all(0 <= i < 9000 for i in near["indices"]) and near["typical_distance"] > 0
    page = (out / "report.html").read_text()
    assert '<h2 id="memorisation">' in page and 'id="nearest"' in page


@pytest.mark.slow
def test_nearest_training_image_of_a_training_image_is_itself():
    from zoo.evaluate import reference_for_config
    from zoo.memorisation import nearest_training_images
    cfg = model_config("ae", preset="tiny", sets=MNIST_SETS)
    train, _ = reference_for_config(cfg).load()
    pick = [0, 17, 4321, len(train) - 1]
    for use_cache in (True, False):  # the harness's cached features, and every image's features extracted anew
        r = nearest_training_images(train[pick], cfg, use_cache=use_cache)
        assert r["indices"] == pick and r["searched"] == len(train)
        assert max(r["distances"]) < 0.01 * r["typical_distance"]
        assert torch.equal(r["neighbours"], train[pick])
    shifted = torch.roll(train[pick], 3, dims=-1)  # not a copy any more: farther away than a copy
    assert min(nearest_training_images(shifted, cfg)["distances"]) > 0.05 * r["typical_distance"]


def test_new_columns_show_values_or_a_dash(tmp_path):
    from zoo.compare_report import write_reports
    rows = [{"model": "vae", "fid": 10.0, "fid_last": 11.0, "best_step": 300, "bits_per_dim": 1.2345,
             "bits_per_dim_bound": "elbo", "modes": 10, "class_kl": 0.0123, "error": ""},
            {"model": "gan", "fid": 20.0, "fid_last": 20.0, "best_step": 400, "error": ""}]
    files = write_reports(rows, tmp_path, "t", {"k": "v"})
    md = files["md"].read_text()
    assert "| bits/dim ↓ | modes ↑ | class KL ↓ |" in md
    assert "| 1.234 (elbo) | 10 | 0.012 |" in md and "| — | — | — |" in md
    data = json.loads(files["json"].read_text())["rows"]
    assert data[0]["bits_per_dim"] == 1.2345 and data[0]["modes"] == 10 and data[1]["class_kl"] is None
    with open(files["csv"]) as f:
        got = list(csv.DictReader(f))
    assert got[0]["bits_per_dim_bound"] == "elbo" and got[1]["modes"] == ""
    page = files["html"].read_text()
    assert "<th>bits/dim ↓</th>" in page and "<td>1.234 (elbo)</td>" in page and "<td>—</td>" in page


@pytest.mark.slow
def test_a_typo_fails_at_once_before_anything_trains(tmp_path):
    res = zoo_cli("compare", "ae", "vea", "--out", tmp_path / "out", "--steps", 40, *SETS)
    assert res.returncode == 2
    one_line_error(res.stderr, "unknown model 'vea'", "did you mean 'vae'?")
    assert not (tmp_path / "out").exists() and "[compare]" not in res.stderr


@pytest.mark.parametrize("args, parts", [
    (["ae", "--preset", "ae=tinyy"], ["no preset 'tinyy'", "did you mean 'tiny'?"]),
    (["ae", "--set", "model.latnet=3"], ["unknown config key 'model.latnet'", "did you mean 'model.latent'"]),
    (["ae", "gan", "--set", "trainer.batch_size=-4"], ["trainer.batch_size=-4", "must be >= 1"]),
    (["ae", "gan", "--option", "steps=3"], ["no model compared declares the sampling option 'steps'",
                                            "ae: none; gan: none"]),
    (["ae", "ddpm", "--option", "stpes=3"], ["sampling option 'stpes'", "did you mean 'steps'"]),
    (["ddpm", "--option", "steps=0"], ["steps"]),
    (["ddpm", "--sampler", "ddim", "--option", "sampler=ddpm"], ["--sampler and --option sampler=... both"]),
    (["ae", "--metrics", "is,kid"], ["ranks by FID"]),
    (["ae", "--extractor", "mnsit"], ["mnsit", "did you mean 'mnist'?"]),
    (["ae", "--reference", "tset"], ["--reference 'tset'"]),
    (["ae", "--preset", "vae=tiny"], ["preset given for vae, which is not among the models compared"]),
    (["ae", "--nll-option", "timesteps=5"], ["--nll-option applies to the likelihood: add --nll"]),
    (["ae", "gan", "--nll", "--nll-option", "timesteps=5"], ["no compared model's likelihood takes 'timesteps'"]),
    (["ddpm", "vae", "--nll", "--nll-option", "timesteps=0"], ["timesteps=0", "must be >= 1"]),
])
def test_bad_input_is_one_line_before_any_work(tmp_path, args, parts):
    res = invoke("compare", *args, "--out", tmp_path / "out", "--steps", 40, *SETS)
    assert res.exit_code == 2, res.output
    for p in parts:
        assert p in res.output, (p, res.output)
    assert "Traceback" not in res.output and "[compare]" not in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_options_go_only_to_models_that_declare_them_and_runs_are_reused(report, tmp_path):
    out, _ = report
    again = tmp_path / "again"
    res = invoke("compare", out / "runs" / "ae", "ddpm", "--out", again, "--steps", 4, "-n", 300, "--preset",
                 "ddpm=tiny", "--option", "steps=2", "--fid-points", 0, "--metrics", "fid", "--nll", "--nll-n", 8,
                 "--nll-option", "timesteps=3", *SETS)
    assert res.exit_code == 0, res.output
    rows = {r["model"]: r for r in json.loads((again / "leaderboard.json").read_text())["rows"]}
    # --nll-option reached the DDPM's likelihood (a 3-term estimate: 4 network calls per image); the AE has none
    assert rows["ddpm"]["nll_n"] == 8 and rows["ddpm"]["bits_per_dim"] > 0 and rows["ae"]["bits_per_dim"] is None
    assert rows["ddpm"]["nll_options"] == {"timesteps": 3}
    assert rows["ddpm"]["sample_options"] == {"steps": 2} and rows["ae"]["sample_options"] == {}
    assert not rows["ae"]["error"] and not rows["ddpm"]["error"] and rows["ae"]["is_mean"] is None
    assert rows["ddpm"]["best_step"] is None and rows["ddpm"]["fid_last"] == rows["ddpm"]["fid"]  # periodic FID off
    assert rows["ae"]["best_step"] is not None  # the reused run kept its best.pt
    # the same settings again: the finished run is reused, nothing trains
    res = invoke("compare", "ddpm", "--out", again, "--steps", 4, "-n", 300, "--preset", "ddpm=tiny",
                 "--fid-points", 0, "--metrics", "fid", *SETS)
    assert res.exit_code == 0 and "already trained" in res.output and "training into" not in res.output
    # other settings into the same folder: refused before anything trains, rather than mislabelled
    res = invoke("compare", "ddpm", "--out", again, "--steps", 8, "--preset", "ddpm=tiny", *SETS)
    assert res.exit_code == 2 and "trained by an earlier zoo compare with other settings" in res.output
    # zoo sample: --option checked against the run's model before anything loads
    r = invoke("sample", again / "runs" / "ddpm", "-n", 4, "--out", tmp_path / "g.png", "--option", "steps=2")
    assert r.exit_code == 0 and (tmp_path / "g.png").is_file()
    r = invoke("sample", out / "runs" / "ae", "-n", 4, "--out", tmp_path / "h.png", "--option", "steps=2")
    assert r.exit_code == 2 and "model 'ae' has no sampling option 'steps'" in r.output
    assert not (tmp_path / "h.png").exists()


@pytest.mark.slow
def test_a_model_that_fails_in_training_is_a_row_and_the_exit_code_is_1(toy, tmp_path):
    # model.fail_at turns toy's loss NaN at its 2nd call; toygan ignores it and trains
    res = invoke("compare", "toy", "toygan", "--out", tmp_path, "--steps", 6, "-n", 300, "--fid-points", 0,
                 "--metrics", "fid", "--set", "model.fail_at=2", *SETS)
    assert res.exit_code == 1, res.output
    assert "error: 1 of 2 models failed (toy)" in res.output and "Traceback" not in res.output
    rows = {r["model"]: r for r in json.loads((tmp_path / "leaderboard.json").read_text())["rows"]}
    assert "non-finite loss" in rows["toy"]["error"] and rows["toygan"]["fid"] > 0
    # a run compare did not see finish (Ctrl-C, a crash) is resumed by the same command, not taken as trained
    marker = tmp_path / "runs" / "toygan" / "compare.json"
    marker.write_text(marker.read_text().replace('"finished"', '"training"'))
    res = invoke("compare", "toygan", "--out", tmp_path, "--steps", 6, "-n", 300, "--fid-points", 0,
                 "--metrics", "fid", "--set", "model.fail_at=2", *SETS)
    assert res.exit_code == 0, res.output
    assert "[compare] toygan (1/1): resuming" in res.output and '"finished"' in marker.read_text()


def test_periodic_fid_plan_takes_fewer_samples_then_fewer_points_then_none():
    from zoo.fid_budget import FidCost, plan_fid
    cost = FidCost(fixed=1.0, per_image=0.01, min_n=256)  # 500 samples: 6 s; 256: 3.56 s

    def plan(seconds, steps=1000, points=8):
        return plan_fid(cost, train_seconds=seconds, steps=steps, points=points, n_max=500)
    p = plan(400)  # 100 s for FIDs: all 8 points of 500 samples
    assert (p.points, p.n, p.every) == (8, 500, 125) and p.points * p.seconds <= 0.25 * 400
    p = plan(80)  # 20 s: 3 points of 500
    assert (p.points, p.n) == (3, 500) and p.points * p.seconds <= 20
    p = plan(48)  # 12 s: 500 samples give 2 points, so fewer samples for 3 points (3 s + 1 s each)
    assert (p.points, p.n) == (3, 300) and p.points * p.seconds <= 12
    p = plan(40)  # 10 s: 3 points would need fewer than 256 samples (2 x the extractor's 128 features): 2 points
    assert (p.points, p.n) == (2, 256)
    p = plan(15)  # 3.75 s: one point, and never below 256 samples (2 x the extractor's 128 features)
    assert (p.points, p.n) == (1, 256)
    assert plan(14).points == 0  # 3.5 s: not even one
    assert plan(400, steps=5).points == 5 and plan(400, steps=5).every == 1
    assert plan(400, points=0).points == 0
    assert plan_fid(cost, train_seconds=400, steps=1000, points=8, n_max=500, share=0.5).points == 8


def test_the_users_own_periodic_fid_stands(toy):
    from zoo.compare import Entry, periodic_fid_sets
    said = []
    cfg = model_config("toy", sets=MNIST_SETS + ["trainer.max_steps=40", "trainer.eval_every=7"])
    sets = ["trainer.eval_every=7"]
    assert periodic_fid_sets(Entry("toy", "toy", None, cfg, "train"), sets, 8, 500, 1000, echo=said.append) == []
    assert said == ["[compare] toy: periodic FID as --set (trainer.eval_every=7), not bounded by --fid-share"]
    assert periodic_fid_sets(Entry("toy", "toy", None, cfg, "train"), [], 0, 500, 1000, echo=said.append) == []


def test_the_fids_at_fixed_minutes_come_out_of_the_share_and_take_fid_n_samples(toy, monkeypatch):
    """trainer.eval_at_minutes (a study's FID at 1/3/10/30 minutes) are taken whatever the plan: compare sets
    their time aside from --fid-share before planning the periodic points, caps all of them together, and
    gives them --fid-n samples also when the periodic FID is off."""
    import zoo.compare_train
    import zoo.fid_budget
    from zoo.compare import Entry, periodic_fid_sets
    from zoo.fid_budget import FidCost
    monkeypatch.setattr(zoo.compare_train, "step_seconds", lambda cfg: 0.1)  # 600 steps a minute
    monkeypatch.setattr(zoo.fid_budget, "measure_fid_cost", lambda cfg, n, options: (FidCost(0.0, 0.1, 256), 0.1))
    marks = ["trainer.eval_at_minutes=[1, 3, 30]", "trainer.max_minutes=10", "trainer.max_steps=null"]
    cfg = model_config("toy", sets=MNIST_SETS + marks)
    entry = Entry("toy", "toy", None, cfg, "train", settings={"fid_share": 0.25})
    said = []
    got = periodic_fid_sets(entry, marks, 8, 300, 1000, echo=said.append)
    # 25% of 10 min = 150 s; a FID of 300 samples takes 30 s; the 2 marks inside the 10 minutes take 60 s first,
    # so 3 periodic points (not 5), spread over 80% of the 6,000 steps; the cap is the whole 150 s
    assert got == ["trainer.eval_every=1600", "trainer.eval_max_minutes=2.5", "trainer.eval_n=300"], got
    assert "3 points beside the 2 at trainer.eval_at_minutes" in said[-1]
    assert periodic_fid_sets(entry, marks, 0, 300, 1000, echo=said.append) == ["trainer.eval_n=300"]
    assert periodic_fid_sets(entry, marks + ["trainer.eval_n=50"], 0, 300, 1000, echo=said.append) == []


def _timed_lines(proc):
    """Each stderr line of a running process with the time it arrived."""
    import time
    lines = []
    for line in proc.stderr:
        lines.append((time.monotonic(), line.rstrip("\n")))
    return lines


def _duration_s(text: str) -> float:
    import re
    value, unit = re.search(r"in ([\d.]+) (s|min|h)\b", text).groups()
    return float(value) * {"s": 1, "min": 60, "h": 3600}[unit]


@pytest.mark.slow
def test_a_short_budget_keeps_the_periodic_fid_to_its_share_and_lines_keep_coming(tmp_path):
    """--budget-minutes 0.07 (4.2 s a model): the AE's FIDs fit in 25% of it, the DDPM's do not (none), each
    model's training ends within budget + 25% + a stated overhead, and a line comes at least every ~1 s
    (trainer.progress_seconds) through the FIDs and the scoring -- before, a tiny DDPM took 8 FIDs of 300
    samples (a minute) for a 3-second budget, silently."""
    import re
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "compare", "ae", "ddpm", "--preset", "tiny",
                             "--budget-minutes", "0.07", "-n", "300", "--out", str(out), *SETS,
                             "--set", "trainer.progress_seconds=1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=zoo_env())
    lines = _timed_lines(proc)
    proc.wait(timeout=300)
    err = "\n".join(text for _, text in lines)
    assert proc.returncode == 0, err
    (ae_plan,) = [t for _, t in lines if t.startswith("[compare] ae: FID of ")]
    share = int(re.search(r"each: (\d+)% of about", ae_plan).group(1))
    assert 0 < share <= 25 and "at most 25% by --fid-share" in ae_plan, ae_plan
    assert "[compare] ddpm: no periodic FID: one of 256 samples takes about" in err
    assert "more than 25% (--fid-share)" in err and "the last checkpoint is ranked" in err
    ae_evals = [json.loads(r) for r in (out / "runs" / "ae" / "metrics.jsonl").read_text().splitlines() if '"fid"' in r]
    assert ae_evals and ae_evals[-1]["eval_seconds"] <= 0.25 * 4.2 * 1.5, ae_evals
    assert not [r for r in (out / "runs" / "ddpm" / "metrics.jsonl").read_text().splitlines() if '"fid"' in r]
    for model in ("ae", "ddpm"):
        (trained,) = [t for _, t in lines if re.match(rf"\[compare\] {model} \(\d/2\): trained \d+ steps in", t)]
        assert _duration_s(trained) <= 4.2 * 1.25 + 20, trained  # budget + FID share + probes, set-up, final grid
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(lines)]  # a line every ~1 s; 15 s leaves room for a busy CI
    assert max(gaps) < 15, [(round(g, 1), t) for g, (_, t) in zip(gaps, lines[1:]) if g >= 15]
    assert any("scoring ddpm: sampling 300 images from its last checkpoint" in t and "so far" in t for _, t in lines)


@pytest.mark.slow
def test_an_interrupted_compare_says_once_how_to_continue(tmp_path):
    """Ctrl-C while a model trains: the trainer's own "Resume with: zoo train --resume ..." is not printed
    next to compare's "run the same command again"; the same command then resumes the run."""
    import signal
    import time
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "zoo", "compare", "ae", "--preset", "tiny", "--steps", "1000000", "--fid-points", "0",
           "--out", str(out), *SETS]
    env = zoo_env()
    for attempt in ("first", "again"):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        metrics_file, deadline = out / "runs" / "ae" / "metrics.jsonl", time.monotonic() + 120
        rows_before = len(metrics_file.read_text().splitlines()) if metrics_file.exists() else 0
        while time.monotonic() < deadline and proc.poll() is None and (
                not metrics_file.exists() or len(metrics_file.read_text().splitlines()) <= rows_before):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        log, err = proc.communicate(timeout=120)  # the trainer's own lines are on stdout when piped
        assert proc.returncode == 130, err
        assert "Resume with" not in log + err and "zoo train --resume" not in log + err, log + err
        said = [line for line in err.splitlines() if "run the same command again" in line]
        assert len(said) == 1 and said[0] == err.strip().splitlines()[-1], err
        assert said[0].startswith("error: interrupted while training ae: run the same command again to continue")
        assert "stopped at step" in log + err and "Traceback" not in err
        if attempt == "again":
            assert "[compare] ae (1/1): resuming into" in err, err


@pytest.mark.slow
def test_report_html_renders_in_a_headless_browser(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        pytest.skip("no chromium here (.ci/run installs it)")
    out, _ = report
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--hide-scrollbars", "--window-size=1200,1400", f"--screenshot={shot}",
                    (out / "report.html").as_uri()], capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    from PIL import Image
    img = Image.open(shot).convert("L")
    hist = img.histogram()
    # a rendered page: mostly white background, but real content (table text, sample grids, plots)
    dark = sum(hist[:128]) / sum(hist)
    assert 0.005 < dark < 0.6, dark
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<table id=\"leaderboard\">" in html

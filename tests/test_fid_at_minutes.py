"""benchmarks/fid_at_minutes.py: the minute one run's FID curve passes another's, read from the runs' metrics."""
import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load():
    spec = importlib.util.spec_from_file_location("fid_at_minutes", REPO / "benchmarks" / "fid_at_minutes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def pts(*pairs):
    return [(t, f, i) for i, (t, f) in enumerate(pairs)]


def test_crossing_is_where_the_straight_segments_meet():
    m = load()
    ddpm = pts((1, 40), (3, 30), (10, 10))
    flat = pts((1, 20), (3, 20), (10, 20))
    # between minutes 3 and 10 the difference goes from +10 to -10: zero halfway
    assert m.crossing(ddpm, flat) == "6.5"
    assert m.crossing(flat, ddpm).startswith("does not")
    assert m.crossing(pts((1, 5), (3, 4)), flat).startswith("ahead from the first minute")
    assert m.crossing(pts((1, 5)), flat) == "too few points to tell"


def test_a_run_that_gets_worse_is_passed_later_at_its_best_checkpoint():
    """A GAN's curve falls to an early best and climbs: DDPM passes the run as it is once the GAN gets worse,
    and passes its best checkpoint only when DDPM gets below that best."""
    m = load()
    gan = pts((1, 30), (10, 6), (20, 10), (30, 15))
    ddpm = pts((1, 40), (10, 16), (20, 9), (30, 5))
    assert m.best_so_far(gan) == pts((1, 30), (10, 6), (20, 6), (30, 6))
    last = float(m.crossing(ddpm, gan))           # 16 - 6 = +10 at 10 min, 9 - 10 = -1 at 20
    best = float(m.crossing(m.best_so_far(ddpm), m.best_so_far(gan)))  # 9 - 6 = +3 at 20, 5 - 6 = -1 at 30
    assert abs(last - (10 + 10 * 10 / 11)) < 0.051 and abs(best - 27.5) < 0.051


def test_the_table_reads_the_runs(tmp_path, capsys, monkeypatch):
    m = load()
    curves = {"ddpm": [(60, 40.0), (600, 16.0), (1800, 5.0)], "gan": [(60, 30.0), (600, 6.0), (1800, 15.0)]}
    for name, curve in curves.items():
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        rows = [{"step": 100 * (i + 1), "time": t, "fid": f} for i, (t, f) in enumerate(curve)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (run / "config.yaml").write_text("trainer:\n  eval_n: 300\n")
    monkeypatch.setattr("sys.argv", ["fid_at_minutes.py", str(tmp_path), "--minutes", "1,10,30",
                                     "--plot", str(tmp_path / "curves.png")])
    m.main()
    captured = capsys.readouterr()
    out = captured.out
    assert ("| gan | 30.00 (1.0 min, step 100) | 6.00 (10.0 min, step 200) | 15.00 (30.0 min, step 300) | 3 | 300 |"
            in out)
    # last: 16 - 6 = +10 at 10 min, 5 - 15 = -10 at 30: minute 20; best: +10 at 10, 5 - 6 = -1 at 30: 10 + 20 * 10/11
    assert "| gan | 20.0 | 28.2 |" in out
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "FID curves of ddpm, gan" in captured.err

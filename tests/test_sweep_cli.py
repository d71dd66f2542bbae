"""``drizzleflow run SWEEP.yaml``: --dry-run, a killed sweep process, and its resume (engine toy steps)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from astropy.table import Table

from drizzleflow.engine.cli import main

EXE = [sys.executable, "-c", "import sys; from drizzleflow.engine.cli import main; sys.exit(main())"]


def _write(tmp_path, stop_point=3):
    (tmp_path / "in.dat").write_bytes(b"0123456789")
    (tmp_path / "base.yaml").write_text(textwrap.dedent("""\
        name: toybase
        input: in.dat
        output: base_out
        steps:
          - {name: source, step: toy_source, params: {length: 64}}
          - {name: scale1, step: toy_scale, params: {factor: 3}}
          - {name: drizzle_final, step: toy_drizzle}
          - {name: post, step: toy_scale, params: {factor: 1.0}}
        """))
    stop, never = tmp_path / "STOP", tmp_path / "NEVER"
    rows = []
    for i, (pf, sc) in enumerate([(1.0, 1.0), (0.9, 1.0), (0.8, 1.0), (0.7, 1.0), (1.0, 0.9), (1.0, 0.8), (1.0, 0.7)]):
        flag = "S" if i == stop_point else "N"
        rows.append(f"    - {{drizzle_final.pixfrac: {pf}, drizzle_final.scale: {sc}, post.exit_if_exists: {flag}}}")
    (tmp_path / "sweep.yaml").write_text("extends: base.yaml\noutput: sw_out\nsweep:\n  mode: rows\n  rows:\n"
                                         + "\n".join(rows) + "\nmetrics: []\n")
    return stop, never


def test_dry_run_prints_points_and_runs_nothing(tmp_path, capsys, monkeypatch):
    _write(tmp_path)
    monkeypatch.chdir(tmp_path)
    rc = main(["run", "sweep.yaml", "--dry-run", "-q"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "7 points" in out
    assert "#003 drizzle_final.pixfrac=0.7 drizzle_final.scale=1.0 post.exit_if_exists=S" in out
    assert "pixfrac=0.7,scale=1.0,exit_if_exists=S/" in out
    assert not (tmp_path / "sw_out").exists()


def test_bad_point_is_one_line_error_with_yaml_line(tmp_path, capsys, monkeypatch):
    _write(tmp_path)
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "sweep.yaml"
    p.write_text(p.read_text().replace("drizzle_final.pixfrac: 0.8,", "drizzle_final.pixfrac: 1.8,"))
    rc = main(["run", "sweep.yaml", "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("drizzleflow: error: sweep.yaml:8:") and "pixfrac" in err
    assert "Traceback" not in err


def test_killed_sweep_resumes_with_remaining_points(tmp_path):
    stop, _ = _write(tmp_path)
    # the 4th point's last step kills the process (os._exit) while the file S exists
    (tmp_path / "S").write_text("")
    env = dict(os.environ)
    r = subprocess.run(EXE + ["run", "sweep.yaml", "-q"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 3, r.stderr
    done = sorted(p.parent.name for p in (tmp_path / "sw_out").glob("*/point_result.json"))
    assert len(done) == 3
    assert "pixfrac=0.7,scale=1.0,exit_if_exists=S" not in done
    mtimes = {d: (tmp_path / "sw_out" / d / "point_result.json").stat().st_mtime_ns for d in done}
    (tmp_path / "S").unlink()
    r = subprocess.run(EXE + ["run", "sweep.yaml", "-q"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "sw_out").glob("*/point_result.json"))) == 7
    for d, m in mtimes.items():  # finished points were not redone
        assert (tmp_path / "sw_out" / d / "point_result.json").stat().st_mtime_ns == m
    # the upstream steps ran once in the whole sweep (the engine's toy steps witness their work)
    work = [Path(p).read_text().split() for p in (tmp_path / "sw_out").glob("*/toy/work.log")]
    flat = [w for log in work for w in log]
    assert flat.count("source") == 1 and flat.count("scale1") == 1
    assert flat.count("drizzle_final") == 7
    t = Table.read(tmp_path / "sw_out" / "sweep_results.ecsv")
    assert len(t) == 7 and list(t["point"]) == [f"{i:03d}" for i in range(7)]


def test_cli_validate_sweep_recipe(tmp_path, capsys, monkeypatch):
    """`drizzleflow validate` on a sweep whose base itself extends a defaults recipe."""
    _write(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "sweep.yaml", "source.length=32"]) == 0
    out = capsys.readouterr().out
    assert "OK — sweep of 7 points" in out and "#006 " in out

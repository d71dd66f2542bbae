"""Running sweeps with toy steps: shared upstream, per-point dirs, resume, reports."""
import json
import textwrap
from pathlib import Path

import pytest
from astropy.table import Table
from pydantic import Field

from drizzleflow.engine import registry
from drizzleflow.engine.atomic import write_text
from drizzleflow.engine.errors import StepError
from drizzleflow.engine.step import Params, Step
from drizzleflow.engine.sweep import load_sweep
from drizzleflow.engine.sweep_run import run_sweep


class _UpParams(Params):
    witness: str = Field(..., description="file that records each real run")


class Upstream(Step):
    """expensive upstream (witnessed)"""
    name = "sw_upstream"
    Params = _UpParams
    writes = ("up",)

    def run(self, context, params):
        with open(params.witness, "a") as fh:
            fh.write(f"upstream {context.outdir.name}\n")
        dest = context.path("work", "up.json")
        write_text(dest, json.dumps({"v": 42}))
        context.put("up", context.rel(dest))


class _DrzParams(Params):
    pixfrac: float = Field(1.0, gt=0, le=1, description="drop")
    scale: float = Field(0.046, gt=0, description="scale")
    witness: str = Field(..., description="file that records each real run")
    fail_if: str = Field("", description="fail when this file exists")


class FinalDrizzle(Step):
    """toy final drizzle: weight median ~ scale^2, scatter ~ 1/pixfrac"""
    name = "sw_drizzle"
    Params = _DrzParams
    reads = ("up",)
    writes = ("toy_final",)

    def run(self, context, params):
        assert Path(context.abs(context.get("up"))).exists()
        if params.fail_if and Path(params.fail_if).exists():
            raise StepError(self.name, "interrupted on purpose")
        with open(params.witness, "a") as fh:
            fh.write(f"drizzle {context.outdir.name}\n")
        context.put("toy_final", {"pixfrac": params.pixfrac, "scale": params.scale})


class _MetricParams(Params):
    box: int = Field(500, ge=1, description="box")


class ToyWeightStats(Step):
    """toy metric in the weight_stats product format"""
    name = "sw_metric"
    Params = _MetricParams
    reads = ("toy_final",)
    writes = ("weight_stats",)

    def run(self, context, params):
        f = context.get("toy_final")
        med = 56.0 * (f["scale"] / 0.046) ** 2
        ratio = 0.05 / f["pixfrac"] ** 4
        context.put("weight_stats", {"chips": {c: {"wht_median": med, "wht_std": med * ratio,
                                                   "wht_rms_over_median": ratio, "zero_wht_frac": 0.0}
                                               for c in ("PC1", "WF2")}, "ALL": {}, "box_pixels": params.box})


class _StarParams(Params):
    stars: str | None = Field(None, description="star list of the baseline (None: pick the stars here)")
    witness: str = Field(..., description="file that records each real run")


class ToyStars(Step):
    """toy psf_fwhm: picks a star list on the baseline, measures it elsewhere"""
    name = "psf_fwhm"
    Params = _StarParams
    reads = ("toy_final",)
    writes = ("psf_fwhm",)

    def run(self, context, params):
        assert context.get("toy_final")
        out = {"stars": "metrics/stars.txt", "ALL": {}, "chips": {}}
        if params.stars is None:
            dest = context.path("metrics", "psf_star_list.ecsv")
            write_text(dest, "id ra dec\n")
            out["star_list"] = context.rel(dest)
            line = f"select {context.outdir.name}"
        else:
            assert Path(params.stars).exists(), params.stars
            line = f"measure {context.outdir.name} {Path(params.stars).parent.parent.name}"
        write_text(context.path("metrics", "stars.txt"), line)
        with open(params.witness, "a") as fh:
            fh.write(line + "\n")
        context.put("psf_fwhm", out)


@pytest.fixture
def toy(monkeypatch, tmp_path):
    reg = registry.steps()
    for cls in (Upstream, FinalDrizzle, ToyWeightStats):
        monkeypatch.setitem(reg, cls.name, cls)
    (tmp_path / "in_c0m.fits").write_bytes(b"data")
    w = tmp_path / "witness.txt"
    (tmp_path / "base.yaml").write_text(textwrap.dedent(f"""\
        name: toy
        input: in_c0m.fits
        output: sweep_out
        steps:
          - {{name: upstream, step: sw_upstream, params: {{witness: {w}}}}}
          - {{name: drizzle_final, step: sw_drizzle, params: {{witness: {w}, fail_if: {tmp_path / 'STOP'}}}}}
        """))
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent("""\
        extends: base.yaml
        sweep:
          mode: rows
          rows:
            - {drizzle_final.pixfrac: 1.0, drizzle_final.scale: 0.046}
            - {drizzle_final.pixfrac: 0.9, drizzle_final.scale: 0.046}
            - {drizzle_final.pixfrac: 0.8, drizzle_final.scale: 0.046}
            - {drizzle_final.pixfrac: 0.7, drizzle_final.scale: 0.046}
            - {drizzle_final.pixfrac: 1.0, drizzle_final.scale: 0.041}
            - {drizzle_final.pixfrac: 1.0, drizzle_final.scale: 0.037}
            - {drizzle_final.pixfrac: 1.0, drizzle_final.scale: 0.032}
        metrics: [sw_metric]
        """))
    return tmp_path


def _witness(tmp_path):
    return (tmp_path / "witness.txt").read_text().splitlines()


def test_sweep_runs_upstream_once_and_writes_reports(toy):
    spec = load_sweep(toy / "sweep.yaml", cwd=toy)
    results = run_sweep(spec)
    w = _witness(toy)
    assert sum(line.startswith("upstream") for line in w) == 1
    assert sum(line.startswith("drizzle") for line in w) == 7
    out = toy / "sweep_out"
    for p in spec.points:
        d = out / p.name
        assert (d / "recipe.resolved.yaml").exists() and (d / "manifest.json").exists()
        assert (d / "work" / "up.json").exists()   # shared product available in the point's own dir
    assert (out / "pixfrac=0.9,scale=0.046").is_dir()
    assert results[3]["steps"]["upstream"] == "reused" and results[3]["steps"]["drizzle_final"] == "ran"
    t = Table.read(out / "sweep_results.ecsv")
    assert len(t) == 7 * 3  # PC1, WF2, ALL per point
    assert list(t["drizzle_final_pixfrac"][t["chip"] == "ALL"]) == [1.0, 0.9, 0.8, 0.7, 1.0, 1.0, 1.0]
    pc = t[t["chip"] == "PC1"]
    assert list(pc["meets_guidance"]) == [True, True, True, False, True, True, True]
    md = (out / "sweep_results.md").read_text()
    assert "pixfrac=0.7, scale=0.046" in md and "| no |" in md
    assert (out / "sweep_weight_vs_pixfrac_scale.png").stat().st_size > 1000
    assert (out / "sweep.resolved.yaml").exists() and len(list((out / "points").glob("*.yaml"))) == 7


@pytest.mark.parametrize("child", ["none", "fails"])
def test_sweep_figures_without_a_working_child_process(toy, monkeypatch, child):
    """The weight figure is drawn in a forked process; where there is no fork, or
    the child fails, this process draws it instead."""
    import os
    from drizzleflow.engine import sweep_report
    spec = load_sweep(toy / "sweep.yaml", cwd=toy)
    results = run_sweep(spec, reports=False)
    out = toy / "sweep_out"
    if child == "none":
        monkeypatch.setattr(sweep_report, "_in_child", lambda func, *args: None)
    else:
        real = sweep_report._in_child
        monkeypatch.setattr(sweep_report, "_in_child", lambda func, *args: real(os._exit, 3))
    made = sweep_report.write_reports(spec, results, out)["figures"]
    assert [p.name for p in made] == [sweep_report.FWHM_FIGURE, sweep_report.WEIGHT_FIGURE]
    assert all(p.stat().st_size > 1000 for p in made)


def test_interrupted_sweep_resumes_with_remaining_points(toy):
    spec = load_sweep(toy / "sweep.yaml", cwd=toy)
    # a run that stops after three points
    first = run_sweep(load_sweep(toy / "sweep.yaml", cwd=toy), stop_after=3)
    assert len(first) == 3
    before = {p.name: (toy / "sweep_out" / p.name / "point_result.json").stat().st_mtime_ns
              for p in spec.points[:3]}
    second = run_sweep(load_sweep(toy / "sweep.yaml", cwd=toy))
    assert len(second) == 7
    w = _witness(toy)
    drizzled = [line.split(" ", 1)[1] for line in w if line.startswith("drizzle")]
    assert len(drizzled) == 7 and len(set(drizzled)) == 7  # each point drizzled exactly once
    assert sum(line.startswith("upstream") for line in w) == 1
    for name, mtime in before.items():
        assert (toy / "sweep_out" / name / "point_result.json").stat().st_mtime_ns == mtime


def test_failure_mid_sweep_then_resume(toy):
    (toy / "STOP").write_text("")
    spec = load_sweep(toy / "sweep.yaml", cwd=toy)
    with pytest.raises(StepError, match="interrupted on purpose"):
        run_sweep(spec)
    assert not any((toy / "sweep_out").glob("*/point_result.json"))
    (toy / "STOP").unlink()
    res = run_sweep(load_sweep(toy / "sweep.yaml", cwd=toy))
    assert len(res) == 7
    assert sum(line.startswith("upstream") for line in _witness(toy)) == 1  # cached in the baseline dir


def test_a_different_sweep_in_the_same_directory_is_refused(toy):
    from drizzleflow.engine.errors import OutputError
    run_sweep(load_sweep(toy / "sweep.yaml", cwd=toy), stop_after=1)
    text = (toy / "sweep.yaml").read_text().replace("drizzle_final.scale: 0.046}", "drizzle_final.scale: 0.046}", 1)
    (toy / "base.yaml").write_text((toy / "base.yaml").read_text().replace("name: toy", "name: toy\nuref: /nowhere"))
    (toy / "sweep.yaml").write_text(text)
    with pytest.raises(OutputError, match="different sweep"):
        run_sweep(load_sweep(toy / "sweep.yaml", cwd=toy))


def test_provider_inputs_are_made_once_for_the_whole_sweep(toy, monkeypatch):
    calls = []

    def provide(spec, dest):
        calls.append(str(dest))
        f = Path(dest, "sim_c0m.fits")
        f.write_bytes(b"simulated")
        (Path(dest) / "uref").mkdir(exist_ok=True)
        return {"files": [f], "uref": Path(dest, "uref")}

    monkeypatch.setitem(registry.input_providers(), "toysim", provide)
    base = (toy / "base.yaml").read_text().replace("input: in_c0m.fits", "input: {toysim: m2, seed: 1}")
    (toy / "base.yaml").write_text(base)
    results = run_sweep(load_sweep(toy / "sweep.yaml", cwd=toy))
    assert len(results) == 7 and len(calls) == 1
    assert sum(line.startswith("upstream") for line in _witness(toy)) == 1
    assert all(r["steps"]["upstream"] == "reused" for r in results[1:])


def test_points_in_parallel_processes(toy):
    spec = load_sweep(toy / "sweep.yaml", cwd=toy)
    results = run_sweep(spec, parallel=2)
    assert [r["index"] for r in results] == list(range(7))
    assert sum(line.startswith("upstream") for line in _witness(toy)) == 1
    drizzled = [line.split(" ", 1)[1] for line in _witness(toy) if line.startswith("drizzle")]
    assert sorted(drizzled) == sorted(p.name for p in spec.points)
    assert all(r["steps"]["upstream"] == "reused" for r in results[1:])
    t = Table.read(toy / "sweep_out" / "sweep_results.ecsv")
    assert len(t) == 21


def test_failed_point_in_parallel_keeps_the_others(toy):
    from drizzleflow.engine.errors import DrizzleflowError
    spec = load_sweep(toy / "sweep.yaml", cwd=toy)
    run_sweep(spec, stop_after=1)                       # the baseline
    (toy / "STOP").write_text("")                       # every other point now fails
    with pytest.raises(DrizzleflowError, match="interrupted on purpose"):
        run_sweep(load_sweep(toy / "sweep.yaml", cwd=toy), parallel=2)
    (toy / "STOP").unlink()
    assert len(run_sweep(load_sweep(toy / "sweep.yaml", cwd=toy), parallel=2)) == 7


def test_parallel_points_share_the_cores(monkeypatch):
    """A point's worker process gets cores // parallel threads for the compiled
    core (DRIZZLEFLOW_THREADS), instead of each process taking every core."""
    from drizzleflow.engine.sweep_run import _worker_init
    from drizzleflow.steps.chain.common import THREADS, core_threads

    monkeypatch.delenv("DRIZZLEFLOW_THREADS", raising=False)
    assert core_threads() == THREADS
    monkeypatch.setenv("DRIZZLEFLOW_THREADS", "0")      # nonsense: the default
    assert core_threads() == THREADS
    _worker_init(1)
    assert core_threads() == 1


def test_pipelined_points_measure_the_baseline_star_list(toy, monkeypatch):
    """With parallel points, the others drizzle while the baseline picks its
    stars; each measures the baseline's list afterwards (upstream once)."""
    monkeypatch.setitem(registry.steps(), ToyStars.name, ToyStars)
    w = toy / "witness.txt"
    text = (toy / "sweep.yaml").read_text().replace("metrics: [sw_metric]",
                                                    f"metrics: [{{step: psf_fwhm, params: {{witness: {w}}}}}, sw_metric]")
    (toy / "sweep.yaml").write_text(text)
    spec = load_sweep(toy / "sweep.yaml", cwd=toy)
    results = run_sweep(spec, parallel=2, reports=False)
    assert [r["status"] for r in results] == ["done"] * 7
    lines = _witness(toy)
    assert sum(line.startswith("upstream") for line in lines) == 1
    assert sum(line.startswith("drizzle") for line in lines) == 7
    base = spec.points[spec.baseline].name
    assert [line for line in lines if line.startswith("select")] == [f"select {base}"]
    measured = sorted(line.split()[1:] for line in lines if line.startswith("measure"))
    assert measured == sorted([p.name, base] for p in spec.points if p.name != base)
    # the others took the baseline's upstream products (reused; cached in a point's second run):
    # a point that started before the star list existed drizzled first and measured in a
    # second run (its drizzle then cached), one that started after it ran in one go; the
    # witness shows the upstream step ran once and each point drizzled once
    assert all(r["steps"]["upstream"] in ("cached", "reused") for r in results[1:])
    assert all(r["steps"]["drizzle_final"] in ("cached", "ran") for r in results[1:])
    assert any(r["steps"]["drizzle_final"] == "cached" for r in results[1:])


def test_sweep_root_is_locked_and_cleared_of_a_killed_sweeps_temporaries(toy):
    """A sweep killed while writing its table or figures leaves ``.part`` files in
    the root; the next sweep removes them (not those inside a point's folder,
    which that point's own run clears) and a second sweep on the same root at
    the same time is refused."""
    import os
    from drizzleflow.engine.errors import OutputError
    from drizzleflow.engine.runner import LOCK_NAME
    run_sweep(load_sweep(toy / "sweep.yaml", cwd=toy), stop_after=1)
    out = toy / "sweep_out"
    point = next(d for d in out.iterdir() if (d / "manifest.json").exists())
    root_orphan = out / ".sweep_weight_vs_pixfrac_scale.png.k2j4ab7x.part.png"
    point_orphan = point / ".final_drz_sci.fits.x9f1qq0z.part.fits"
    root_orphan.write_bytes(b"half a figure")
    point_orphan.write_bytes(b"half an image")
    # a live sweep holds the root: refused, nothing removed
    (out / LOCK_NAME).write_text(str(os.getppid()))
    with pytest.raises(OutputError, match="another drizzleflow run"):
        run_sweep(load_sweep(toy / "sweep.yaml", cwd=toy))
    assert root_orphan.exists()
    (out / LOCK_NAME).unlink()
    assert len(run_sweep(load_sweep(toy / "sweep.yaml", cwd=toy))) == 7
    assert not root_orphan.exists()
    assert point_orphan.exists()         # a finished point is not rerun, so not entered
    assert not (out / LOCK_NAME).exists()

"""The runner: cache, rerun from a changed step, resume after a kill, refusal,
manifest, log file, executors and cross-directory reuse.  Toy steps, real files."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from drizzleflow.engine.errors import OutputError, StepError
from drizzleflow.engine.executors import SerialExecutor, ThreadExecutor
from drizzleflow.engine.recipe import load_recipe
from drizzleflow.engine.runner import run_recipe

RECIPE = """\
    input: "in/*.dat"
    output: out
    steps:
      - {step: toy_source, params: {length: 12}}
      - {name: scale, step: toy_scale, params: {factor: 3.0}}
      - {step: toy_drizzle, params: {pixfrac: 0.8, scale: 1.5}}
      - {step: toy_sum, params: {chunks: 3}}
"""


@pytest.fixture
def work(tmp_path):
    (tmp_path / "in").mkdir()
    for n in ("a", "b", "c"):
        (tmp_path / "in" / f"{n}.dat").write_text(n * 17)
    (tmp_path / "toy.yaml").write_text(textwrap.dedent(RECIPE))
    return tmp_path


def work_log(outdir):
    p = Path(outdir, "toy", "work.log")
    return p.read_text().split() if p.exists() else []


def total(outdir):
    return json.loads(Path(outdir, "toy", "toy_sum.json").read_text())["total"]


def test_first_run_then_all_cached(work):
    rec = load_recipe(work / "toy.yaml", cwd=work)
    r1 = run_recipe(rec)
    out = work / "out"
    assert [s.status for s in r1.steps] == ["ran"] * 4
    assert work_log(out) == ["toy_source", "scale", "toy_drizzle", "toy_sum"]
    first_total = total(out)
    r2 = run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    assert [s.status for s in r2.steps] == ["cached"] * 4
    assert work_log(out) == ["toy_source", "scale", "toy_drizzle", "toy_sum"]   # no step did work
    assert r2.products["toy_total"] == "toy/toy_sum.json" and total(out) == first_total

    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and len(man["recipe_sha256"]) == 64
    assert [i["path"] for i in man["inputs"]] == [str(work / "in" / f"{n}.dat") for n in "abc"]
    import hashlib
    assert man["inputs"][0]["sha256"] == hashlib.sha256(b"a" * 17).hexdigest()
    assert {"python", "numpy", "astropy", "drizzleflow"} <= set(man["software"])
    st = man["steps"][2]
    assert st["name"] == "toy_drizzle" and st["step"] == "toy_drizzle" and len(st["key"]) == 64
    assert st["params"] == {"pixfrac": 0.8, "scale": 1.5, "fillval": 0.0} and st["seconds"] >= 0
    assert st["products"] == {"toy_array": "toy/toy_drizzle.npy"}
    assert [f["path"] for f in st["files"]] == ["toy/toy_drizzle.npy"]
    log_text = (out / "drizzleflow.log").read_text()
    assert "step toy_drizzle (toy_drizzle) v1: params {'pixfrac': 0.8" in log_text
    assert "done in" in log_text and "resolved recipe" in log_text
    assert (out / "recipe.resolved.yaml").exists()


def test_preflight_only_for_steps_that_will_run(work):
    log = work / "out" / "toy" / "preflight.log"
    run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    assert log.read_text().split() == ["toy_drizzle"]
    run_recipe(load_recipe(work / "toy.yaml", cwd=work))                       # all cached
    run_recipe(load_recipe(work / "toy.yaml", ["toy_sum.chunks=5"], cwd=work))  # toy_drizzle cached
    assert log.read_text().split() == ["toy_drizzle"]
    run_recipe(load_recipe(work / "toy.yaml", ["scale.factor=6"], cwd=work))    # upstream of it changed
    assert log.read_text().split() == ["toy_drizzle", "toy_drizzle"]
    # the first step to run checks in its own run, before its work: not preflighted
    r = run_recipe(load_recipe(work / "toy.yaml", ["scale.factor=6", "toy_drizzle.pixfrac=0.5"], cwd=work))
    assert [s.status for s in r.steps] == ["cached", "cached", "ran", "ran"]
    assert log.read_text().split() == ["toy_drizzle", "toy_drizzle"]


def test_first_step_can_make_the_later_checks_while_it_works(work, monkeypatch):
    """A ``preflight_in_run`` step (ingest, whose work runs in worker processes) is
    handed the later steps' checks: they run when it calls ``context.preflight()``
    inside its run, not before it; one that fails there stops the run with its own
    message before that step finishes; one the step forgot runs right after it."""
    from drizzleflow.engine import toy_steps
    checks = work / "out" / "toy" / "preflight.log"
    seen = []
    real_run = toy_steps.ToySource.run

    def run(self, context, params, call=True):
        seen.append(checks.read_text().split() if checks.exists() else [])
        if call:
            context.preflight()
            seen.append(checks.read_text().split())
        real_run(self, context, params)

    monkeypatch.setattr(toy_steps.ToySource, "preflight_in_run", True)
    monkeypatch.setattr(toy_steps.ToySource, "run", run)
    run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    assert seen == [[], ["toy_drizzle"]]
    assert work_log(work / "out") == ["toy_source", "scale", "toy_drizzle", "toy_sum"]

    def refuse(self, context, params):
        raise StepError(context.step_name, "grid too large")

    monkeypatch.setattr(toy_steps.ToyDrizzle, "preflight", refuse)
    with pytest.raises(StepError, match="'toy_drizzle': grid too large"):
        run_recipe(load_recipe(work / "toy.yaml", ["toy_source.length=13"], cwd=work))
    assert work_log(work / "out") == ["toy_source", "scale", "toy_drizzle", "toy_sum"]   # no new work

    monkeypatch.undo()
    monkeypatch.setattr(toy_steps.ToySource, "preflight_in_run", True)
    monkeypatch.setattr(toy_steps.ToySource, "run", lambda self, c, p: run(self, c, p, call=False))
    seen.clear()
    checks.unlink()
    run_recipe(load_recipe(work / "toy.yaml", ["toy_source.length=14"], cwd=work))
    assert seen == [[]] and checks.read_text().split() == ["toy_drizzle"]
    assert work_log(work / "out")[-4:] == ["toy_source", "scale", "toy_drizzle", "toy_sum"]


def test_stop_after_is_a_partial_run_that_a_later_run_continues(work):
    """run_recipe(stop_after=...) (what a sweep uses for the steps all points
    share): the manifest says partial, later steps have not run, and the next
    run continues from there like after a killed run."""
    rec = load_recipe(work / "toy.yaml", cwd=work)
    names = [s.name for s in rec.steps]
    r = run_recipe(rec, stop_after=names[1])
    assert [s.name for s in r.steps] == names[:2]
    assert json.loads((work / "out" / "manifest.json").read_text())["status"] == "partial"
    assert work_log(work / "out") == names[:2]
    r = run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    assert [s.status for s in r.steps] == ["cached", "cached", "ran", "ran"]
    assert json.loads((work / "out" / "manifest.json").read_text())["status"] == "complete"
    with pytest.raises(ValueError, match="no step named 'nope'"):
        run_recipe(rec, stop_after="nope")


def test_changing_only_the_last_step_reruns_only_it(work):
    run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    before = total(work / "out")
    r = run_recipe(load_recipe(work / "toy.yaml", ["toy_sum.chunks=5"], cwd=work))
    assert [s.status for s in r.steps] == ["cached", "cached", "cached", "ran"]
    assert work_log(work / "out")[4:] == ["toy_sum"]
    assert total(work / "out") == pytest.approx(before)
    # a middle step: reruns from there on, the result changes accordingly
    r = run_recipe(load_recipe(work / "toy.yaml", ["scale.factor=6"], cwd=work))
    assert [s.status for s in r.steps] == ["cached", "ran", "ran", "ran"]
    assert total(work / "out") == pytest.approx(2 * before)


def test_editing_a_file_the_params_name_reruns_from_that_step(work):
    """A file named in a step's parameters (a region file, a reference image:
    ``Step.key_files``) is part of the cache key: editing it reruns the step and
    everything after it; an untouched one keeps the cache."""
    extra = work / "offset.txt"
    extra.write_text("1.5")
    over = [f"toy_source.offset_file={extra}"]
    run_recipe(load_recipe(work / "toy.yaml", over, cwd=work))
    first = total(work / "out")
    r = run_recipe(load_recipe(work / "toy.yaml", over, cwd=work))
    assert [s.status for s in r.steps] == ["cached"] * 4
    extra.write_text("2.5")
    r = run_recipe(load_recipe(work / "toy.yaml", over, cwd=work))
    assert [s.status for s in r.steps] == ["ran"] * 4
    assert total(work / "out") != pytest.approx(first)


def test_deleted_product_file_invalidates_that_step(work):
    run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    (work / "out" / "toy" / "toy_drizzle.npy").unlink()
    r = run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    assert [s.status for s in r.steps] == ["cached", "cached", "ran", "cached"]


def test_force_reruns_everything(work):
    run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    r = run_recipe(load_recipe(work / "toy.yaml", cwd=work), force=True)
    assert [s.status for s in r.steps] == ["ran"] * 4


def test_killed_run_resumes_from_last_completed_step(work):
    flag = work / "die"
    flag.write_text("")
    cmd = [sys.executable, "-m", "drizzleflow.engine.cli", "run", "toy.yaml", "-q", f"scale.exit_if_exists={flag}"]
    p = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=120)
    assert p.returncode == 3                      # the process died inside step 'scale'
    man = json.loads((work / "out" / "manifest.json").read_text())
    assert man["status"] == "running" and [s["name"] for s in man["steps"]] == ["toy_source"]
    assert work_log(work / "out") == ["toy_source"]
    # what a kill in the middle of writing a product leaves: a hidden temporary
    from test_engine_atomic import _killed_writer
    _killed_writer(work / "out", "toy/scale.npy")
    assert [p.name for p in (work / "out" / "toy").iterdir() if p.name.startswith(".scale.npy.")]
    flag.unlink()
    p = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert work_log(work / "out") == ["toy_source", "scale", "toy_drizzle", "toy_sum"]
    assert not [p for p in (work / "out").rglob(".*") if p.name != ".drizzleflow.lock"]   # the next run cleaned up
    assert "temporary file(s) an interrupted run left" in (work / "out" / "drizzleflow.log").read_text()
    import re
    assert re.search(r"^toy_source\s+toy_source\s+cached\s", p.stdout, re.M)
    assert re.search(r"^scale\s+toy_scale\s+ran\s", p.stdout, re.M)
    man = json.loads((work / "out" / "manifest.json").read_text())
    assert man["status"] == "complete" and len(man["steps"]) == 4


def test_different_recipe_refused_unless_overwrite(work):
    run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    other = work / "other.yaml"
    other.write_text(textwrap.dedent(RECIPE).replace("toy_drizzle", "toy_scale").replace("pixfrac: 0.8, scale: 1.5",
                                                                                        "factor: 1.0"))
    with pytest.raises(OutputError, match="different recipe"):
        run_recipe(load_recipe(other, cwd=work))
    with pytest.raises(OutputError, match="different recipe"):  # same steps, other inputs
        run_recipe(load_recipe(work / "toy.yaml", ["input=in/a.dat"], cwd=work))
    r = run_recipe(load_recipe(other, cwd=work), overwrite=True)
    assert [s.status for s in r.steps] == ["ran"] * 4


def test_unrelated_nonempty_directory_refused(work):
    (work / "out").mkdir()
    (work / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not empty"):
        run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    assert (work / "out" / "precious.txt").read_text() == "keep me"


def test_reuse_from_another_output_directory(work):
    run_recipe(load_recipe(work / "toy.yaml", cwd=work), work / "p1")
    r = run_recipe(load_recipe(work / "toy.yaml", ["toy_drizzle.pixfrac=0.5"], cwd=work), work / "p2",
                   reuse_from=[work / "p1"])
    assert [s.status for s in r.steps] == ["reused", "reused", "ran", "ran"]
    assert work_log(work / "p2") == ["toy_drizzle", "toy_sum"]
    assert os.path.samefile(work / "p2" / "toy" / "scale.npy", work / "p1" / "toy" / "scale.npy")  # linked
    # and p2 is now self-contained: its own rerun is fully cached, even with p1 gone
    import shutil
    shutil.rmtree(work / "p1")
    r = run_recipe(load_recipe(work / "toy.yaml", ["toy_drizzle.pixfrac=0.5"], cwd=work), work / "p2")
    assert [s.status for s in r.steps] == ["cached"] * 4
    # copies on request
    r = run_recipe(load_recipe(work / "toy.yaml", ["toy_drizzle.pixfrac=0.5", "toy_sum.chunks=2"], cwd=work),
                   work / "p3",
                   reuse_from=[work / "p2"], reuse_mode="copy")
    assert [s.status for s in r.steps] == ["reused", "reused", "reused", "ran"]
    assert not os.path.samefile(work / "p3" / "toy" / "scale.npy", work / "p2" / "toy" / "scale.npy")


def test_rewritten_product_outside_a_run_invalidates_it(work):
    run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    f = work / "out" / "toy" / "scale.npy"
    data = np.load(f)
    np.save(f, data * 0 + 1)   # someone edits an intermediate product
    r = run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    # that step is recomputed (same key: steps are deterministic, so the downstream
    # records, made from the correct content, stay valid)
    assert [s.status for s in r.steps] == ["cached", "ran", "cached", "cached"]
    assert np.array_equal(np.load(f), data)


def test_executors_give_identical_results(work):
    run_recipe(load_recipe(work / "toy.yaml", ["toy_sum.chunks=7"], cwd=work), work / "serial")
    run_recipe(load_recipe(work / "toy.yaml", ["toy_sum.chunks=7"], cwd=work), work / "threads", workers=3)
    a = (work / "serial" / "toy" / "toy_sum.json").read_bytes()
    assert a == (work / "threads" / "toy" / "toy_sum.json").read_bytes()
    man = json.loads((work / "threads" / "manifest.json").read_text())
    assert man["executor"] == "threads (3 workers)"
    with ThreadExecutor(4) as ex:
        assert ex.map(lambda x: x * x, range(50)) == [x * x for x in range(50)]
    assert SerialExecutor().map(str, [3, 1, 2]) == ["3", "1", "2"]


def test_dask_executor(work):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        r = run_recipe(load_recipe(work / "toy.yaml", ["toy_sum.chunks=7"], cwd=work), work / "dask",
                       dask_scheduler=cluster.scheduler_address)
    assert [s.status for s in r.steps] == ["ran"] * 4
    run_recipe(load_recipe(work / "toy.yaml", ["toy_sum.chunks=7"], cwd=work), work / "serial")
    assert ((work / "dask" / "toy" / "toy_sum.json").read_bytes()
            == (work / "serial" / "toy" / "toy_sum.json").read_bytes())
    assert json.loads((work / "dask" / "manifest.json").read_text())["executor"].startswith("dask (")


def test_toy_drizzle_conserves_flux_density():
    # the demo step is honest: a constant input stays constant on any grid
    from drizzleflow.engine.step import Context
    from drizzleflow.engine.toy_steps import ToyDrizzle
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        ctx = Context(outdir=Path(d))
        ctx.step_name = "src"
        np.save(Path(d, "c.npy"), np.full(10, 5.0))
        ctx.put("toy_array", "c.npy")
        ctx.step_name = "drz"
        ToyDrizzle().run(ctx, ToyDrizzle.Params(pixfrac=0.7, scale=0.5))
        out = np.load(ctx.abs(ctx.get("toy_array")))
        assert len(out) == 20
        assert np.allclose(out[out != 0], 5.0)


def test_executor_from_the_recipe_and_its_override(work):
    text = (work / "toy.yaml").read_text() + "executor: {kind: threads, workers: 2}\n"
    (work / "ex.yaml").write_text(text)
    run_recipe(load_recipe(work / "ex.yaml", cwd=work), work / "e1")
    assert json.loads((work / "e1" / "manifest.json").read_text())["executor"] == "threads (2 workers)"
    run_recipe(load_recipe(work / "ex.yaml", ["executor.workers=3"], cwd=work), work / "e2")
    assert json.loads((work / "e2" / "manifest.json").read_text())["executor"] == "threads (3 workers)"
    # the executor is not part of the cache key: same results, all cached
    r = run_recipe(load_recipe(work / "ex.yaml", ["executor.kind=serial", "executor.workers=null"], cwd=work),
                   work / "e1")
    assert [s.status for s in r.steps] == ["cached"] * 4


def test_one_run_per_output_directory(work):
    run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (work / "out" / ".drizzleflow.lock").write_text(str(other.pid))   # a live run holds the lock
        with pytest.raises(OutputError, match=f"another drizzleflow run \\(pid {other.pid}\\)"):
            run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    finally:
        other.kill()
        other.wait()
    r = run_recipe(load_recipe(work / "toy.yaml", cwd=work))   # a stale lock is taken over
    assert [s.status for s in r.steps] == ["cached"] * 4
    assert not (work / "out" / ".drizzleflow.lock").exists()


def test_another_release_recomputes_instead_of_serving_old_products(work, monkeypatch):
    """The drizzleflow release is part of every step key: products an older
    release made are recomputed, not served from the cache."""
    import drizzleflow.engine as engine_pkg
    run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    r = run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    assert {s.status for s in r.steps} == {"cached"}
    monkeypatch.setattr(engine_pkg, "__version__", "999.0")
    r = run_recipe(load_recipe(work / "toy.yaml", cwd=work))
    assert {s.status for s in r.steps} == {"ran"}


def test_inputs_hashed_once_per_process_and_again_when_changed(tmp_path, monkeypatch):
    """A sweep's points hash the same inputs in new output directories: the
    process remembers a file's sha256 by its identity; a changed file is read again."""
    from drizzleflow.engine import runner
    f = tmp_path / "a.dat"
    f.write_bytes(b"x" * 100)
    calls = []
    real = runner.file_sha256
    monkeypatch.setattr(runner, "file_sha256", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(runner, "_DIGESTS", {})
    first = runner._hash_inputs([f], None)
    again = runner._hash_inputs([f], None)        # no manifest: from the process's memory
    assert len(calls) == 1 and first == again
    f.write_bytes(b"y" * 100)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = runner._hash_inputs([f], None)
    assert len(calls) == 2 and changed[0]["sha256"] != first[0]["sha256"]

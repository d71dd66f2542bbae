"""Running a sweep: the points of a :class:`~drizzleflow.engine.sweep.SweepSpec`,
each in its own output folder, sharing what they can.

The point recipes are written first (``<output>/sweep.resolved.yaml`` and
``<output>/points/<nnn>_<point>.yaml``).  Steps whose cache key is the same for
every point (everything upstream of the first swept step) run once, in the
baseline point's folder; each point then runs with the engine's cross-folder
cache (``run_recipe(..., reuse_from=[...])``), so only the swept step and the
metrics run again.  With ``parallel`` > 1 the points run in worker processes
(:func:`_run_pipelined`): the baseline picks the star list while the other
points drizzle.  A point is done when ``<point>/point_result.json`` holds the
point's hash, so an interrupted sweep resumes with the remaining points.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .sweep import SweepSpec, format_points, load_sweep

__all__ = ["run_sweep", "write_plan", "cli_run", "RESULT_NAME", "SWEEP_RESOLVED_NAME", "STAR_LIST_STEPS"]

log = logging.getLogger("drizzleflow.sweep")

RESULT_NAME = "point_result.json"
SWEEP_RESOLVED_NAME = "sweep.resolved.yaml"
#: metric steps that measure a fixed star list taken from the baseline point
STAR_LIST_STEPS = ("psf_fwhm",)


def _point_hash(p) -> str:
    """The point's identity: its validated recipe as loaded (before the runner
    swaps in the baseline's star list and materialised inputs)."""
    if getattr(p, "_hash", None) is None:
        p._hash = p.recipe.sha256()
    return p._hash


def _share_inputs(rec, baseline_dir):
    """Point a provider-input recipe (``input: {simulate: m2}``) at the files the
    baseline point already made, so the provider does not run again per point.

    The cache keys depend on the inputs' sha256 and the uref string, not on
    where the files came from, so upstream records of the baseline still match.
    """
    if rec.input_files is not None:
        return
    from .manifest import load_manifest
    man = load_manifest(baseline_dir) or {}
    files = [Path(i["path"]) for i in man.get("inputs", [])]
    if not files or not all(f.is_file() for f in files):
        return
    rec.input_files = files
    if rec.uref is None and man.get("uref"):
        rec.uref, rec.uref_source = man["uref"], f"input provider (files made by the baseline point in {baseline_dir})"


def _final_drizzle(rec):
    """(pixfrac, scale) of the last step that has both parameters (the final drizzle)."""
    for s in reversed(rec.steps):
        fields = type(s.params).model_fields
        if "pixfrac" in fields and "scale" in fields:
            return getattr(s.params, "pixfrac"), getattr(s.params, "scale")
    return None, None


def _cost_order(spec, points):
    """``points`` with the most output pixels first (a finer final ``scale``):
    the workers take the longest drizzles first and finish together instead
    of one waiting at the end for the last large one (stable otherwise)."""
    base = _final_drizzle(spec.points[spec.baseline].recipe)[1]

    def pixels(p):
        scale = _final_drizzle(p.recipe)[1]
        return (base / scale) ** 2 if base and scale else 1.0
    return sorted(points, key=pixels, reverse=True)


def _warm_plotting():
    """Import matplotlib in a thread while the workers drizzle: the figures at the
    end then skip the ~0.4 s import (the main process only waits meanwhile)."""
    def load():
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot  # noqa: F401
        except Exception:   # optional extra; _plots says so if it is missing
            pass
    import threading
    threading.Thread(target=load, name="drizzleflow-plot-import", daemon=True).start()


def write_plan(spec: SweepSpec, overwrite=False):
    """Write ``sweep.resolved.yaml`` and every ``<point>/point.yaml`` before anything runs.

    A sweep directory written by a *different* sweep (other points or base
    recipe) is refused unless ``overwrite``: resuming must never mix two sweeps.
    """
    import json

    import yaml

    from .atomic import write_text
    from .errors import OutputError

    out = Path(spec.output)
    out.mkdir(parents=True, exist_ok=True)
    plan = {"sweep_file": str(spec.path), "mode": spec.mode, "swept": list(spec.keys),
            "baseline": spec.baseline, "guidance": spec.guidance,
            "metrics": [{k: v for k, v in m.items() if k in ("name", "step", "params")} for m in spec.metrics],
            "points": [{"index": p.index, "name": p.name, "dir": p.dirname, "overrides": p.overrides(),
                        "sha256": _point_hash(p)} for p in spec.points]}
    dest = out / SWEEP_RESOLVED_NAME
    if dest.exists() and not overwrite:
        try:
            old = yaml.safe_load(dest.read_text())
        except Exception:  # noqa: BLE001 - unreadable plan: treat as foreign
            old = None
        mine = {p["name"]: p["sha256"] for p in plan["points"]}
        theirs = {p["name"]: p.get("sha256") for p in (old or {}).get("points", [])}
        clash = [n for n in mine if n in theirs and theirs[n] != mine[n]]
        if old is None or clash:
            raise OutputError(f"{out}: holds a different sweep (points {', '.join(clash[:3]) or '?'} differ); "
                              "choose another output directory or pass --overwrite")
    write_text(dest, "# drizzleflow resolved sweep (points validated before running)\n"
               + yaml.safe_dump(plan, sort_keys=False, default_flow_style=None, width=110))
    for p in spec.points:
        resolved = p.recipe.resolved()
        resolved["output"] = str(p.recipe.output)
        doc = {"sweep": str(spec.path), "point": p.index, "name": p.name, "values": dict(p.texts),
               "sha256": _point_hash(p), "recipe": resolved}
        write_text(Path(out, "points", f"{p.index:03d}_{p.dirname}.yaml"),
                   "# one point of a drizzleflow sweep\n" + yaml.safe_dump(json.loads(json.dumps(doc, default=str)),
                                                                            sort_keys=False, width=110))
    return dest


def _load_result(p):
    import json
    path = Path(p.recipe.output, RESULT_NAME)
    if not path.exists():
        return None
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return res if res.get("hash") == _point_hash(p) and res.get("status") == "done" else None


def run_sweep(spec: SweepSpec, *, overwrite=False, force=False, workers=None, dask_scheduler=None, progress=None,
              reports=True, stop_after=None, parallel=None) -> list[dict]:
    """Run every point of a validated sweep and write the reports.

    Order: the baseline point first (its ``psf_fwhm`` picks the star list and
    its upstream steps fill the cache), then the others, each run by
    :func:`drizzleflow.engine.runner.run_recipe` with ``reuse_from`` pointing at
    the points already run, so steps whose cache key matches (everything
    upstream of the first swept step) are copied, not recomputed.  A point
    whose ``point_result.json`` matches its hash is skipped: an interrupted
    sweep resumes with the remaining points.

    Parameters
    ----------
    spec : SweepSpec
        From :func:`load_sweep`.
    overwrite, force : bool
        As for a single run (``force`` also reruns finished points).
    workers : int, optional
        Thread-pool size for the steps' independent work.
    dask_scheduler : str, optional
        Address of a Dask scheduler for the steps' independent work.
    progress : bool, optional
        Progress bars.
    reports : bool
        Write the table and figures (the table is refreshed after each point).
    stop_after : int, optional
        Run at most this many points in this call (the rest stay pending).
    parallel : int, optional
        Run up to this many points at once in worker processes after the
        baseline (default: the sweep's ``parallel:``, else 1).  Each point is a
        separate output directory, so points never share a file being written.

    Returns
    -------
    list of dict
        The point results (also in ``<point>/point_result.json``).
    """
    from .atomic import remove_orphans
    from .errors import OutputError
    from .runner import LOG_NAME, RunLock

    for p in spec.points:
        _point_hash(p)
    out = Path(spec.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the sweep directory ({exc.strerror})") from None
    # the root holds the plan, the tables and the figures: one sweep at a time, and
    # what a killed sweep left half-written there goes (each point cleans its own folder)
    with RunLock(out):
        stale = remove_orphans(out, owner_marks=("manifest.json", LOG_NAME))
        if stale:
            log.info("removed %d temporary file(s) an interrupted sweep left in %s: %s", len(stale), out,
                     ", ".join(str(p.relative_to(out)) for p in stale[:5]) + (" ..." if len(stale) > 5 else ""))
        return _run_sweep_locked(spec, overwrite, force, workers, dask_scheduler, progress, reports,
                                 stop_after, parallel)


def _run_sweep_locked(spec, overwrite, force, workers, dask_scheduler, progress, reports, stop_after, parallel):
    from .executors import make_executor

    write_plan(spec, overwrite=overwrite)
    parallel = int(parallel or spec.parallel or 1)
    base = spec.points[spec.baseline]
    base_dir = Path(base.recipe.output).resolve()
    order = [base] + [p for p in spec.points if p.index != spec.baseline]
    results, done_dirs, pending = {}, [], []
    star_list = None
    for p in order:
        prev = None if force else _load_result(p)
        if prev is not None:
            log.info("sweep point #%03d %s: done earlier, skipped", p.index, p.name)
            results[p.index] = prev
            done_dirs.append(Path(p.recipe.output).resolve())
            star_list = star_list or prev.get("star_list")
        else:
            pending.append(p)
    if stop_after is not None:
        for p in pending[stop_after:]:
            log.info("sweep point #%03d %s: left for a later run (stop_after=%d)", p.index, p.name, stop_after)
        pending = pending[:stop_after]
    ex = spec.points[0].recipe.executor
    executor = make_executor(ex.get("kind", "serial"), workers or ex.get("workers"),
                             dask_scheduler or ex.get("address"))
    opts = {"overwrite": overwrite, "force": force, "progress": progress}
    try:
        shared = _shared_upstream(spec) if parallel > 1 and len(pending) > 1 and pending[0] is base else None
        if shared is not None:
            # the steps every point shares run once, here; then the baseline's own steps
            # (which pick the star list) and the other points' drizzles run side by side
            from .runner import run_recipe
            log.info("sweep: shared steps up to %s first, in %s", shared, base_dir)
            run_recipe(base.recipe, base_dir, overwrite=overwrite, force=force, reuse_from=list(done_dirs),
                       progress=progress, executor=executor, stop_after=shared)
            if reports:
                _warm_plotting()
            _run_pipelined(spec, pending, parallel, results, done_dirs, opts, reports)
            pending = []
        elif pending and pending[0] is base:  # the baseline first, alone: it fills the cache and picks the stars
            res = _run_point(base, base_dir, list(done_dirs), executor, opts)
            _finish_point(spec, res, results, done_dirs, reports)
            star_list = res.get("star_list")
            pending = pending[1:]
        for p in pending:
            _prepare_point(spec, p, base_dir, star_list)
        if parallel > 1 and len(pending) > 1:
            _run_parallel(spec, pending, parallel, results, done_dirs, opts, reports)
        else:
            for p in pending:
                res = _run_point(p, Path(p.recipe.output).resolve(), list(done_dirs), executor, opts)
                _finish_point(spec, res, results, done_dirs, reports)
    finally:
        executor.close()
    if reports and results:
        _reports(spec, results)
    return [results[i] for i in sorted(results)]


def _shared_upstream(spec):
    """Name of the last step that every point runs with the baseline's parameters
    before any metric (so its products are the same for all points), or None."""
    base = spec.points[spec.baseline].recipe.steps
    metric_types = {m["step"] for m in spec.metrics} | set(STAR_LIST_STEPS)
    last = None
    for i, step in enumerate(base):
        if step.step in metric_types:
            break
        if not all(len(p.recipe.steps) > i and p.recipe.steps[i].name == step.name
                   and p.recipe.steps[i].params == step.params for p in spec.points):
            break
        last = step.name
    return last


def _before_star_list(recipe):
    """Name of the step just before the first one that needs the baseline's star
    list, or None when no step needs it."""
    names = [s.name for s in recipe.steps]
    for i, step in enumerate(recipe.steps):
        if step.step in STAR_LIST_STEPS and getattr(step.params, "stars", None) is None:
            return names[i - 1] if i else None
    return None


def _prepare_point(spec, p, base_dir, star_list):
    """Share the baseline's inputs and star list with a non-baseline point."""
    _share_inputs(p.recipe, base_dir)
    if star_list:
        for s in p.recipe.steps:
            if s.step in STAR_LIST_STEPS and getattr(s.params, "stars", None) is None:
                s.params = s.params.model_copy(update={"stars": str(star_list)})


def _run_point(p, pdir, reuse, executor, opts) -> dict:
    """Run one point's recipe; write and return its ``point_result.json`` payload."""
    import json
    import time

    from .atomic import write_text
    from .runner import run_recipe

    log.info("sweep point #%03d %s: running in %s", p.index, p.name, pdir)
    t0 = time.perf_counter()
    rr = run_recipe(p.recipe, pdir, overwrite=opts["overwrite"], force=opts["force"], reuse_from=reuse,
                    progress=opts["progress"], executor=executor)
    runtime = time.perf_counter() - t0
    pixfrac, scale = _final_drizzle(p.recipe)
    psf = rr.products.get("psf_fwhm")
    wst = rr.products.get("weight_stats")
    if scale is None:  # the grid's default scale: take what the metrics measured
        scale = (psf or wst or {}).get("scale_arcsec")
    res = {"index": p.index, "name": p.name, "values": dict(p.values), "texts": dict(p.texts),
           "hash": _point_hash(p), "status": "done", "runtime_s": round(runtime, 3),
           "pixfrac": pixfrac, "scale": scale, "steps": {s.name: s.status for s in rr.steps},
           "psf_fwhm": psf, "weight_stats": wst, "dir": str(pdir)}
    for key in ("final", "final_drz_sci", "final_sci", "drizzle_final"):
        val = rr.products.get(key)
        if isinstance(val, dict):
            val = val.get("sci")
        if isinstance(val, str):
            res["product"] = str(Path(pdir, val))
            break
    if psf:
        res["stars_file"] = str(Path(pdir, psf["stars"]))
        if psf.get("star_list"):
            res["star_list"] = str(Path(pdir, psf["star_list"]))
    write_text(pdir / RESULT_NAME, json.dumps(res, indent=1, default=str))
    log.info("sweep point #%03d %s: done in %.1f s (%s)", p.index, p.name, runtime,
             ", ".join(f"{k}:{v}" for k, v in res["steps"].items()))
    return res


def _finish_point(spec, res, results, done_dirs, reports):
    results[res["index"]] = res
    done_dirs.append(Path(res["dir"]))
    if reports:
        _reports(spec, results, figures=False)


def _point_job(args):
    """Worker-process entry: run one point (or, given a step name, its recipe up
    to that step, with no result); return the result or the error as text."""
    p, reuse, opts, stop = (*args, None)[:4]
    from .errors import DrizzleflowError
    from .runner import run_recipe
    out = Path(p.recipe.output).resolve()
    try:
        if stop is not None:
            run_recipe(p.recipe, out, overwrite=opts["overwrite"], force=opts["force"], reuse_from=reuse,
                       progress=False, stop_after=stop)
            return "ok", None
        return "ok", _run_point(p, out, reuse, None, dict(opts, progress=False))
    except DrizzleflowError as exc:
        return "error", f"sweep point #{p.index:03d} {p.name}: {exc}"


def _worker_init(threads):
    """Give a point's worker process its share of the cores: steps read
    ``DRIZZLEFLOW_THREADS`` for their compiled cores' thread count, so that
    parallel points do not each start a thread per core."""
    os.environ["DRIZZLEFLOW_THREADS"] = str(int(threads))


def _worker_pool(npoints, parallel, how=""):
    """Worker processes for ``npoints`` points, at most ``parallel`` at once,
    each given its share of the cores (:func:`_worker_init`)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    nproc = min(parallel, npoints)
    threads = max(1, (os.cpu_count() or 1) // nproc)
    log.info("sweep: running %d points, %d at a time (%d core thread(s) each)%s", npoints, nproc, threads,
             f", {how}" if how else "")
    return ProcessPoolExecutor(max_workers=nproc, mp_context=ctx, initializer=_worker_init, initargs=(threads,))


def _run_pipelined(spec, pending, parallel, results, done_dirs, opts, reports):
    """Baseline and points in worker processes once the shared steps are done.

    The baseline finishes its own steps (final drizzle, the metrics that pick
    the star list) while the other points run everything that does not need
    that list, most expensive first; their metrics follow as jobs of their
    own once the list exists and every drizzle has been handed out.  No core
    waits for the baseline's star selection, and the sweep ends on short
    metric jobs rather than on one long drizzle while the other cores idle
    (M2: the points took 9.5 s, the last 0.8 s on one core; a second job of a
    point costs ~30 ms of start-up and cache checks).  Jobs are handed out one
    free worker at a time.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    from .errors import DrizzleflowError

    base, others = pending[0], _cost_order(spec, pending[1:])
    base_dir = Path(base.recipe.output).resolve()
    errors, waiting, star_list, base_done = [], [], None, False
    for p in others:
        _share_inputs(p.recipe, base_dir)
    with _worker_pool(len(pending), parallel, "metrics after the baseline's star list") as pool:
        futs = {pool.submit(_point_job, (base, list(done_dirs), opts)): ("full", base)}

        def submit_next():
            reuse = [base_dir] + list(done_dirs)
            if others:
                p = others.pop(0)
                stop = _before_star_list(p.recipe)
                if stop is None:   # no step needs the star list: the whole point at once
                    futs[pool.submit(_point_job, (p, reuse, opts))] = ("full", p)
                else:
                    futs[pool.submit(_point_job, (p, reuse, opts, stop))] = ("partial", p)
            elif base_done and waiting:
                p = waiting.pop(0)
                _prepare_point(spec, p, base_dir, star_list)
                futs[pool.submit(_point_job, (p, reuse, opts))] = ("full", p)
            else:
                return False
            return True

        while len(futs) < parallel and submit_next():
            pass
        while futs:
            done, _ = wait(futs, return_when=FIRST_COMPLETED)
            for fut in done:
                kind, p = futs.pop(fut)
                status, payload = fut.result()
                if status != "ok":
                    log.error("%s", payload)
                    errors.append(payload)
                elif kind == "partial":
                    waiting.append(p)
                else:
                    _finish_point(spec, payload, results, done_dirs, reports)
                    if p is base:
                        star_list, base_done = payload.get("star_list"), True
            while len(futs) < parallel and submit_next():
                pass
    if errors:
        raise DrizzleflowError(errors[0] + (f" (and {len(errors) - 1} more failed points)" if len(errors) > 1
                                            else ""))


def _run_parallel(spec, pending, parallel, results, done_dirs, opts, reports):
    """Run points in worker processes; keep every finished point, raise the first failure after."""
    from concurrent.futures import as_completed

    from .errors import DrizzleflowError

    errors = []
    with _worker_pool(len(pending), parallel) as pool:
        futures = [pool.submit(_point_job, (p, list(done_dirs), opts)) for p in _cost_order(spec, pending)]
        for fut in as_completed(futures):
            status, payload = fut.result()
            if status == "ok":
                _finish_point(spec, payload, results, done_dirs, reports)
            else:
                log.error("%s", payload)
                errors.append(payload)
    if errors:
        raise DrizzleflowError(errors[0] + (f" (and {len(errors) - 1} more failed points)" if len(errors) > 1
                                            else ""))


def _reports(spec, results, figures=True):
    from .sweep_report import write_reports
    write_reports(spec, [results[i] for i in sorted(results)], spec.output, figures=figures)


def cli_run(args) -> int:
    """``drizzleflow run SWEEP.yaml [overrides] [--dry-run]`` (called by the CLI's ``run``)."""
    spec = load_sweep(args.recipe, getattr(args, "overrides", []), output=getattr(args, "output", None))
    print(format_points(spec))
    if getattr(args, "dry_run", False):
        return 0
    results = run_sweep(spec, overwrite=args.overwrite, force=args.force, workers=args.workers,
                        dask_scheduler=getattr(args, "dask_scheduler", None),
                        progress=None if not getattr(args, "quiet", False) else False)
    from .sweep_report import markdown_table
    print(markdown_table(spec, results), end="")
    print(f"{len(results)} points; table: {Path(spec.output, 'sweep_results.ecsv')} (+ .md, .csv, figures)")
    return 0

"""Run a validated recipe: inputs, cache, steps in order, manifest, summary.

The programmatic entry point is :func:`run_recipe`::

    from drizzleflow.engine.recipe import load_recipe
    from drizzleflow.engine.runner import run_recipe

    recipe = load_recipe("configs/m2_tutorial.yaml", ["drizzle_final.pixfrac=0.8"])
    result = run_recipe(recipe, "runs/p08", reuse_from=["runs/p10"])
    result.steps[-1].status    # "ran" | "cached" | "reused"

Lifecycle per step: compute its cache key; skip it (restoring its products)
when this directory's manifest has a valid record with that key; otherwise copy
the products of a valid record with that key from a ``reuse_from`` directory;
otherwise run it, time it, record its products and files, and rewrite the
manifest atomically — so a killed run resumes after the last completed step.
"""
from __future__ import annotations

import copy
import datetime as _dt
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import registry
from .atomic import remove_orphans, write_text
from .cache import file_records, find_in_dirs, import_record, key_file_digests, product_files, record_valid, step_key
from .errors import DrizzleflowError, OutputError, StepError
from .executors import make_executor
from .malloc import keep_freed_memory
from .manifest import MANIFEST_NAME, file_identity, file_sha256, load_manifest, save_manifest, software_versions
from .recipe import Recipe, sha256_of
from .step import Context

__all__ = ["run_recipe", "RunResult", "StepResult", "LOG_NAME", "RESOLVED_NAME"]

log = logging.getLogger("drizzleflow")
LOG_NAME = "drizzleflow.log"
RESOLVED_NAME = "recipe.resolved.yaml"
LOCK_NAME = ".drizzleflow.lock"


@dataclass
class StepResult:
    name: str
    step: str
    key: str
    status: str  # "ran" | "cached" | "reused"
    seconds: float
    products: dict = field(default_factory=dict)


@dataclass
class RunResult:
    outdir: Path
    manifest: Path
    steps: list[StepResult]
    seconds: float
    products: dict
    recipe_sha256: str

    def summary(self) -> str:
        """A small table: step, type, status, seconds."""
        w = max([len(s.name) for s in self.steps] + [4])
        t = max([len(s.step) for s in self.steps] + [4])
        lines = [f"{'step':<{w}}  {'type':<{t}}  {'status':<6}  {'seconds':>8}"]
        for s in self.steps:
            lines.append(f"{s.name:<{w}}  {s.step:<{t}}  {s.status:<6}  {s.seconds:8.2f}")
        ran = sum(s.status == "ran" for s in self.steps)
        lines.append(f"{len(self.steps)} steps: {ran} ran, {len(self.steps) - ran} from cache; "
                     f"total {self.seconds:.2f} s; output {self.outdir}")
        return "\n".join(lines)


def _now():
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunLock:
    """One run per output directory at a time (a stale lock of a dead process is
    taken over).  Sweeps take it on their root folder as well."""

    def __init__(self, outdir):
        self.path = Path(outdir, LOCK_NAME)

    def __enter__(self):
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                return self
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise OutputError(f"{self.path.parent}: another drizzleflow run (pid {pid}) is using this "
                                      f"output directory (if no such run is going on, delete {self.path})") from None
                self.path.unlink(missing_ok=True)
        raise OutputError(f"{self.path}: cannot take the run lock")

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _alive(pid):
    """True while process ``pid`` exists and is not a zombie (a run killed a moment
    ago whose parent has not collected it yet holds no lock)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True   # no /proc (macOS): kill(pid, 0) is all there is


def _check_outdir(outdir: Path, recipe: Recipe, overwrite: bool):
    """Refuse a directory that holds another recipe's run (or unrelated files)."""
    old = None
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir}: exists and is not a directory")
    if outdir.exists():
        try:
            old = load_manifest(outdir)
        except OutputError:
            if not overwrite:
                raise
            old = None
        if old is None and not overwrite:
            stray = [p.name for p in outdir.iterdir() if p.name not in (LOG_NAME, LOCK_NAME)]
            if stray:
                raise OutputError(f"{outdir}: not empty and holds no drizzleflow manifest; choose another "
                                  "output directory or pass --overwrite")
    if old is not None and old.get("identity") != recipe.identity():
        if not overwrite:
            diff = [k for k in ("name", "steps", "input") if old.get("identity", {}).get(k) != recipe.identity()[k]]
            raise OutputError(f"{outdir}: holds the run of a different recipe ('{old.get('identity', {}).get('name')}'"
                              f"; differs in: {', '.join(diff) or 'identity'}); choose another output directory "
                              "or pass --overwrite")
        log.warning("--overwrite: %s held the run of a different recipe; starting a new manifest "
                    "(old files are left in place until overwritten)", outdir)
        old = None
    return old


def _materialise_inputs(recipe: Recipe, outdir: Path):
    """Input files (sorted) and a uref the provider may supply."""
    if recipe.input_files is not None:
        missing = [p for p in recipe.input_files if not p.is_file()]
        if missing:
            from .errors import InputFileError
            raise InputFileError(missing[0], "input file disappeared since the recipe was validated")
        return list(recipe.input_files), None
    spec = recipe.input
    pname = next(k for k in spec if k in registry.input_providers())
    provider = registry.get_input_provider(pname)
    dest = outdir / "inputs" / f"{pname}-{sha256_of(spec)[:12]}"
    marker = dest / ".provided.json"
    import json
    if marker.exists():
        try:
            info = json.loads(marker.read_text())
            files = [Path(dest, f) if not os.path.isabs(f) else Path(f) for f in info["files"]]
            if info.get("spec") == spec and all(f.is_file() for f in files):
                log.info("input: reusing %d files made earlier by provider '%s' in %s", len(files), pname, dest)
                uref = info.get("uref")
                return files, (str(Path(dest, uref)) if uref and not os.path.isabs(uref) else uref)
        except (OSError, ValueError, KeyError):
            pass
    dest.mkdir(parents=True, exist_ok=True)
    log.info("input: provider '%s' making files in %s", pname, dest)
    t0 = time.perf_counter()
    result = provider(copy.deepcopy(spec), dest)
    uref = None
    if isinstance(result, dict):
        files, uref = result.get("files", []), result.get("uref")
    else:
        files = result
    files = sorted(Path(f).resolve() for f in files)
    if not files:
        raise DrizzleflowError(f"input provider '{pname}' produced no files")
    log.info("input: provider '%s' made %d files in %.2f s", pname, len(files), time.perf_counter() - t0)

    def _rel(p):
        try:
            return str(Path(p).resolve().relative_to(dest.resolve()))
        except ValueError:
            return str(Path(p).resolve())
    write_text(marker, json.dumps({"spec": spec, "files": [_rel(f) for f in files],
                                   "uref": _rel(uref) if uref else None}, indent=1))
    return files, (str(uref) if uref else None)


#: sha256 of input files this process (or the one it was forked from) has read, by
#: file identity (device, inode, size, mtime): a sweep's points read the same inputs in
#: worker processes forked after the shared steps, and hashed the six M2 inputs
#: (62 MB) again per point
_DIGESTS: dict = {}


def _hash_inputs(files, old_manifest):
    """sha256 of each input; reuse the previous manifest's value when size and mtime
    match, or this process's when the file is the one it hashed before."""
    known = {}
    for rec in (old_manifest or {}).get("inputs", []):
        known[rec.get("path")] = rec
    out, todo = [], []
    for f in files:
        st = f.stat()
        ident = file_identity(f, st)
        rec = known.get(str(f))
        if rec and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
            digest = rec["sha256"]
        else:
            digest = _DIGESTS.get(ident)
            if digest is None:
                todo.append(len(out))
        out.append({"path": str(f), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest,
                    "_ident": ident})
    if todo:
        # hashlib releases the GIL on large blocks: two threads halve the time (0.05 s for
        # the six M2 exposures); the pool's threads are gone before any step forks workers
        with ThreadPoolExecutor(max_workers=2) as pool:
            for i, digest in zip(todo, pool.map(file_sha256, [Path(out[i]["path"]) for i in todo])):
                out[i]["sha256"] = digest
    for rec in out:
        _DIGESTS[rec.pop("_ident")] = rec["sha256"]
    return out


def _attach_log_file(outdir):
    handler = logging.FileHandler(Path(outdir, LOG_NAME), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger("drizzleflow")
    root.addHandler(handler)
    handler.previous_level = root.level
    root.setLevel(logging.DEBUG)  # the file gets everything; console handlers filter for themselves
    return handler


def run_recipe(recipe: Recipe, outdir=None, *, overwrite=False, force=False, reuse_from=(), workers=None,
               dask_scheduler=None, progress=None, executor=None, reuse_mode="link",
               stop_after=None) -> RunResult:
    """Run ``recipe`` into ``outdir`` (default: the recipe's ``output``).

    Parameters
    ----------
    recipe : Recipe
        From :func:`drizzleflow.engine.recipe.load_recipe` or ``recipe_from_dict``.
    outdir : path-like, optional
        Output directory; created if missing.
    overwrite : bool
        Accept a directory that holds another recipe's run (or unrelated files)
        and start a fresh manifest there.  For the same recipe it changes
        nothing (the cache stays valid; use ``force`` to rerun).
    force : bool
        Rerun every step even when its cached products are valid.
    reuse_from : sequence of path-like
        Other output directories whose completed steps may be reused when their
        cache key matches (their files are hard-linked or copied here).  For sweeps.
    reuse_mode : {"link", "copy"}
        How reused files arrive: hard links (default; a copy where linking is
        impossible) or independent copies.
    workers : int, optional
        Use a thread pool of this size for ``context.map``.
    dask_scheduler : str, optional
        Address of a Dask scheduler for ``context.map`` (wins over ``workers``).
    progress : bool, optional
        tqdm bars; default: when stderr is a terminal.
    executor : Executor, optional
        A ready executor (the caller keeps ownership), e.g. shared across sweep points.
    stop_after : str, optional
        Stop once the step of this name is done (the manifest says ``partial``;
        a later run continues from there, as after a killed run).  For sweeps,
        which compute the steps every point shares first.

    Returns
    -------
    RunResult

    Raises
    ------
    DrizzleflowError
        Refused output directory, bad inputs, a step's StepError, ...
    """
    outdir = Path(outdir) if outdir is not None else recipe.output
    if outdir is None:
        raise OutputError("no output directory: give `output:` in the recipe or --output DIR")
    outdir = Path(os.path.abspath(outdir))
    old = _check_outdir(outdir, recipe, overwrite)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{outdir}: cannot create the output directory ({exc.strerror})") from None
    if progress is None:
        progress = sys.stderr.isatty()
    keep_freed_memory()   # process-wide, once: see engine/malloc.py

    with RunLock(outdir):
        handler = _attach_log_file(outdir)
        stale = remove_orphans(outdir)   # no run is writing here now: ours holds the lock
        if stale:
            log.info("removed %d temporary file(s) an interrupted run left in %s: %s", len(stale), outdir,
                     ", ".join(str(p.relative_to(outdir)) for p in stale[:5]) + (" ..." if len(stale) > 5 else ""))
        own_executor = executor is None
        try:
            if executor is None:
                ex = recipe.executor
                executor = make_executor(ex.get("kind", "serial"), workers or ex.get("workers"),
                                         dask_scheduler or ex.get("address"))
            try:
                if stop_after is not None and stop_after not in {s.name for s in recipe.steps}:
                    raise ValueError(f"stop_after: no step named {stop_after!r} in recipe {recipe.name!r}")
                return _run(recipe, outdir, old, force, [Path(d) for d in reuse_from], executor, progress,
                            reuse_mode, stop_after)
            finally:
                if own_executor:
                    executor.close()
        finally:
            root = logging.getLogger("drizzleflow")
            root.removeHandler(handler)
            root.setLevel(handler.previous_level)
            handler.close()


def _preflight(specs, context, outdir):
    """The cheap checks on the inputs (grid size, overlap, ...) of every step that
    will run, before any runs, so a doomed recipe fails before work starts."""
    running = context.step_name   # set when a preflight_in_run step calls this
    for spec in specs:
        context.step_name = spec.name
        try:
            spec.cls().preflight(context, spec.params)
        except DrizzleflowError:
            raise
        except Exception as exc:
            log.exception("preflight of step %s (%s) failed", spec.name, spec.step)
            raise StepError(spec.name, f"internal error in its checks {type(exc).__name__}: {exc} "
                            f"(a bug; the traceback is in {outdir / LOG_NAME})") from exc
        finally:
            context.step_name = running


def _run(recipe, outdir, old, force, reuse_dirs, executor, progress, reuse_mode="link", stop_after=None):
    t_start = time.perf_counter()
    log.info("=== drizzleflow run: recipe '%s' (%s) -> %s", recipe.name, recipe.path or "<memory>", outdir)
    resolved = recipe.resolved()
    resolved["output"] = str(outdir)
    text = yaml.safe_dump(resolved, sort_keys=False, default_flow_style=None, width=100)
    log.debug("resolved recipe:\n%s", text.rstrip())
    write_text(outdir / RESOLVED_NAME, "# drizzleflow resolved recipe (defaults filled, extends flattened)\n" + text)

    files, provided_uref = _materialise_inputs(recipe, outdir)
    inputs = _hash_inputs(files, old)
    uref = recipe.uref or provided_uref or None
    if recipe.uref is None and provided_uref:
        uref_source = "input provider"
    else:
        uref_source = recipe.uref_source
    if uref is None and os.environ.get("uref"):
        uref, uref_source = os.environ["uref"], "environment variable uref"
    if uref:
        log.info("uref = %s (from %s)", uref, uref_source)

    manifest = {
        "recipe": resolved, "recipe_sha256": recipe.sha256(), "identity": recipe.identity(),
        "software": software_versions(), "executor": executor.describe(),
        "inputs": inputs, "uref": uref, "started": _now(), "finished": None, "status": "running",
        "steps": [],
    }
    old_records = {r["name"]: r for r in (old or {}).get("steps", []) if "name" in r}
    records = {}

    def save(status="running"):
        manifest["status"] = status
        manifest["steps"] = [records.get(s.name) or old_records[s.name] for s in recipe.steps
                             if s.name in records or s.name in old_records]
        save_manifest(outdir, manifest)

    save()
    context = Context(outdir=outdir, inputs=files,
                      options={"uref": uref, "force": force, "recipe": recipe.name, "executor": executor.describe(),
                               "recipe_sha256": manifest["recipe_sha256"],
                               "reuse_dirs": [str(d) for d in reuse_dirs]},
                      log=log, progress_enabled=progress, executor=executor)
    input_hashes = [i["sha256"] for i in inputs]
    keys, prev = [], None
    for spec in recipe.steps:
        # files the parameters name (region files, reference images) count as inputs
        extra = key_file_digests(spec.cls.key_files(spec.params))
        prev = step_key(spec.step, spec.cls.version, spec.params.model_dump(mode="json"), prev,
                        input_hashes + extra, uref)
        keys.append(prev)

    def cached(spec, key):
        rec = old_records.get(spec.name)
        return not force and rec is not None and rec.get("key") == key and record_valid(rec, outdir)

    def reusable(key):
        return find_in_dirs(key, reuse_dirs) if not force and reuse_dirs else None

    todo = recipe.steps
    if stop_after is not None:
        todo = todo[:[s.name for s in todo].index(stop_after) + 1]
    first = next((i for i, (spec, key) in enumerate(zip(todo, keys))
                  if not cached(spec, key) and not reusable(key)), len(todo))
    # the first step to run makes its own checks before its work, nothing runs before
    # it: its preflight would only repeat them (a pixfrac-only rerun of drizzle_final
    # saved ~0.1 s of archive-header WCS).  One whose work runs in worker processes
    # (ingest) is handed the later steps' checks to make while they work.
    later = todo[first + 1:]
    if first < len(todo) and todo[first].cls.preflight_in_run:
        context.pending_preflight = lambda: _preflight(later, context, outdir)
    else:
        _preflight(later, context, outdir)
    results = []
    for spec, key in zip(todo, keys):
        params_json = spec.params.model_dump(mode="json")
        rec = old_records.get(spec.name)
        status = None
        if cached(spec, key):
            status = "cached"
            records[spec.name] = rec
        elif (found := reusable(key)):
            src, srec = found
            rec = import_record(src, srec, outdir, reuse_mode)
            records[spec.name] = rec
            status = "reused"
        if status:
            context.products.update(copy.deepcopy(rec.get("products", {})))
            log.info("step %s (%s): %s, products restored (key %s%s)", spec.name, spec.step, status, key[:12],
                     f", from {rec.get('reused_from')}" if status == "reused" else "")
            results.append(StepResult(spec.name, spec.step, key, status, 0.0, rec.get("products", {})))
            if status == "reused":
                save()   # a cached record is already in the manifest on disk (the first save wrote it)
            continue

        log.info("step %s (%s) v%s: params %s", spec.name, spec.step, spec.cls.version, params_json)
        before = copy.deepcopy(context.products)
        context.written.clear()
        context.step_name = spec.name
        records.pop(spec.name, None)
        old_records.pop(spec.name, None)
        t0 = time.perf_counter()
        try:
            spec.cls().run(context, spec.params)
            if context.pending_preflight is not None:
                # a preflight_in_run step that returned without making the checks (a bug):
                # make them now, before any later step works
                log.warning("step %s did not run the later steps' checks; running them now", spec.name)
                context.preflight()
        except DrizzleflowError:
            save("failed")
            raise
        except Exception as exc:
            save("failed")
            log.exception("step %s (%s) failed", spec.name, spec.step)
            raise StepError(spec.name, f"internal error {type(exc).__name__}: {exc} "
                            f"(a bug; the traceback is in {outdir / LOG_NAME})") from exc
        finally:
            context.step_name = ""
        seconds = time.perf_counter() - t0
        made = {k: v for k, v in context.products.items()
                if k in context.written or k not in before or before[k] != v}
        files_made = product_files(made, outdir)
        records[spec.name] = {
            "name": spec.name, "step": spec.step, "version": str(spec.cls.version), "key": key,
            "params": params_json, "seconds": round(seconds, 4), "finished": _now(), "status": "done",
            "products": copy.deepcopy(made), "files": file_records(files_made, outdir),
        }
        _refresh_stats(records, outdir)
        save()
        log.info("step %s (%s): done in %.2f s; products: %s", spec.name, spec.step, seconds,
                 ", ".join(made) or "none")
        results.append(StepResult(spec.name, spec.step, key, "ran", seconds, made))

    manifest["finished"] = _now()
    manifest["seconds"] = round(time.perf_counter() - t_start, 4)
    save("complete" if len(todo) == len(recipe.steps) else "partial")
    result = RunResult(outdir=outdir, manifest=outdir / MANIFEST_NAME, steps=results,
                       seconds=time.perf_counter() - t_start, products=dict(context.products),
                       recipe_sha256=recipe.sha256())
    log.debug("run summary:\n%s", result.summary())
    return result


def _refresh_stats(records, outdir):
    """Re-stat the files of earlier records: a later step of the same run may legitimately
    rewrite them; only changes made outside a run should invalidate the cache."""
    for rec in records.values():
        fresh = []
        for f in rec.get("files", []):
            p = Path(f["path"]) if os.path.isabs(f["path"]) else Path(outdir, f["path"])
            try:
                st = p.stat()
            except OSError:
                fresh.append(f)
                continue
            fresh.append({"path": f["path"], "size": st.st_size, "mtime_ns": st.st_mtime_ns})
        rec["files"] = fresh

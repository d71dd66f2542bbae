"""Sweep recipes: one recipe, many parameter points, one table.

A sweep recipe ``extends`` a base recipe and adds two keys::

    extends: m2_tutorial.yaml
    sweep:
      mode: rows                  # grid (Cartesian) | zip (paired lists) | rows (explicit table)
      params:                     # grid / zip: dotted key -> list of literal values
        drizzle_final.pixfrac: [1.0, 0.9]
        drizzle_final.scale: [0.046, 0.041]
      rows:                       # rows: one mapping per point, like MDRIZTAB rows
        - {drizzle_final.pixfrac: 1.0, drizzle_final.scale: 0.046}
      exclude: [{drizzle_final.pixfrac: 0.9, drizzle_final.scale: 0.041}]   # optional
      baseline: 0                 # point whose stars every point measures (default: the first)
      max_points: 100             # refuse larger expansions
      guidance: {wht_rms_over_median: 0.2}   # the Handbook's weight rule
      parallel: 2                 # points run at once (worker processes) after the baseline
    metrics: [psf_fwhm, weight_stats]   # or [{step: psf_fwhm, params: {...}}, ...]

Keys are ``<step name>.<param>`` or AstroDrizzle flat names (``final_pixfrac``),
exactly as on the command line.  Every point is resolved and validated with the
engine's recipe rules before anything runs; a bad value is reported at its own
line in the sweep file.  Values are kept *as written*: the point
``pixfrac=0.9,scale=0.041`` is named from the YAML text, never from a float's
repr, and lists are literals (no ``range``), so names carry no rounding noise.

Running (:func:`run_sweep`): the point recipes are written first
(``<output>/sweep.resolved.yaml`` and ``<output>/points/<nnn>_<point>.yaml``),
then the baseline point runs in full in ``<output>/<point>/``; every other
point runs in its own ``<output>/<point>/`` with the engine's cross-directory
cache (``run_recipe(..., reuse_from=[dirs of finished points])``): steps whose
cache key matches (everything upstream of the first swept step) have their
products copied, not recomputed, and only the swept step and the metrics run.
A point is done when ``<point>/point_result.json`` holds the point's hash, so
an interrupted sweep resumes with the remaining points.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .errors import RecipeError
from .yaml_loader import load_yaml

__all__ = ["SweepPoint", "SweepSpec", "load_sweep", "is_sweep_recipe", "format_points", "run_sweep", "write_plan",
           "cli_run", "cli_validate"]

log = logging.getLogger("drizzleflow.sweep")

MODES = ("grid", "zip", "rows")
SWEEP_KEYS = ("mode", "params", "rows", "exclude", "baseline", "max_points", "guidance", "parallel")
DEFAULT_METRICS = ("psf_fwhm", "weight_stats")


@dataclass
class SweepPoint:
    """One expanded point of a sweep."""

    index: int
    values: dict            # dotted key -> typed value
    texts: dict             # dotted key -> the value exactly as written in the YAML
    wheres: dict            # dotted key -> file:line:col of the value
    name: str = ""          # ``pixfrac=0.9,scale=0.041``
    recipe: Any = None      # the validated engine Recipe (with metric steps appended)

    def overrides(self) -> list[str]:
        """The point as command-line style overrides, in the YAML's own spelling."""
        return [f"{k}={self.texts[k]}" for k in self.values]

    @property
    def dirname(self) -> str:
        return self.name


@dataclass
class SweepSpec:
    """A parsed sweep block with its expanded, validated points."""

    path: Path
    mode: str
    keys: list                       # swept dotted keys, in the order first written
    points: list = field(default_factory=list)
    metrics: list = field(default_factory=list)   # [{name, step, params, where}]
    baseline: int = 0
    guidance: dict = field(default_factory=lambda: {"wht_rms_over_median": 0.2})
    raw: dict = field(default_factory=dict)       # the sweep block as written
    parallel: int = 1                             # points run at once after the baseline

    def columns(self) -> list[str]:
        """Table column per swept key: ``drizzle_final.pixfrac`` -> ``drizzle_final_pixfrac``."""
        return [_column(k) for k in self.keys]


def _column(key):
    return re.sub(r"[^0-9A-Za-z_]", "_", key)


def is_sweep_recipe(path) -> bool:
    """True when a recipe file has a top-level ``sweep:`` block."""
    try:
        data, _ = load_yaml(path)
    except RecipeError:
        return False
    return isinstance(data, dict) and data.get("sweep") is not None


# -- value texts ---------------------------------------------------------------

def _source_text(lines, line, col):
    """The scalar text starting at 1-based (line, col), up to its delimiter."""
    s = lines[line - 1][col - 1:]
    if s[:1] in "\"'":
        q = s[0]
        end = s.find(q, 1)
        return s[1:end] if end > 0 else s[1:]
    m = re.match(r"[^,\]\}#]*", s)
    return m.group(0).strip()


def _text_of(value, pos, path, lines):
    where = pos.where(path)
    if isinstance(value, (dict, list)) or path not in pos.values:
        return _plain(value), where
    line, col = pos.values[path]
    try:
        text = _source_text(lines, line, col)
    except IndexError:
        text = ""
    return (text or _plain(value)), where


def _plain(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_plain(v) for v in value) + "]"
    return str(value)


_SAFE = re.compile(r"[^0-9A-Za-z._=,+\-\[\]]")


def _point_names(points, keys):
    tails = {}
    for k in keys:
        tails.setdefault(k.rsplit(".", 1)[-1], []).append(k)
    short = {k: (k.rsplit(".", 1)[-1] if len(tails[k.rsplit(".", 1)[-1]]) == 1 else k) for k in keys}
    for p in points:
        p.name = _SAFE.sub("_", ",".join(f"{short[k]}={p.texts[k]}" for k in p.values)) or f"point{p.index:03d}"


# -- parsing -------------------------------------------------------------------

def _err(msg, pos, path, key=None, on_key=False):
    return RecipeError(msg, where=pos.where(path, key=on_key), key=key)


def _parse_block(data, pos, lines):
    sw = data.get("sweep")
    if not isinstance(sw, dict):
        raise _err("`sweep:` must be a mapping {mode, params | rows, ...}", pos, ("sweep",), "sweep")
    for k in sw:
        if k not in SWEEP_KEYS:
            raise _err(f"unknown sweep key{registry.suggest(k, SWEEP_KEYS)} (allowed: {', '.join(SWEEP_KEYS)})",
                       pos, ("sweep", k), f"sweep.{k}", on_key=True)
    mode = sw.get("mode", "grid")
    if mode not in MODES:
        raise _err(f"allowed: one of {', '.join(MODES)}", pos, ("sweep", "mode"), "sweep.mode")
    raw_points = []  # list of (values, texts, wheres)
    keys: list[str] = []
    if mode in ("grid", "zip"):
        params = sw.get("params")
        if "rows" in sw:
            raise _err(f"`rows:` is for mode: rows; mode {mode} takes `params:`", pos, ("sweep", "rows"),
                       "sweep.rows", on_key=True)
        if not isinstance(params, dict) or not params:
            raise _err("expected `params:` mapping each swept key to a list of values", pos, ("sweep", "params")
                       if "params" in sw else ("sweep",), "sweep.params")
        axes = []
        for k, vals in params.items():
            path = ("sweep", "params", k)
            if not isinstance(k, str) or not k:
                raise _err("a swept key must be `step.param` or an AstroDrizzle name", pos, path, str(k), True)
            if not isinstance(vals, list):
                vals = [vals]
            if not vals:
                raise _err("empty list of values", pos, path, k)
            items = []
            for i, v in enumerate(vals):
                text, where = _text_of(v, pos, path + (i,), lines)
                items.append((v, text, where))
            axes.append((k, items))
            keys.append(k)
        if mode == "zip":
            n = len(axes[0][1])
            for k, items in axes[1:]:
                if len(items) != n:
                    raise _err(f"mode zip pairs the lists element by element: this list has {len(items)} values, "
                               f"`{axes[0][0]}` has {n}", pos, ("sweep", "params", k), k)
            combos = [tuple(items[i] for _, items in axes) for i in range(n)]
        else:
            combos = list(itertools.product(*[items for _, items in axes]))
        for combo in combos:
            raw_points.append(({k: c[0] for k, c in zip(keys, combo)}, {k: c[1] for k, c in zip(keys, combo)},
                               {k: c[2] for k, c in zip(keys, combo)}))
    else:
        rows = sw.get("rows")
        if "params" in sw:
            raise _err("mode rows takes `rows:` (a list of mappings), not `params:`", pos, ("sweep", "params"),
                       "sweep.params", on_key=True)
        if not isinstance(rows, list) or not rows:
            raise _err("expected `rows:`, a list of mappings {step.param: value, ...}", pos,
                       ("sweep", "rows") if "rows" in sw else ("sweep",), "sweep.rows")
        for j, row in enumerate(rows):
            path = ("sweep", "rows", j)
            if not isinstance(row, dict) or not row:
                raise _err("a row must be a non-empty mapping {step.param: value, ...}", pos, path, f"sweep.rows[{j}]")
            vals, texts, wheres = {}, {}, {}
            for k, v in row.items():
                if k not in keys:
                    keys.append(k)
                text, where = _text_of(v, pos, path + (k,), lines)
                vals[k], texts[k], wheres[k] = v, text, where
            raw_points.append((vals, texts, wheres))
    # exclusions
    exclude = sw.get("exclude") or []
    if not isinstance(exclude, list):
        raise _err("expected a list of mappings", pos, ("sweep", "exclude"), "sweep.exclude")
    for j, ex in enumerate(exclude):
        if not isinstance(ex, dict) or not ex:
            raise _err("expected a mapping {step.param: value}", pos, ("sweep", "exclude", j), f"sweep.exclude[{j}]")
        for k in ex:
            if k not in keys:
                raise _err(f"not a swept key{registry.suggest(k, keys)} (swept: {', '.join(keys)})", pos,
                           ("sweep", "exclude", j, k), k, True)
    kept = [p for p in raw_points
            if not any(all(_same(p[0].get(k, _MISSING), v) for k, v in ex.items()) for ex in exclude)]
    if not kept:
        raise _err("every point is excluded", pos, ("sweep",), "sweep.exclude")
    max_points = sw.get("max_points", 100)
    if not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < 1:
        raise _err("allowed: an integer >= 1", pos, ("sweep", "max_points"), "sweep.max_points")
    if len(kept) > max_points:
        raise _err(f"the sweep expands to {len(kept)} points, more than max_points={max_points}; raise "
                   "`max_points` if you mean it", pos, ("sweep",), "sweep")
    points = [SweepPoint(i, *p) for i, p in enumerate(kept)]
    _point_names(points, keys)
    seen = {}
    for p in points:
        if p.name in seen:
            first = seen[p.name]
            raise RecipeError(f"point {p.name} appears twice (also point {first.index}, "
                              f"{next(iter(first.wheres.values()))})", where=next(iter(p.wheres.values())))
        seen[p.name] = p
    baseline = sw.get("baseline", 0)
    if isinstance(baseline, dict):
        match = [p.index for p in points if all(_same(p.values.get(k, _MISSING), v) for k, v in baseline.items())]
        if len(match) != 1:
            raise _err(f"baseline matches {len(match)} points; it must match exactly one", pos,
                       ("sweep", "baseline"), "sweep.baseline")
        baseline = match[0]
    if not isinstance(baseline, int) or isinstance(baseline, bool) or not 0 <= baseline < len(points):
        raise _err(f"allowed: a point index 0..{len(points) - 1} or a mapping of swept values", pos,
                   ("sweep", "baseline"), "sweep.baseline")
    guidance = {"wht_rms_over_median": 0.2}
    g = sw.get("guidance")
    if g is not None:
        if not isinstance(g, dict) or any(k not in guidance for k in g):
            raise _err("allowed: {wht_rms_over_median: <float>}", pos, ("sweep", "guidance"), "sweep.guidance")
        guidance.update(g)
    par = sw.get("parallel", 1)
    if not isinstance(par, int) or isinstance(par, bool) or par < 1:
        raise _err("allowed: an integer >= 1 (points run at once after the baseline)", pos, ("sweep", "parallel"),
                   "sweep.parallel")
    return mode, keys, points, baseline, guidance, sw


_MISSING = object()


def _same(a, b):
    if a is _MISSING:
        return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(a)))
    return a == b


def _parse_metrics(data, pos):
    m = data.get("metrics", list(DEFAULT_METRICS))
    if m is None:
        return []
    if isinstance(m, dict):  # {psf_fwhm: {...}, weight_stats: {...}}
        items = [({"step": k, "params": v or {}}, ("metrics", k)) for k, v in m.items()]
    elif isinstance(m, list):
        items = [(e if isinstance(e, dict) else {"step": e}, ("metrics", i)) for i, e in enumerate(m)]
    else:
        raise _err("expected a list of metric steps, e.g. [psf_fwhm, weight_stats]", pos, ("metrics",), "metrics")
    out = []
    for e, path in items:
        if not isinstance(e.get("step"), str):
            raise _err("a metric needs `step:` (a registered step type)", pos, path, "metrics")
        for k in e:
            if k not in ("name", "step", "params"):
                raise _err(f"unknown metric key{registry.suggest(k, ('name', 'step', 'params'))}", pos,
                           path + (k,), f"metrics.{k}", True)
        registry.get_step(e["step"], where=pos.where(path))   # imports only the steps named
        params = e.get("params") or {}
        if not isinstance(params, dict):
            raise _err("expected a mapping of parameter: value", pos, path + ("params",), "metrics.params")
        out.append({"name": e.get("name") or e["step"], "step": e["step"], "params": dict(params),
                    "where": pos.where(path), "path": path})
    return out


def _relocate(exc: RecipeError, where):
    """An override error re-pointed at the sweep value that caused it."""
    if exc.where and not str(exc.where).startswith("command line"):
        return exc
    return RecipeError(exc.detail, where=where, key=exc.key)


_LAYER_KEYS = ("name", "description", "extends", "input", "output", "uref", "executor", "astrodrizzle", "steps",
               "sweep", "metrics", "schema_version")


def _override_text(value, text):
    import json
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return text


def _sweep_layer(path, data, pos, lines):
    """The sweep file's own settings as overrides on its base recipe.

    The base is loaded with the engine's own rules (so it may itself
    ``extends:`` a defaults recipe); the sweep file may set step parameters
    (``steps: [{name: sky, params: {...}}]``), AstroDrizzle names
    (``astrodrizzle:``), ``input``/``output``/``uref`` and ``executor``.
    Adding or removing steps belongs in the base recipe.
    """
    if not data.get("extends"):
        return [], {}, None
    for k in data:
        if k not in _LAYER_KEYS:
            raise _err(f"unknown recipe key{registry.suggest(k, _LAYER_KEYS)}", pos, (k,), str(k), True)
    if not isinstance(data["extends"], str):
        raise _err("expected a file name", pos, ("extends",), "extends")
    base = Path(path).parent / data["extends"]
    if not base.exists():
        raise _err(f"base recipe {base} not found (resolved relative to {Path(path).parent})", pos,
                   ("extends",), "extends")
    items, wheres = [], {}

    def add(item, where):
        items.append(item)
        wheres[item] = where

    for k in ("input", "output", "uref"):
        if k in data:
            v = data[k]
            add(f"{k}={_override_text(v, _text_of(v, pos, (k,), lines)[0])}", pos.where((k,)))
    ex = data.get("executor")
    if isinstance(ex, str):
        ex = {"kind": ex}
    for k, v in (ex or {}).items():
        add(f"executor.{k}={_override_text(v, str(v))}", pos.where(("executor", k)))
    for k, v in (data.get("astrodrizzle") or {}).items():
        add(f"{k}={_override_text(v, _text_of(v, pos, ('astrodrizzle', k), lines)[0])}",
            pos.where(("astrodrizzle", k)))
    for i, e in enumerate(data.get("steps") or []):
        if not isinstance(e, dict) or set(e) - {"name", "step", "params"} or not e.get("name"):
            raise _err("a sweep recipe may only set parameters of the base recipe's steps "
                       "({name: <step name>, params: {...}}); add or remove steps in the base recipe",
                       pos, ("steps", i), f"steps[{i}]")
        for k, v in (e.get("params") or {}).items():
            where = pos.where(("steps", i, "params", k))
            add(f"{e['name']}.{k}={_override_text(v, _text_of(v, pos, ('steps', i, 'params', k), lines)[0])}", where)
    return items, wheres, base


def load_sweep(path, overrides=(), *, output=None, cwd=None) -> SweepSpec:
    """Parse a sweep recipe and validate every point before anything runs.

    Parameters
    ----------
    path : path-like
        The sweep recipe (a recipe with a ``sweep:`` block, usually ``extends:`` a base).
    overrides : sequence of str
        Command-line ``name.param=value`` overrides applied to every point.
    output : path-like, optional
        Sweep output directory (wins over the recipe's ``output:``).

    Returns
    -------
    SweepSpec
        With ``points[i].recipe`` the validated engine ``Recipe`` of each point
        (metric steps appended) whose ``output`` is ``<output>/<point name>``.

    Raises
    ------
    RecipeError
        At the YAML line of the offending sweep value or metric.
    """
    from .recipe import StepSpec, load_recipe  # the engine's recipe rules, unchanged

    path = Path(path)
    data, pos = load_yaml(path)
    if not isinstance(data, dict) or data.get("sweep") is None:
        raise RecipeError("not a sweep recipe: no `sweep:` block", where=str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    mode, keys, points, baseline, guidance, raw = _parse_block(data, pos, lines)
    metrics = _parse_metrics(data, pos)
    reg = registry.LazySteps()  # imports only the steps the sweep names
    swept_cli = {o.partition("=")[0].strip() for o in overrides} & set(keys)
    if swept_cli:
        k = sorted(swept_cli)[0]
        raise RecipeError(f"{k} is swept; a command-line override of it would replace the sweep axis",
                          where="command line", key=k)
    root_out = None
    layer, layer_wheres, base_path = _sweep_layer(path, data, pos, lines)
    cli_keys = {o.partition("=")[0].strip() for o in overrides}
    layer = [item for item in layer if item.partition("=")[0] not in cli_keys]  # the command line wins
    for p in points:
        try:
            if base_path is None:
                rec = load_recipe(path, list(overrides) + p.overrides(), output=output, cwd=cwd)
            else:
                rec = load_recipe(base_path, layer + list(overrides) + p.overrides(), output=output, cwd=cwd)
                rec.name = data.get("name") or path.stem
                rec.description = data.get("description", rec.description)
                rec.path, rec.extends = path, base_path
                rec.sweep, rec.metrics = data.get("sweep"), data.get("metrics")
                rec.overrides = list(overrides) + p.overrides()
        except RecipeError as exc:
            key_where = None
            text = str(exc.where or "")
            for k in p.values:
                if f"`{k}=" in text:
                    key_where = p.wheres[k]
            for item, w in layer_wheres.items():
                if f"`{item}`" in text:
                    key_where = w
            raise _relocate(exc, key_where or next(iter(p.wheres.values()))) from None
        names = {s.name for s in rec.steps}
        for m in metrics:
            if m["name"] in names:
                raise RecipeError(f"metric step name '{m['name']}' is already a step of the recipe; give it `name:`",
                                  where=m["where"])
            cls = reg[m["step"]]
            try:
                params = cls.Params(**m["params"])
            except Exception as exc:  # pydantic ValidationError: first message, at the metric's line
                detail = exc.errors(include_url=False)[0] if hasattr(exc, "errors") else {"msg": str(exc), "loc": ()}
                loc = ".".join(str(x) for x in detail.get("loc", ()))
                raise RecipeError(detail["msg"], where=m["where"], key=f"{m['name']}.{loc}" if loc else m["name"]) \
                    from None
            rec.steps.append(StepSpec(name=m["name"], step=m["step"], cls=cls, params=params,
                                      given=dict(m["params"]), where=m["where"]))
        if rec.output is None:
            raise RecipeError("a sweep needs an output directory: `output:` in the recipe or --output",
                              where=str(path), key="output")
        root_out = rec.output
        rec.output = Path(root_out, p.dirname)
        p.recipe = rec
    spec = SweepSpec(path=path, mode=mode, keys=keys, points=points, metrics=metrics, baseline=baseline,
                     guidance=guidance, raw=raw, parallel=int(raw.get("parallel", 1)))
    spec.output = root_out
    return spec


def format_points(spec: SweepSpec) -> str:
    """The expanded points, one line each (what ``run --dry-run`` prints)."""
    lines = [f"sweep {spec.path} (mode {spec.mode}): {len(spec.points)} points -> {spec.output}"]
    for p in spec.points:
        mark = "  (baseline: star list)" if p.index == spec.baseline else ""
        vals = " ".join(f"{k}={p.texts[k]}" for k in p.values)
        lines.append(f"#{p.index:03d} {vals}  -> {p.dirname}/{mark}")
    if spec.metrics:
        lines.append("metrics: " + ", ".join(m["name"] for m in spec.metrics))
    return "\n".join(lines)


# -- running ---------------------------------------------------------------------

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
    from .executors import make_executor

    for p in spec.points:
        _point_hash(p)
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


def cli_validate(args) -> int:
    """``drizzleflow validate SWEEP.yaml``: validate every point and print them (for the CLI's ``validate``)."""
    spec = load_sweep(args.recipe, getattr(args, "overrides", []))
    print(f"{args.recipe}: OK — sweep of {len(spec.points)} points, each validated")
    print(format_points(spec))
    return 0

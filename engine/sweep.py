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

Running the points is :mod:`drizzleflow.engine.sweep_run`'s; the table and
figures, :mod:`drizzleflow.engine.sweep_report`'s.
"""
from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .errors import RecipeError
from .yaml_loader import load_yaml

__all__ = ["SweepPoint", "SweepSpec", "load_sweep", "is_sweep_recipe", "format_points", "cli_validate"]

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


def cli_validate(args) -> int:
    """``drizzleflow validate SWEEP.yaml``: validate every point and print them (for the CLI's ``validate``)."""
    spec = load_sweep(args.recipe, getattr(args, "overrides", []))
    print(f"{args.recipe}: OK — sweep of {len(spec.points)} points, each validated")
    print(format_points(spec))
    return 0

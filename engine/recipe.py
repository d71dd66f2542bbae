"""Recipes: load, merge (``extends``), override, validate and resolve.

A recipe is a YAML file::

    # yaml-language-server: $schema=../schemas/recipe.schema.json
    name: m2_tutorial                # optional; defaults to the file name stem
    extends: wfpc2_default.yaml      # optional, ONE level, relative to this file
    input: "data/*_c0m.fits"         # glob | [globs] | {simulate: m2, seed: 1, ...}
    output: m2_out                   # relative to the current directory; --output wins
    uref: refs/                      # optional; else the input provider's, else $uref
    executor: {kind: threads, workers: 2}   # serial (default) | threads | dask
    astrodrizzle: {final_pixfrac: 0.8}      # optional AstroDrizzle flat names
    steps:
      - {name: drizzle_final, step: drizzle_final, params: {pixfrac: 0.8}}
    sweep: ...                       # reserved for the sweep engine (passed through)
    metrics: ...                     # reserved for the sweep engine (passed through)

Precedence, exactly three layers: a step's ``Params`` defaults < the recipe
(its ``extends`` base first, then the recipe itself) < command-line overrides
``name.param=value`` (or a flat AstroDrizzle alias ``final_pixfrac=0.8``).

``extends`` merges per step *name*: the base's steps keep their order; an entry
in the recipe with the name of a base step updates that step's params key by
key (it may omit ``step:``, may set ``enabled: false`` to drop the step, and may
not change its step type); an entry with a new name is appended at the end, or
placed with ``after: <name>`` / ``before: <name>``.  Top-level keys of the
recipe replace the base's (``astrodrizzle`` is merged key by key).

Inputs given as globs are resolved against the current working directory and
sorted; the resolved list is part of the recipe's identity.
"""
from __future__ import annotations

import copy
import glob as globmod
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import registry
from .describe import allowed
from .errors import RecipeError
from .step import Params, Step
from .yaml_loader import Positions, load_yaml, parse_value

__all__ = ["Recipe", "StepSpec", "load_recipe", "recipe_from_dict", "canonical_json", "TOP_KEYS"]

#: Every top-level key a recipe may carry.
TOP_KEYS = ("schema_version", "name", "description", "extends", "input", "output", "uref", "executor",
            "astrodrizzle", "steps", "sweep", "metrics")
STEP_KEYS = ("name", "step", "params", "enabled", "after", "before")
EXECUTOR_KINDS = ("serial", "threads", "dask")


def canonical_json(obj) -> str:
    """Canonical JSON (sorted keys, no spaces) used for every hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)


def sha256_of(obj) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


class _Origin:
    """Where a value came from: a YAML path in a file, or a command-line item."""

    def __init__(self, positions: Positions | None = None, path=(), text: str | None = None, given_as=None):
        self.positions, self.path, self.text, self.given_as = positions, tuple(path), text, given_as

    def where(self, sub=(), key=False):
        if self.positions is None:
            return self.text
        return self.positions.where(self.path + tuple(sub), key=key)


@dataclass
class StepSpec:
    """One resolved step of a recipe."""

    name: str
    step: str
    cls: type[Step]
    params: Params
    given: dict[str, Any] = field(default_factory=dict)  # canonical key -> value from recipe/CLI
    where: str = ""

    def resolved(self) -> dict:
        return {"name": self.name, "step": self.step, "version": str(self.cls.version),
                "params": self.params.model_dump(mode="json")}


@dataclass
class Recipe:
    """A loaded, merged, overridden and validated recipe.

    ``input`` is the raw input spec (a list of globs or a provider mapping);
    ``input_files`` the sorted matching files for globs (``None`` for a provider,
    whose files are made at run time).
    """

    name: str
    path: Path | None
    input: Any
    input_files: list[Path] | None
    output: Path | None
    uref: str | None
    uref_source: str | None
    executor: dict
    steps: list[StepSpec]
    extends: Path | None = None
    sweep: Any = None
    metrics: Any = None
    description: str | None = None
    overrides: list[str] = field(default_factory=list)

    def step(self, name) -> StepSpec:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def resolved(self) -> dict:
        """The fully resolved recipe (defaults filled, ``extends`` flattened), as JSON-able data."""
        out = {
            "name": self.name,
            "source": str(self.path) if self.path else None,
            "extends": str(self.extends) if self.extends else None,
            "input": self.input,
            "input_files": [str(p) for p in self.input_files] if self.input_files is not None else None,
            "output": str(self.output) if self.output else None,
            "uref": self.uref,
            "uref_source": self.uref_source,
            "executor": self.executor,
            "overrides": list(self.overrides),
            "steps": [s.resolved() for s in self.steps],
        }
        if self.description:
            out["description"] = self.description
        if self.sweep is not None:
            out["sweep"] = self.sweep
        if self.metrics is not None:
            out["metrics"] = self.metrics
        return out

    def sha256(self) -> str:
        """Hash of what determines the products: inputs, uref and the resolved steps."""
        return sha256_of({"input": self.input, "uref": self.uref,
                          "input_files": [str(p) for p in self.input_files] if self.input_files else None,
                          "steps": [s.resolved() for s in self.steps]})

    def identity(self) -> dict:
        """What makes two recipes "the same recipe" for an output directory: the
        recipe name, the ordered (name, step type) list and the input spec (for
        globs, the resolved file list).  Parameter values are NOT part of it, so
        rerunning with changed parameters reuses the directory (the cache case)."""
        return {"name": self.name,
                "steps": [[s.name, s.step] for s in self.steps],
                "input": ([str(p) for p in self.input_files] if self.input_files is not None else self.input)}

    def with_overrides(self, overrides) -> "Recipe":
        """A new Recipe with more ``name.param=value`` overrides applied (same rules as the CLI)."""
        if self.path is None:
            raise RecipeError("with_overrides needs a recipe loaded from a file; use recipe_from_dict")
        return load_recipe(self.path, list(self.overrides) + list(overrides), output=self.output)


# ---------------------------------------------------------------------------
# loading and merging

@dataclass
class _Entry:
    name: str
    step: str
    where: str
    enabled: bool = True
    params: dict = field(default_factory=dict)
    origins: dict = field(default_factory=dict)  # canonical key -> _Origin


def _check_top(data, pos: Positions):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError("a recipe must be a mapping of keys (input, output, steps, ...)", where=pos.where(()))
    for k in data:
        if k not in TOP_KEYS:
            raise RecipeError(f"unknown recipe key{registry.suggest(k, TOP_KEYS)} (allowed: {', '.join(TOP_KEYS)})",
                              where=pos.where((k,), key=True), key=str(k))
    if "schema_version" in data and data["schema_version"] != 1:
        raise RecipeError("allowed: 1", where=pos.where(("schema_version",)), key="schema_version")
    for k in ("name", "description", "extends", "output", "uref"):
        if data.get(k) is not None and not isinstance(data[k], str):
            raise RecipeError(f"expected a string, got {data[k]!r}", where=pos.where((k,)), key=k)
    steps = data.get("steps", [])
    if steps is None:
        steps = []
    if not isinstance(steps, list):
        raise RecipeError("expected a list of steps ({name, step, params})", where=pos.where(("steps",)), key="steps")
    for i, e in enumerate(steps):
        p = ("steps", i)
        if not isinstance(e, dict):
            raise RecipeError("a step must be a mapping {name, step, params}", where=pos.where(p), key=f"steps[{i}]")
        for k in e:
            if k not in STEP_KEYS:
                raise RecipeError(f"unknown step key{registry.suggest(k, STEP_KEYS)} (allowed: {', '.join(STEP_KEYS)}; "
                                  "parameters go under `params:`)", where=pos.where(p + (k,), key=True),
                                  key=f"steps[{i}].{k}")
        for k in ("name", "step", "after", "before"):
            if e.get(k) is not None and not isinstance(e[k], str):
                raise RecipeError(f"expected a string, got {e[k]!r}", where=pos.where(p + (k,)), key=f"steps[{i}].{k}")
        if "enabled" in e and not isinstance(e["enabled"], bool):
            raise RecipeError("expected true or false", where=pos.where(p + ("enabled",)), key=f"steps[{i}].enabled")
        if e.get("params") is not None and not isinstance(e["params"], dict):
            raise RecipeError("expected a mapping of parameter: value", where=pos.where(p + ("params",)),
                              key=f"steps[{i}].params")
        if not e.get("name") and not e.get("step"):
            raise RecipeError("a step needs `step:` (its type) and optionally `name:`", where=pos.where(p),
                              key=f"steps[{i}]")
    ad = data.get("astrodrizzle")
    if ad is not None and not isinstance(ad, dict):
        raise RecipeError("expected a mapping of AstroDrizzle parameter names", where=pos.where(("astrodrizzle",)),
                          key="astrodrizzle")
    ex = data.get("executor")
    if ex is not None:
        _check_executor(ex, lambda sub=(): pos.where(("executor",) + tuple(sub)))
    return data


def _check_executor(ex, where):
    if isinstance(ex, str):
        ex = {"kind": ex}
    if not isinstance(ex, dict):
        raise RecipeError("expected {kind: serial|threads|dask, workers: N, address: ...}", where=where(), key="executor")
    for k in ex:
        if k not in ("kind", "workers", "address"):
            raise RecipeError(f"unknown key{registry.suggest(k, ('kind', 'workers', 'address'))} "
                              "(allowed: kind, workers, address)", where=where((k,)), key=f"executor.{k}")
    if ex.get("kind", "serial") not in EXECUTOR_KINDS:
        raise RecipeError(f"allowed: one of {', '.join(EXECUTOR_KINDS)}", where=where(("kind",)), key="executor.kind")
    w = ex.get("workers")
    if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
        raise RecipeError("allowed: an integer >= 1", where=where(("workers",)), key="executor.workers")
    if ex.get("kind") == "dask" and not ex.get("address"):
        raise RecipeError("a dask executor needs `address:` (e.g. tcp://host:8786)", where=where(), key="executor")
    return ex


def _normalise_executor(ex):
    if ex is None:
        return {"kind": "serial", "workers": None, "address": None}
    if isinstance(ex, str):
        ex = {"kind": ex}
    return {"kind": ex.get("kind", "serial"), "workers": ex.get("workers"), "address": ex.get("address")}


def _merge_structure(layers, reg):
    """Build the ordered step list from the base and the recipe (see module docstring)."""
    plan: list[_Entry] = []
    for data, pos in layers:
        names_here = set()
        for i, e in enumerate(data.get("steps") or []):
            p = ("steps", i)
            name = e.get("name") or e.get("step")
            if name in names_here:
                raise RecipeError(f"step name '{name}' is used twice; give one of them a distinct `name:`",
                                  where=pos.where(p), key=f"steps[{i}].name")
            names_here.add(name)
            existing = next((x for x in plan if x.name == name), None)
            if existing is not None:
                if e.get("step") and e["step"] != existing.step:
                    raise RecipeError(f"step '{name}' is a '{existing.step}' in the base recipe and cannot become a "
                                      f"'{e['step']}'; give the new step another name", where=pos.where(p + ("step",)),
                                      key=f"{name}.step")
                if "enabled" in e:
                    existing.enabled = e["enabled"]
                if e.get("after") or e.get("before"):
                    plan.remove(existing)
                    _insert(plan, existing, e, pos, p)
                continue
            if not e.get("step"):
                hint = registry.suggest(name, [x.name for x in plan])
                raise RecipeError(f"no step named '{name}' to update{hint}; a new step needs `step:` (its type)",
                                  where=pos.where(p), key=f"steps[{i}]")
            registry.get_step(e["step"], where=pos.where(p + ("step",)))  # unknown or broken: a clear error
            entry = _Entry(name=name, step=e["step"], where=pos.where(p), enabled=e.get("enabled", True))
            _insert(plan, entry, e, pos, p)
    return plan


def _insert(plan, entry, e, pos, p):
    anchor = e.get("after") or e.get("before")
    if not anchor:
        plan.append(entry)
        return
    idx = next((j for j, x in enumerate(plan) if x.name == anchor), None)
    which = "after" if e.get("after") else "before"
    if idx is None:
        raise RecipeError(f"no step named '{anchor}'{registry.suggest(anchor, [x.name for x in plan])}",
                          where=pos.where(p + (which,)), key=f"{entry.name}.{which}")
    plan.insert(idx + 1 if which == "after" else idx, entry)


def _canonical_param(cls, key):
    """(canonical name, given_as or None) for a key inside a step's params."""
    if key in cls.Params.model_fields:
        return key, None
    if key in cls.aliases:
        return cls.aliases[key], key
    return key, None


def _alias_targets(plan, reg, alias):
    return [x for x in plan if alias in reg[x.step].aliases]


def _set_param(entry, canon, value, origin, seen, dotted):
    if (entry.name, canon) in seen:
        prev = seen[(entry.name, canon)]
        raise RecipeError(f"set twice in the same layer (also at {prev.where()})", where=origin.where(), key=dotted)
    seen[(entry.name, canon)] = origin
    entry.params[canon] = value
    entry.origins[canon] = origin


def _apply_alias(plan, reg, alias, value, origin, seen):
    everywhere = _alias_targets(plan, reg, alias)
    targets = [x for x in everywhere if x.enabled]
    if everywhere and not targets:  # the step is in the recipe but switched off: nothing to set
        return
    if not targets:
        owners = sorted(n for n, c in reg.items() if alias in c.aliases)
        if owners:
            raise RecipeError(f"AstroDrizzle name belongs to step type {', '.join(owners)}, which this recipe does "
                              "not run", where=origin.where(), key=alias)
        every = sorted({a for c in reg.values() for a in c.aliases})
        raise RecipeError(f"unknown AstroDrizzle parameter name{registry.suggest(alias, every)}",
                          where=origin.where(), key=alias)
    if len(targets) > 1:
        raise RecipeError(f"ambiguous: steps {', '.join(t.name for t in targets)} all accept it; "
                          f"use `<step name>.{reg[targets[0].step].aliases[alias]}=...`",
                          where=origin.where(), key=alias)
    t = targets[0]
    canon = reg[t.step].aliases[alias]
    origin.given_as = alias
    _set_param(t, canon, value, origin, seen, f"{t.name}.{canon}")


def _apply_layer_params(plan, reg, data, pos):
    seen = {}
    by_name = {x.name: x for x in plan}
    for i, e in enumerate(data.get("steps") or []):
        name = e.get("name") or e.get("step")
        entry = by_name[name]
        cls = reg[entry.step]
        for k, v in (e.get("params") or {}).items():
            canon, given_as = _canonical_param(cls, k)
            origin = _Origin(pos, ("steps", i, "params", k), given_as=given_as)
            _set_param(entry, canon, v, origin, seen, f"{name}.{canon}")
    for k, v in (data.get("astrodrizzle") or {}).items():
        _apply_alias(plan, reg, k, v, _Origin(pos, ("astrodrizzle", k)), seen)


def _parse_override(item):
    if not isinstance(item, str) or "=" not in item:
        raise RecipeError(f"override '{item}' is not of the form name.param=value (or final_pixfrac=value)",
                          where="command line")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key:
        raise RecipeError(f"override '{item}' has no key", where="command line")
    return key, parse_value(text, where=f"command line `{item}`")


def _load_layers(path):
    path = Path(path)
    data, pos = load_yaml(path)
    data = _check_top(data, pos)
    layers = [(data, pos)]
    base_path = None
    if data.get("extends"):
        base_path = (path.parent / data["extends"])
        if not base_path.exists():
            raise RecipeError(f"base recipe {base_path} not found (resolved relative to {path.parent})",
                              where=pos.where(("extends",)), key="extends")
        base, bpos = load_yaml(base_path)
        base = _check_top(base, bpos)
        if base.get("extends"):
            raise RecipeError(
                f"only one level of `extends` is allowed, and {base_path.name} (extended by {path.name}) "
                f"extends {base['extends']} itself; extend {base['extends']} directly and copy the settings "
                f"of {base_path.name} you need, or run {base_path.name} with command-line overrides "
                f"(e.g. drizzle_final.pixfrac=0.8)", where=bpos.where(("extends",)), key="extends")
        layers.insert(0, (base, bpos))
    return layers, base_path


def load_recipe(path, overrides=(), *, output=None, cwd=None) -> Recipe:
    """Load, merge, override and validate a recipe file.

    Parameters
    ----------
    path : path-like
        The recipe YAML.
    overrides : sequence of str
        ``name.param=value``, flat AstroDrizzle aliases ``final_pixfrac=0.8``,
        ``input=``/``output=``/``uref=``, ``executor.workers=2``, or for a provider
        input ``input.size=256``; values typed by the YAML 1.2 rules.
    output : path-like, optional
        Output directory; wins over the recipe's ``output:``.
    cwd : path-like, optional
        Directory against which relative ``output`` and input globs resolve
        (default: the current working directory).

    Raises
    ------
    RecipeError
        With ``file:line:col``, the dotted key and what is allowed.
    """
    layers, base_path = _load_layers(path)
    return _resolve(layers, Path(path), base_path, overrides, output, cwd)


def recipe_from_dict(data: dict, overrides=(), *, output=None, cwd=None, filename="<recipe>") -> Recipe:
    """Validate an in-memory recipe mapping (no ``extends``), e.g. one built by a sweep."""
    import yaml as _yaml
    text = _yaml.safe_dump(data, sort_keys=False)
    d, pos = load_yaml(text, filename=filename)
    d = _check_top(d, pos)
    if d.get("extends"):
        raise RecipeError("recipe_from_dict does not resolve `extends`; load the file instead", where=filename)
    return _resolve([(d, pos)], None, None, overrides, output, cwd, name_default=filename)


def _resolve(layers, path, base_path, overrides, output, cwd, name_default=None):
    reg = registry.LazySteps()  # imports only the steps this recipe names
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    plan = _merge_structure(layers, reg)
    for data, pos in layers:
        _apply_layer_params(plan, reg, data, pos)

    top: dict[str, Any] = {}
    top_where: dict[str, str] = {}
    for data, pos in layers:
        for k in ("name", "description", "input", "output", "uref", "executor", "sweep", "metrics"):
            if k in data:
                top[k] = data[k]
                top_where[k] = pos.where((k,))

    # command line: the third layer
    seen = {}
    by_name = {x.name: x for x in plan}
    for item in overrides:
        key, value = _parse_override(item)
        origin = _Origin(text=f"command line `{item}`")
        if "." in key:
            sname, _, pkey = key.partition(".")
            if sname not in by_name:
                if sname == "input" and isinstance(top.get("input"), dict):
                    top["input"] = dict(top["input"], **{pkey: value})  # input.size=256 for a provider
                    top_where["input"] = origin.text
                    continue
                if sname == "executor":
                    ex = dict(_normalise_executor(top.get("executor")))
                    ex[pkey] = value
                    top["executor"] = _check_executor(ex, lambda sub=(): origin.text)
                    continue
                raise RecipeError(f"no step named '{sname}' in this recipe{registry.suggest(sname, by_name)} "
                                  f"(steps: {', '.join(by_name)})", where=origin.text, key=key)
            entry = by_name[sname]
            canon, given_as = _canonical_param(reg[entry.step], pkey)
            origin.given_as = given_as
            _set_param(entry, canon, value, origin, seen, f"{sname}.{canon}")
        elif key in ("input", "output", "uref"):
            top[key] = value
            top_where[key] = origin.text
        else:
            _apply_alias(plan, reg, key, value, origin, seen)

    # validate each step's params; every step's mistakes are reported at once
    specs, errors = [], []
    for entry in plan:
        if not entry.enabled:
            continue
        cls = reg[entry.step]
        try:
            params = _validate_params(entry, cls)
        except RecipeError as exc:
            errors.append(exc)
            continue
        specs.append(StepSpec(name=entry.name, step=entry.step, cls=cls,
                              params=params, given=dict(entry.params), where=entry.where))
    if errors:
        first = errors[0]
        first.all_errors = [line for e in errors for line in getattr(e, "all_errors", None) or [str(e)]]
        raise first

    name = top.get("name") or (path.stem if path is not None else name_default)
    recipe_where = str(path) if path is not None else name_default

    # input
    spec = top.get("input")
    input_files = None
    if spec is None:
        raise RecipeError("the recipe has no `input:` (a glob, a list of globs, or {simulate: m2, ...})",
                          where=recipe_where, key="input")
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, list):
        if not spec or not all(isinstance(s, str) and s for s in spec):
            raise RecipeError("expected a glob string or a list of glob strings", where=top_where["input"], key="input")
        files = set()
        for pattern in spec:
            full = pattern if os.path.isabs(pattern) else str(cwd / pattern)
            matches = [Path(m) for m in globmod.glob(os.path.expanduser(full)) if Path(m).is_file()]
            if not matches:
                raise RecipeError(f"no file matches '{pattern}' (relative patterns are resolved against {cwd})",
                                  where=top_where["input"], key="input")
            files.update(m.resolve() for m in matches)
        input_files = sorted(files)
    elif isinstance(spec, dict):
        providers = [k for k in spec if isinstance(k, str) and k in registry.input_providers()]
        if not providers:
            first = next(iter(spec), None)
            registry.get_input_provider(str(first), where=top_where["input"])  # raises a clear error
        if len(providers) > 1:
            raise RecipeError(f"input names several providers ({', '.join(providers)}); give one",
                              where=top_where["input"], key="input")
        spec = dict(spec)
    else:
        raise RecipeError("expected a glob, a list of globs, or a provider mapping such as {simulate: m2}",
                          where=top_where["input"], key="input")

    out = output if output is not None else top.get("output")
    out_path = None
    if out is not None:
        out_path = Path(out)
        if not out_path.is_absolute():
            out_path = cwd / out_path
        out_path = Path(os.path.normpath(out_path))

    # uref: the recipe (or uref= on the command line) > the input provider's (decided
    # by the runner once the provider has run) > the environment variable `uref`.
    uref, uref_source = top.get("uref"), ("recipe" if top.get("uref") else None)
    if uref is None and input_files is not None and os.environ.get("uref"):
        uref, uref_source = os.environ["uref"], "environment variable uref"

    return Recipe(name=name, path=path, input=copy.deepcopy(spec), input_files=input_files, output=out_path,
                  uref=uref, uref_source=uref_source, executor=_normalise_executor(top.get("executor")),
                  steps=specs, extends=base_path, sweep=top.get("sweep"), metrics=top.get("metrics"),
                  description=top.get("description"), overrides=list(overrides))


def _validate_params(entry: _Entry, cls: type[Step]) -> Params:
    try:
        return cls.Params(**entry.params)
    except ValidationError as exc:
        raise _params_error(exc, entry, cls) from None
    except (TypeError, ValueError) as exc:  # validators raising outside pydantic's wrapping
        raise RecipeError(str(exc), where=entry.where, key=entry.name) from None


def _literal_choices(annotation) -> list[str]:
    """The string values of the Literal types inside an annotation (Optional, Union)."""
    import typing
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    return [c for arg in typing.get_args(annotation) for c in _literal_choices(arg)]


def _params_error(exc: ValidationError, entry: _Entry, cls: type[Step]) -> RecipeError:
    """Turn the first pydantic error into a RecipeError with position, key and what is allowed."""
    lines = []
    first = None
    fields = cls.Params.model_fields
    for err in exc.errors(include_url=False):
        loc = err.get("loc") or ()
        pkey = str(loc[0]) if loc else ""
        origin = entry.origins.get(pkey)
        dotted = f"{entry.name}.{pkey}" if pkey else entry.name
        if origin is not None and origin.given_as:
            dotted += f" (given as {origin.given_as})"
        if len(loc) > 1:
            dotted += "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in loc[1:])
        if err["type"] == "extra_forbidden":
            choices = list(fields) + list(cls.aliases)
            hint = registry.suggest(pkey, choices)
            msg = f"unknown parameter of step type '{entry.step}'{hint}"
            if not hint:
                msg += f" (parameters: {', '.join(fields)})"
            where = origin.where(key=True) if origin else entry.where
        elif err["type"] == "literal_error" and pkey in fields:
            # pydantic's text already lists the choices: say it once, with a suggestion
            given = err.get("input")
            hint = registry.suggest(given, _literal_choices(fields[pkey].annotation)) if isinstance(given, str) else ""
            msg = f"{given!r} is not allowed; allowed: {allowed(fields[pkey])}{hint}"
            where = origin.where(sub=loc[1:]) if origin else entry.where
        else:
            msg = err["msg"]
            if pkey in fields:
                msg += f"; allowed: {allowed(fields[pkey])}"
            if err["type"] == "missing":
                where = entry.where
            else:
                where = origin.where(sub=loc[1:]) if origin else entry.where
        text = f"{where}: {dotted}: {msg}"
        lines.append(text)
        if first is None:
            first = (msg, where, dotted)
    msg, where, dotted = first
    error = RecipeError(msg, where=where, key=dotted)
    error.all_errors = lines
    return error

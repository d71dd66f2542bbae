"""Find steps, input providers and CLI subcommands through entry points.

Three entry-point groups, all loaded lazily and once per process:

``drizzleflow.steps``
    ``name = "package.module:StepClass"``; the entry-point name must equal the
    class's ``name`` (a mismatch is a warning and the entry-point name wins).
``drizzleflow.inputs``
    ``simulate = "package.module:provide"``: a callable
    ``provide(spec: dict, dest: pathlib.Path) -> list[path] | dict`` that makes
    the input files of a recipe whose ``input:`` is a mapping naming it
    (``input: {simulate: m2, seed: 1}``).  It writes into ``dest`` (a folder the
    engine owns inside the output directory) and returns the input file paths,
    or a dict ``{"files": [...], "uref": path_or_None}``.
``drizzleflow.commands``
    ``info = "package.module:register"``: ``register(subparsers)`` adds an
    argparse subparser and sets ``func(args) -> int | None`` on it.

A plugin that fails to import is logged as a WARNING naming the entry point
and its distribution, and skipped; it never stops the other steps.
"""
from __future__ import annotations

import difflib
import logging
from importlib.metadata import entry_points

from .errors import RecipeError
from .step import Step

__all__ = ["steps", "step_names", "get_step", "LazySteps", "input_providers", "get_input_provider",
           "commands", "reset", "suggest"]

log = logging.getLogger("drizzleflow.registry")

STEP_GROUP = "drizzleflow.steps"
INPUT_GROUP = "drizzleflow.inputs"
COMMAND_GROUP = "drizzleflow.commands"

_cache: dict[str, dict] = {}
_single: dict[tuple, object] = {}   # (group, name) -> loaded object, or an Exception when it failed


def reset():
    """Forget loaded entry points (tests install and remove plugins at run time)."""
    _cache.clear()
    _single.clear()
    import importlib
    importlib.invalidate_caches()


def _origin(ep):
    dist = getattr(ep, "dist", None)
    if dist is not None:
        return f"{dist.name} {dist.version}"
    return ep.value.split(":")[0].split(".")[0]


def _entry_points(group):
    # scanning installed distributions costs ~6 ms; get_step() asks once per step
    # reference of a recipe, so the scan is kept until reset()
    key = group + ":entry_points"
    if key in _cache:
        return _cache[key]
    found = {}
    for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
        if ep.name in found:
            if (group, ep.name, "dup") not in _single:
                _single[(group, ep.name, "dup")] = True
                log.warning("%s: entry point '%s' defined twice (%s); keeping the first", group, ep.name, ep.value)
            continue
        found[ep.name] = ep
    _cache[key] = found
    return found


def _load_one(group, ep):
    key = (group, ep.name)
    if key not in _single:
        try:
            _single[key] = ep.load()
        except Exception as exc:  # a broken plugin must not take the engine down
            log.warning("plugin '%s' (%s = %s, from %s) failed to import and is skipped: %s: %s",
                        ep.name, group, ep.value, _origin(ep), type(exc).__name__, exc)
            _single[key] = exc
    return _single[key]


def _load_group(group):
    if group in _cache:
        return _cache[group]
    found = {}
    for name, ep in _entry_points(group).items():
        obj = _load_one(group, ep)
        if not isinstance(obj, Exception):
            found[name] = obj
    _cache[group] = found
    return found


def _check_step(name, obj):
    if not (isinstance(obj, type) and issubclass(obj, Step)):
        log.warning("plugin '%s' (%s) is not a drizzleflow Step subclass; skipped", name, STEP_GROUP)
        return False
    if obj.name and obj.name != name:
        log.warning("step class %s.%s declares name '%s' but is registered as '%s'; using '%s'",
                    obj.__module__, obj.__qualname__, obj.name, name, name)
    return True


def steps() -> dict[str, type[Step]]:
    """All registered step classes by name, sorted by name (imports every step plugin)."""
    if STEP_GROUP + ":checked" in _cache:
        return _cache[STEP_GROUP + ":checked"]
    out = {name: obj for name, obj in _load_group(STEP_GROUP).items() if _check_step(name, obj)}
    _cache[STEP_GROUP + ":checked"] = out
    return out


def step_names() -> list[str]:
    """Names of the registered steps, without importing them."""
    return list(_entry_points(STEP_GROUP))


class LazySteps(dict):
    """A read-only view of the step registry that imports a step only when it is
    used (``reg[name]``); ``items()``/``values()``/iteration import them all.
    Loading a recipe imports just the steps it names."""

    def __init__(self):
        super().__init__()
        self._names = step_names()

    def __contains__(self, name):
        return name in self._names or name in _cache.get(STEP_GROUP + ":checked", {})

    def __getitem__(self, name):
        return get_step(name)

    def __iter__(self):
        return iter(steps())

    def __len__(self):
        return len(self._names)

    def keys(self):
        return steps().keys()

    def items(self):
        return steps().items()

    def values(self):
        return steps().values()

    def get(self, name, default=None):
        return get_step(name) if name in self else default


def suggest(word, choices):
    """" (did you mean `x`?)" or "" using difflib."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean `{match[0]}`?" if match else ""


def get_step(name, where=None) -> type[Step]:
    """The step class registered as ``name`` (importing only that plugin); a
    RecipeError naming the known ones, or the import failure, otherwise."""
    cached = _cache.get(STEP_GROUP + ":checked")
    if cached is not None and name in cached:
        return cached[name]
    eps = _entry_points(STEP_GROUP)
    if name in eps:
        obj = _load_one(STEP_GROUP, eps[name])
        if isinstance(obj, Exception):
            raise RecipeError(f"step type '{name}' is registered by {_origin(eps[name])} but failed to import "
                              f"({type(obj).__name__}: {obj})", where=where)
        if not _check_step(name, obj):
            raise RecipeError(f"step type '{name}' ({eps[name].value}) is not a drizzleflow Step", where=where)
        return obj
    hint = suggest(name, eps)
    known = ", ".join(sorted(eps)) or "none"
    raise RecipeError(f"unknown step type '{name}'{hint} (registered: {known}; see `drizzleflow steps`)",
                      where=where)


def input_providers() -> dict:
    return _load_group(INPUT_GROUP)


def get_input_provider(name, where=None):
    provs = input_providers()
    if name in provs:
        return provs[name]
    if not provs:
        raise RecipeError(f"input provider '{name}' is not available: no package registers any "
                          f"'{INPUT_GROUP}' entry point (is the simulator installed?)", where=where)
    raise RecipeError(f"unknown input provider '{name}'{suggest(name, provs)} (available: {', '.join(provs)})",
                      where=where)


def commands() -> dict:
    return _load_group(COMMAND_GROUP)

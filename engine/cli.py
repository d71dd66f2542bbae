"""The ``drizzleflow`` command line.

Subcommands: ``run``, ``validate``, ``steps``, ``explain``, ``schema``,
``import-astrodrizzle``, plus those plugins add through the
``drizzleflow.commands`` entry-point group.  A ``DrizzleflowError`` (a user
mistake: bad recipe, bad input file, refused output directory) is printed as
one line ``drizzleflow: error: ...`` with exit status 2; any other exception is
a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import logging
import os
import sys
import threading
from pathlib import Path

from . import __version__, registry
from .describe import allowed, default_text, type_name
from .errors import DrizzleflowError, RecipeError

__all__ = ["main", "run", "build_parser"]

log = logging.getLogger("drizzleflow")


class _ConsoleFormatter(logging.Formatter):
    """Plain messages for progress; ``WARNING: ...`` / ``ERROR: ...`` prefixes otherwise."""

    def format(self, record):
        msg = super().format(record)
        return msg if record.levelno < logging.WARNING else f"{record.levelname}: {msg}"


def _setup_logging(verbosity):
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger("drizzleflow")
    root.setLevel(logging.DEBUG)
    for old in [h for h in root.handlers if getattr(h, "_drizzleflow_cli", False)]:
        root.removeHandler(old)  # main() called again in the same process (tests, notebooks)
    handler = logging.StreamHandler(sys.stderr)
    handler._drizzleflow_cli = True
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s") if verbosity > 0
                         else _ConsoleFormatter())
    root.addHandler(handler)
    logging.captureWarnings(True)


def _add_overrides(p):
    p.add_argument("overrides", nargs="*", metavar="name.param=value",
                   help="override a step parameter (drizzle_final.pixfrac=0.8) or an AstroDrizzle name "
                        "(final_pixfrac=0.8); values follow YAML 1.2 typing")


@contextlib.contextmanager
def _collector_out_of_the_way():
    """Python's cyclic garbage collector off while the step modules and the recipe
    load; then (``loaded()``) what was loaded is frozen (``gc.freeze``) and the
    collector turned back on; everything is unfrozen on the way out, so that an
    in-process caller (the tests, a notebook) is left as it was.

    Imports (astropy above all) allocate hundreds of thousands of long-lived
    objects: they set off ~150 young collections and one full one, and each full
    collection later in the run walks all of them again.  A run spent 0.10-0.14 s
    of its main thread in the collector (pixfrac-only rerun and full M2 run),
    0.02-0.04 s with this."""
    was_enabled, frozen = gc.isenabled(), False

    def loaded():
        nonlocal frozen
        if not frozen:
            frozen = True
            gc.freeze()
            if was_enabled:
                gc.enable()

    gc.disable()
    try:
        yield loaded
    finally:
        loaded()
        gc.unfreeze()


def cmd_run(args):
    from .recipe import load_recipe
    from .runner import run_recipe
    from .sweep import is_sweep_recipe  # sweep hook: a recipe with `sweep:` runs all its points
    if is_sweep_recipe(args.recipe):
        from .sweep_run import cli_run
        return cli_run(args)
    with _collector_out_of_the_way() as loaded:
        recipe = load_recipe(args.recipe, args.overrides, output=args.output)
        loaded()
        if args.dry_run:
            print(f"{args.recipe}: recipe '{recipe.name}' -> {recipe.output}: "
                  + ", ".join(s.name for s in recipe.steps))
            return 0
        result = run_recipe(recipe, overwrite=args.overwrite, force=args.force, workers=args.workers,
                            dask_scheduler=args.dask_scheduler, progress=None if not args.quiet else False)
    print(result.summary())
    return 0


def cmd_validate(args):
    from .recipe import load_recipe
    from .sweep import cli_validate, is_sweep_recipe
    if is_sweep_recipe(args.recipe):
        return cli_validate(args)
    recipe = load_recipe(args.recipe, args.overrides)
    n = len(recipe.steps)
    inputs = (f"{len(recipe.input_files)} input files" if recipe.input_files is not None
              else f"input provider {recipe.input}")
    print(f"{args.recipe}: OK — recipe '{recipe.name}', {n} steps ({', '.join(s.name for s in recipe.steps)}), "
          f"{inputs}")
    if args.show:
        import yaml
        print(yaml.safe_dump(recipe.resolved(), sort_keys=False, default_flow_style=None, width=100), end="")
    return 0


def _param_rows(cls):
    rev = {}
    for a, t in cls.aliases.items():
        rev.setdefault(t, []).append(a)
    rows = []
    for name, f in cls.Params.model_fields.items():
        rows.append((name, type_name(f.annotation), default_text(f), allowed(f), f.description or "",
                     ", ".join(sorted(rev.get(name, [])))))
    return rows


def cmd_steps(args):
    reg = registry.steps()
    if not reg:
        print("no steps registered")
        return 0
    for name, cls in reg.items():
        print(f"{name}  (v{cls.version}, {cls.__module__}.{cls.__qualname__})")
        if cls.describe():
            print(f"    {cls.describe()}")
        if cls.reads or cls.writes:
            print(f"    reads: {', '.join(cls.reads) or '-'}; writes: {', '.join(cls.writes) or '-'}")
        for pname, _t, default, _allowed, _d, aliases in _param_rows(cls):
            alias = f"  (alias: {aliases})" if aliases else ""
            print(f"    {pname} = {default}{alias}")
    return 0


def cmd_explain(args):
    cls = registry.get_step(args.step, where="explain")
    print(f"{args.step} (v{cls.version}): {cls.describe()}")
    doc = (cls.__doc__ or "").strip().splitlines()[1:]
    if any(line.strip() for line in doc):
        import textwrap
        print(textwrap.indent(textwrap.dedent("\n".join(doc)).strip(), "  "))
    print(f"reads: {', '.join(cls.reads) or '-'}; writes: {', '.join(cls.writes) or '-'}")
    print("parameters:")
    for pname, tname, default, allow, desc, aliases in _param_rows(cls):
        print(f"  {pname}")
        print(f"      type: {tname}")
        print(f"      default: {default}")
        if allow != tname:
            print(f"      allowed: {allow}")
        if aliases:
            print(f"      AstroDrizzle name: {aliases}")
        if desc:
            print(f"      {desc}")
    return 0


def cmd_schema(args):
    from .schema import schema_text, write_schema
    if args.stdout:
        print(schema_text(), end="")
        return 0
    path = write_schema(args.out)
    print(f"wrote {path}")
    return 0


def cmd_import(args):
    from .adimport import import_astrodrizzle
    text = args.call
    p = Path(text)
    if "(" not in text and p.exists():
        text = p.read_text(encoding="utf-8")
    recipe_text, _warnings = import_astrodrizzle(text, output=args.output)
    print(recipe_text, end="")
    return 0


BUILTIN_COMMANDS = ("run", "validate", "steps", "explain", "schema", "import-astrodrizzle")


def build_parser(load_plugins=True):
    parser = argparse.ArgumentParser(prog="drizzleflow",
                                     description="Align and drizzle-combine dithered HST images with YAML recipes.")
    parser.add_argument("--version", action="version", version=f"drizzleflow {__version__}")
    verb = argparse.ArgumentParser(add_help=False)
    verb.add_argument("-v", "--verbose", action="count", default=0, help="more log output (debug)")
    verb.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", parents=[verb], help="run a recipe")
    p.add_argument("recipe", help="recipe YAML file, e.g. configs/m2_tutorial.yaml (a recipe with `sweep:` "
                   "runs every point)")
    _add_overrides(p)
    p.add_argument("--output", "-o", help="output directory (wins over the recipe's output:)")
    p.add_argument("--overwrite", action="store_true",
                   help="accept an output directory that holds another recipe's run (or other files) and start a "
                        "fresh manifest there; for the same recipe the cache is kept")
    p.add_argument("--force", action="store_true", help="rerun every step, ignoring the cache")
    p.add_argument("--workers", type=int, help="threads for parallel work items")
    p.add_argument("--dask-scheduler", metavar="ADDRESS", help="run work items on this Dask scheduler")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and print the plan (a sweep's expanded points), run nothing")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", parents=[verb], help="check a recipe without running it")
    p.add_argument("recipe", help="recipe YAML file")
    _add_overrides(p)
    p.add_argument("--show", action="store_true", help="print the resolved recipe")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("steps", parents=[verb], help="list registered steps, their parameters and defaults")
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser("explain", parents=[verb], help="describe one step's parameters")
    p.add_argument("step")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("schema", parents=[verb], help="write the recipe JSON Schema")
    p.add_argument("--out", default="schemas", help="folder (default: schemas/)")
    p.add_argument("--stdout", action="store_true", help="print instead of writing")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("import-astrodrizzle", parents=[verb],
                       help="translate an AstroDrizzle(...) call (text or a file) into a recipe")
    p.add_argument("call", help="\"AstroDrizzle('*c0m.fits', final_pixfrac=1.0, ...)\" or a file holding it")
    p.add_argument("--output", default="drizzleflow_output", help="output directory written into the recipe")
    p.set_defaults(func=cmd_import)

    for name, register in (registry.commands() if load_plugins else {}).items():
        if name in sub.choices:
            log.warning("plugin command '%s' clashes with a built-in command; skipped", name)
            continue
        try:
            register(sub)
        except Exception as exc:
            log.warning("plugin command '%s' failed to register: %s: %s", name, type(exc).__name__, exc)
    for name, sp in sub.choices.items():  # plugin subparsers get -v/-q too when they lack them
        if not any("--quiet" in a.option_strings for a in sp._actions):
            sp.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)
            sp.add_argument("-q", "--quiet", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    # plugin import warnings must be visible before the parser exists
    pre = logging.StreamHandler(sys.stderr)
    pre.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    pre.setLevel(logging.WARNING)
    root = logging.getLogger("drizzleflow")
    root.addHandler(pre)
    argv = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    try:
        # plugin subcommands are imported only when they may be the one asked for (or for --help)
        parser = build_parser(load_plugins=first not in BUILTIN_COMMANDS)
    finally:
        root.removeHandler(pre)
    args, extra = parser.parse_known_args(argv)
    if extra:  # overrides given after options (run recipe.yaml -q a.b=1)
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    verbosity = -1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0)
    _setup_logging(verbosity)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        rc = func(args)
    except RecipeError as exc:
        print(f"drizzleflow: error: {exc}", file=sys.stderr)
        extra = getattr(exc, "all_errors", [])[1:]
        for line in extra:
            print(f"drizzleflow: error: {line}", file=sys.stderr)
        return 2
    except DrizzleflowError as exc:
        print(f"drizzleflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("drizzleflow: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")
        return 0
    return int(rc or 0)


def run():
    """The ``drizzleflow`` console command: :func:`main` with one BLAS thread, then a quick exit.

    Tearing the interpreter down (every module, every object astropy and numpy
    made, a last full garbage collection) took 0.2 s after each run, 10% of a
    pixfrac-only rerun.  When the command is done and nothing else runs -- no
    other thread, no child process, no Dask client -- the exit handlers run
    (logging flushes and closes its files), the standard streams are flushed
    and the process ends with ``os._exit``.  Every product is already closed
    and renamed into place by then.  In-process callers use :func:`main`, which
    returns normally.
    """
    # the compiled cores run in our own threads; numpy's BLAS only ever sees small
    # matrices (sky matching, PSF fits), where its second thread only spins (0.1 CPU-s
    # after start-up) and competes with a sweep's parallel points; an explicit
    # setting wins.  Before numpy is imported: importing this module does not.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    rc = main()
    if threading.active_count() > 1 or "distributed" in sys.modules or _children():
        sys.exit(rc)
    try:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except BaseException:  # noqa: BLE001 - let the normal exit report it
        sys.exit(rc)
    os._exit(rc)


def _children() -> bool:
    mp = sys.modules.get("multiprocessing")
    return bool(mp is not None and mp.active_children())


if __name__ == "__main__":
    run()

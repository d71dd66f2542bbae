"""The seam between the engine and the steps: ``Step``, ``Params`` and ``Context``.

A step class declares its registry ``name``, a pydantic ``Params`` model, the
product names it ``reads`` and ``writes``, optional AstroDrizzle-style flat
``aliases`` (``{"final_pixfrac": "pixfrac"}``), and implements ``run``.  The
runner owns the lifecycle (resolve and log parameters, cache, timing,
manifest); a step only does its work.

Products are JSON-serialisable values (numbers, strings, lists, dicts) kept by
name in ``Context.products``.  Files are stored as paths relative to the run's
output directory (``Context.rel``/``Context.abs`` convert); the engine records
every product in the run manifest so a later run, a resumed run or another
sweep point can pick them up without guessing file names.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

from pydantic import BaseModel, ConfigDict

__all__ = ["Params", "Step", "Context"]


class Params(BaseModel):
    """Base of every step's parameter model: unknown keys are errors, values are
    validated on assignment, and every field must carry a description."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class Step:
    """Base class of all recipe steps.

    Subclasses set the class attributes and implement :meth:`run`.  A step
    must be deterministic for given inputs and parameters (the cache relies on
    it) and must write files only through ``context`` paths inside the output
    directory, atomically (``drizzleflow.engine.atomic``).
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    aliases: ClassVar[dict[str, str]] = {}
    #: bump when the step's algorithm changes, so cached products are not reused
    version: ClassVar[str] = "1"
    #: a step whose work runs in worker processes sets this and calls
    #: ``context.preflight()`` once they are busy, before it writes anything where
    #: later steps would see it: when it is the first step to run, the runner then
    #: checks the later steps in the meantime instead of before it (ingest hides
    #: ~0.2 s of header and WCS checks behind its conversions this way)
    preflight_in_run: ClassVar[bool] = False

    def run(self, context: "Context", params: Params) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def preflight(self, context: "Context", params: Params) -> None:
        """Cheap checks on the archive inputs (``context.inputs``) that the runner
        calls for every step that will run, before the first of them runs; raise a
        ``DrizzleflowError`` to stop a recipe that cannot succeed.  No products exist
        yet.  ``run`` must make the same checks before it starts work: the first step
        to run is not preflighted (nothing runs before it)."""

    @classmethod
    def key_files(cls, params: Params) -> list:
        """Files outside the run that the step reads because its parameters name
        them (region files, reference images, catalogs).  Their contents are part
        of the step's cache key, so editing one reruns the step.  Relative paths
        are taken from the current directory, as the steps themselves do."""
        return []

    @classmethod
    def describe(cls) -> str:
        """First line of the class docstring, for ``drizzleflow steps``."""
        doc = (cls.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""


@dataclass
class Context:
    """What a step sees: the inputs, the output directory, named products, a
    logger, a progress helper and an executor for independent work items."""

    outdir: Path
    inputs: list[Path] = field(default_factory=list)
    products: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # recipe-level settings, e.g. uref, force
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("drizzleflow"))
    progress_enabled: bool = False
    executor: Any = None  # engine.executors.Executor; None = serial
    step_name: str = ""
    #: names passed to put() since the runner last cleared it (the current step's products)
    written: set = field(default_factory=set)
    #: the later steps' checks, left by the runner for a ``preflight_in_run`` step to call
    pending_preflight: Any = None

    def __getstate__(self):
        """Pickle without the executor: work items shipped to Dask workers (which
        capture the context in their closures) must not carry the client."""
        state = self.__dict__.copy()
        state["executor"] = None
        state["pending_preflight"] = None   # a closure over the runner, and the parent's job
        return state

    # -- paths ---------------------------------------------------------
    def path(self, *parts) -> Path:
        """A path inside the output directory (parents created)."""
        p = Path(self.outdir, *parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def rel(self, path) -> str:
        """Store a path as a product: relative to the output dir when inside it."""
        p = Path(path).resolve()
        try:
            return str(p.relative_to(Path(self.outdir).resolve()))
        except ValueError:
            return str(p)

    def abs(self, stored) -> Path:
        """Turn a stored product path back into an absolute path."""
        p = Path(stored)
        return p if p.is_absolute() else Path(self.outdir, p)

    # -- products ------------------------------------------------------
    def get(self, name, default=...):
        if name in self.products:
            return self.products[name]
        if default is ...:
            from .errors import StepError
            raise StepError(self.step_name or "?", f"needs product '{name}', which no earlier step made; "
                            "add the step that writes it to the recipe")
        return default

    def put(self, name, value) -> None:
        self.products[name] = value
        self.written.add(name)

    # -- work ----------------------------------------------------------
    def preflight(self) -> None:
        """Run the later steps' checks the runner left for this step, if any (once);
        a failed check raises here, and the step stops and cleans up as for its own
        errors."""
        checks, self.pending_preflight = self.pending_preflight, None
        if checks is not None:
            checks()

    def progress(self, items: Iterable, desc: str = "", total: int | None = None):
        """Iterate with a progress bar on a terminal, plain log lines otherwise."""
        from .progress import progress
        return progress(items, desc=desc, total=total, enabled=self.progress_enabled, log=self.log)

    def map(self, func, items: Iterable):
        """Apply ``func`` to independent items through the run's executor, in order."""
        items = list(items)
        if self.executor is None:
            return [func(i) for i in items]
        return self.executor.map(func, items)

"""Where independent work items run: in process, in threads, or on a Dask cluster.

Every executor's ``map(func, items)`` returns the results as a list in the
order of ``items`` (never completion order), so a step that sums the results
in that order gets the same bytes whatever the executor.  Threads help when the
work releases the GIL (the Cython core, numpy, astropy I/O).  Dask receives
``func`` and the items by pickling: pass plain arrays and paths, not open files
or astropy WCS objects (which are not thread-safe either; see
astropy/reproject ``_common.py``).
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from .errors import DrizzleflowError

__all__ = ["Executor", "SerialExecutor", "ThreadExecutor", "DaskExecutor", "make_executor"]

log = logging.getLogger("drizzleflow.executors")


class Executor:
    """Interface: ``map(func, items) -> list`` in input order; ``close()``."""

    kind = "serial"
    workers = 1

    def map(self, func, items):
        return [func(i) for i in items]

    def close(self):
        pass

    def describe(self):
        return self.kind

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialExecutor(Executor):
    """Run items one after another in the calling thread (the default)."""


class ThreadExecutor(Executor):
    """Run items on a pool of ``workers`` threads."""

    kind = "threads"

    def __init__(self, workers):
        self.workers = int(workers)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="drizzleflow")

    def map(self, func, items):
        return list(self._pool.map(func, list(items)))

    def close(self):
        self._pool.shutdown(wait=True)

    def describe(self):
        return f"threads ({self.workers} workers)"


class DaskExecutor(Executor):
    """Run items on a Dask distributed scheduler at ``address`` (``tcp://host:8786``)."""

    kind = "dask"

    def __init__(self, address):
        try:
            from distributed import Client
        except ImportError:
            raise DrizzleflowError("the dask executor needs the 'distributed' extra: "
                                   "pip install 'drizzleflow[distributed]'") from None
        self.address = address
        try:
            self._client = Client(address, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise DrizzleflowError(f"cannot connect to the Dask scheduler at {address}: {exc}") from None
        self.workers = len(self._client.scheduler_info().get("workers", {})) or 1

    def map(self, func, items):
        items = list(items)
        if not items:
            return []
        futures = self._client.map(func, items, pure=False)
        return self._client.gather(futures)

    def close(self):
        self._client.close()

    def describe(self):
        return f"dask ({self.address}, {self.workers} workers)"


def make_executor(kind="serial", workers=None, address=None) -> Executor:
    """Build the executor a recipe or the command line asks for."""
    if address:
        return DaskExecutor(address)
    if kind == "dask":
        raise DrizzleflowError("the dask executor needs an address (--dask-scheduler tcp://host:8786)")
    if kind == "threads" or (workers and workers > 1):
        return ThreadExecutor(workers or 2)
    return SerialExecutor()

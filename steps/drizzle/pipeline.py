"""Images drizzled one after another without a barrier between them.

:meth:`Drizzle.add_images` splits one call's square-kernel work into units of
whole input tiles and runs them phase by phase (bands, even edges, odd edges,
the rest), with every thread waiting at the end of each phase.  A caller that
adds one chip at a time (the final drizzle, 24 chips per band of rows on
WFPC2) pays those waits per chip: a phase often holds two or three units of
unequal size, and two threads then keep only ~1.2 cores busy.

:class:`DrizzlePipeline` takes the same units but lets a unit start as soon as
every unit submitted before it whose rows overlap its own has finished -- the
next chip's units fill the gaps of this one's.  Every output pixel still
receives its contributions in submission order (the order of ``add_images``
one image at a time), so the result is bit-identical to that, whatever the
number of threads.
"""
from __future__ import annotations

import heapq
import itertools
import threading

from .core import _CTX_BITS, Drizzle, DrizzleInput, _check_threads

__all__ = ["DrizzlePipeline"]


class _Unit:
    __slots__ = ("seq", "job", "rows", "code", "label", "waiting", "after")

    def __init__(self, seq, job, rows, code, label):
        self.seq, self.job, self.rows, self.code, self.label = seq, job, rows, code, label
        self.waiting = 0          # earlier overlapping units not finished yet
        self.after = []           # later units waiting for this one


class DrizzlePipeline:
    """Add images to ``driz`` in ``threads`` worker threads, one image after another.

    Use as a context manager; :meth:`add_image` takes the arguments of
    :meth:`Drizzle.add_image` and returns once the image's work is queued.  At
    most ``ahead`` images are queued or running, so the caller's next image
    waits for memory to free rather than piling up.  Leaving the ``with``
    block waits for all work; an error in a worker is raised there (or by the
    next :meth:`add_image`), and work not yet started is dropped.

    Kernels other than ``square`` (and the point kernel that a tiny pixfrac
    selects) have no tile units: the pipeline drains and adds them with
    :meth:`Drizzle.add_images`.
    """

    def __init__(self, driz: Drizzle, threads=2, ahead=2):
        self.driz = driz
        self.threads = _check_threads(threads)
        self.ahead = max(1, int(ahead))
        self._cv = threading.Condition()
        self._ready = []            # heap of (seq, unit): earliest submitted first
        self._active = []           # units submitted and not finished
        self._jobs = {}             # id(job) -> units left
        self._seq = itertools.count()
        self._error = None
        self._stop = False
        self._workers = [threading.Thread(target=self._work, name=f"drizzle-pipeline-{k}", daemon=True)
                         for k in range(self.threads)]
        for w in self._workers:
            w.start()

    # ---- caller side -------------------------------------------------------------
    def add_image(self, data, pixmap, threads=None, **kw) -> int:
        """Queue one image (``threads`` is ignored: the pipeline's own are used).
        Returns the number of input pixels skipped for NaN data or map entries."""
        item = DrizzleInput(data=data, pixmap=pixmap, **kw)
        driz = self.driz
        self._raise_error()
        square = driz.kernel == "square" and item.pixfrac >= 0.001
        new_id = driz._next_id if item.input_id is None else int(item.input_id)
        new_plane = not driz._disable_ctx and new_id >= 0 and new_id // _CTX_BITS >= driz._ctx.shape[0]
        if not square or new_plane:
            # no tile units, or the context image is about to be replaced by a larger one
            self.drain()
            if not square:
                return driz.add_images([item], threads=self.threads)
        job = driz._prepare(item)
        labels, counts, phases = driz._tile_plan([job])
        driz.ninputs += 1
        driz._cache = None
        driz._threads = self.threads
        with self._cv:
            self._wait_for_room_locked()
            units = [_Unit(next(self._seq), job, rows, code, labels[0]) for phase in phases for code, rows in phase]
            if not units:
                return job.nskipped
            self._jobs[id(job)] = len(units)
            for u in units:
                lo, hi = u.rows
                for v in self._active:
                    if v.rows[0] < hi and lo < v.rows[1]:   # rows overlap: v's contributions come first
                        v.after.append(u)
                        u.waiting += 1
                self._active.append(u)
                if u.waiting == 0:
                    heapq.heappush(self._ready, (u.seq, u))
            self._cv.notify_all()
        return job.nskipped

    def wait_for_room(self):
        """Wait until fewer than ``ahead`` images are queued or running: a caller
        that calls this before preparing its next image holds no more than that."""
        with self._cv:
            self._wait_for_room_locked()

    def _wait_for_room_locked(self):
        while len(self._jobs) >= self.ahead and self._error is None:
            self._cv.wait()
        self._raise_error()

    def drain(self):
        """Wait until every queued unit has run."""
        with self._cv:
            while self._active and self._error is None:
                self._cv.wait()
        self._raise_error()

    def close(self, cancel=False):
        """Finish (or, with ``cancel``, drop the queued work) and stop the workers."""
        with self._cv:
            if cancel and self._error is None:
                self._error = _Cancelled()
            while self._active:
                self._cv.wait()
            self._stop = True
            self._cv.notify_all()
        for w in self._workers:
            w.join()
        if not cancel:
            self._raise_error()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(cancel=exc_type is not None)
        return False

    def _raise_error(self):
        err = self._error
        if err is not None and not isinstance(err, _Cancelled):
            raise err

    # ---- worker side -------------------------------------------------------------
    def _work(self):
        while True:
            with self._cv:
                while not self._ready and not self._stop:
                    self._cv.wait()
                if self._stop and not self._ready:
                    return
                _, unit = heapq.heappop(self._ready)
                skip = self._error is not None
            if not skip:
                try:
                    self.driz._run(unit.job, unit.rows[0], unit.rows[1], unit.label, unit.code)
                except BaseException as exc:   # noqa: BLE001 - handed to the caller
                    with self._cv:
                        if self._error is None:
                            self._error = exc
            with self._cv:
                self._active.remove(unit)
                for v in unit.after:
                    v.waiting -= 1
                    if v.waiting == 0:
                        heapq.heappush(self._ready, (v.seq, v))
                key = id(unit.job)
                self._jobs[key] -= 1
                if self._jobs[key] == 0:
                    del self._jobs[key]
                unit.job = unit.after = None   # the chip's arrays go with its last unit
                self._cv.notify_all()


class _Cancelled(Exception):
    """Marks a pipeline whose caller left with an error: queued units are dropped."""


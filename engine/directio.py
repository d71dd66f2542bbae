"""Products the run does not read back, written around the page cache.

A buffered write copies every byte into page-cache pages that the kernel
takes from free memory.  On a virtual machine that hands free memory back
to its host (balloon free-page reporting, as on the 2-core virtual
machines we benchmark on) each such page first costs a fault in the host:
writing 528 MB into a new file took 1.5-1.7 s of system time there, and
0.03 CPU-s (0.45 s of waiting on the device) with ``O_DIRECT``, which sends
the data from our own, already mapped, buffer to the device (a throwaway
script's measurements, not a committed command's).

The final drizzle's products (138 MB on M2) are written this way: nothing in
the run reads them again.  A pixfrac-only rerun took 1.38 instead of 1.52 s
(2.00 against 2.40 CPU-s: ``drizzleflow run`` with and without
``DRIZZLEFLOW_DIRECT_IO=0``, six pairs interleaved by hand).  Files that a
later step reads at once -- the single drizzles, the median -- stay in the
page cache: written directly (a variant measured by hand and not kept) they
must be read back from the device, and the median then waited on it (0.64
against 0.38 s) for as much as the separate drizzle saved, or more,
depending on the machine's state.

Where ``O_DIRECT`` does not exist (macOS, Windows), the file system refuses
it (tmpfs), the device rejects the alignment or ``DRIZZLEFLOW_DIRECT_IO=0``
is set, the same bytes are written through the page cache.
"""
from __future__ import annotations

import contextlib
import errno
import mmap
import os
import threading

__all__ = ["BLOCK", "DirectWriter", "direct_io_enabled"]

#: alignment of offsets, lengths and buffer addresses for ``O_DIRECT`` (the
#: largest logical block size in common use; memory maps are page-aligned)
BLOCK = 4096
#: bytes per write: 1 MB wrote as fast as 4 or 16 MB on the machines measured
CHUNK = 1 << 20

_O_DIRECT = getattr(os, "O_DIRECT", 0)


def direct_io_enabled() -> bool:
    """False where the OS has no ``O_DIRECT`` or ``DRIZZLEFLOW_DIRECT_IO=0`` asks for buffered I/O."""
    return bool(_O_DIRECT) and os.environ.get("DRIZZLEFLOW_DIRECT_IO", "1") != "0"


def _round_up(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


def _open(path, flags, mode=0o666, direct=True):
    """``os.open`` with ``O_DIRECT`` where asked and possible; returns (fd, direct)."""
    if direct and direct_io_enabled():
        try:
            return os.open(path, flags | _O_DIRECT, mode), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:   # EINVAL: this file system does not do direct I/O
                raise
    return os.open(path, flags, mode), False


def _buffered(fd):
    """Clear ``O_DIRECT`` on an open descriptor (a device that wants a larger alignment)."""
    import fcntl   # only where O_DIRECT exists, so never on Windows
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_DIRECT)


#: write buffers given back by closed writers: a fresh one costs its first-touch
#: page faults (the six singles' twelve files would map 12 MB anew)
_FREE: list = []
_FREE_LOCK = threading.Lock()


def _take_buffer(nbytes: int) -> mmap.mmap:
    with _FREE_LOCK:
        for i, m in enumerate(_FREE):
            if len(m) == nbytes:
                return _FREE.pop(i)
    return mmap.mmap(-1, nbytes)


def _give_buffer(m: mmap.mmap) -> None:
    with _FREE_LOCK:
        if len(_FREE) < 4:
            _FREE.append(m)
            return
    with contextlib.suppress(BufferError):   # a view still open: the map goes with it
        m.close()


class DirectWriter:
    """A new file written front to back: bytes are gathered in an aligned
    buffer and written a whole buffer at a time; :meth:`close` writes the
    last, partial block zero-padded and cuts the file back to the bytes given.
    ``direct=False`` (or no ``O_DIRECT`` here) writes the caller's bytes as they
    come, through the page cache: the buffer only serves the alignment.

    The writes are made by the calling thread.  Handing full buffers to a
    helper thread was no faster on M2 and the later steps peaked higher with
    those threads' heaps (a variant measured by hand and not kept: 5.45
    against 5.27 s, four runs each)."""

    def __init__(self, path, chunk: int = CHUNK, direct: bool = True):
        self.path = os.fspath(path)
        self._fd, self.direct = _open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0),
                                      direct=direct)
        # the aligned buffer only where the writes must be aligned
        self._map = _take_buffer(_round_up(chunk)) if self.direct else None
        self._buf = memoryview(self._map) if self.direct else None
        self._fill = 0
        self.size = 0

    def write(self, data) -> None:
        """Append the bytes of ``data`` (any C-contiguous buffer)."""
        src = memoryview(data).cast("B")
        self.size += len(src)
        if not self.direct:   # no alignment to keep: straight from the caller's buffer
            if self._fill:
                self._put(self._fill)
            self._write_all(src)
            return
        cap = len(self._buf)
        while len(src):
            n = min(len(src), cap - self._fill)
            self._buf[self._fill:self._fill + n] = src[:n]
            self._fill += n
            src = src[n:]
            if self._fill == cap:
                self._put(cap)

    def _put(self, n: int) -> None:
        """Write the first ``n`` bytes of the buffer and empty it."""
        self._write_all(self._buf[:n])
        self._fill = 0

    def _write_all(self, view) -> None:
        while len(view):
            try:
                done = os.write(self._fd, view)
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                _buffered(self._fd)   # alignment this device does not accept: carry on buffered
                self.direct = False
                continue
            view = view[done:]

    def close(self) -> None:
        """Write what is left and close; the file then holds exactly :attr:`size` bytes."""
        if self._fd < 0:
            return
        try:
            n = self._fill
            if n:
                padded = _round_up(n) if self.direct else n
                self._buf[n:padded] = bytes(padded - n)
                self._put(padded)
                if padded != n:   # (also when the device refused it and it went out buffered)
                    os.ftruncate(self._fd, self.size)
        finally:
            self.abort()

    def abort(self) -> None:
        """Close without finishing (the caller removes the file)."""
        if self._fd < 0:
            return
        os.close(self._fd)
        self._fd = -1
        if self._map is not None:
            self._buf.release()
            _give_buffer(self._map)

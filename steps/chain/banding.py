"""Drizzling a large output in bands of rows, so memory is bounded by one band.

The core accumulates a float32 (sum, weight) pair per output pixel, plus an
int32 context image in the final drizzle: 12 bytes per pixel, 138 MB for the
3408 × 3378 M2 mosaic.  A grid whose accumulators exceed the step's
``band_mb`` is drizzled in bands: each band gets only the input pixels whose
drops can land in it (a box found on the nodes of each chip's pixel map, see
``WindowedMap.reach``) and is streamed to its file as soon as it is done;
pixels agree with a single pass to float32 rounding.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from drizzleflow.engine.atomic import atomic_path
from drizzleflow.engine.directio import DirectWriter

__all__ = ["bands", "drop_reach", "ALIGN", "BandWriter"]


def bands(ny, nx, band_mb, bytes_per_pixel):
    """Row bands ``[(y0, y1), ...]`` whose accumulators (``bytes_per_pixel``
    per output pixel) fit in ``band_mb``."""
    rows = max(16, int(band_mb * 1024 * 1024 // (bytes_per_pixel * nx)))
    nb = max(1, -(-ny // rows))
    edges = np.linspace(0, ny, nb + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def drop_reach(pixfrac, rho) -> float:
    """Output pixels around a band that an input pixel's drop can still reach
    from (pixfrac / rho beyond its centre, plus the kernel's margin); the pad
    of ``WindowedMap.reach``."""
    return 3.0 * pixfrac / rho + 3.0


#: the core walks an input in tiles / runs of this many columns (and rows, for the
#: square kernel's tiles) counted from its first pixel; a box of a chip starting on
#: a multiple of it is cut into the same tiles as the whole chip, so a band adds
#: the same partial sums as a single pass (measured on M2: pixels that differ in
#: the last float32 bit from a single pass, per band, 7 instead of ~300 for turbo,
#: ~1-10k instead of ~17k for square)
ALIGN = 32


#: keywords that describe the data layout, dropped from the headers a caller gives
_LAYOUT = re.compile(r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|GROUPS)$")


def _primary_header(bitpix, shape, extra) -> fits.Header:
    """The layout keywords of a 2-D primary image, then the cards of ``extra``
    without its own layout keywords: keyword cards in order, then commentary
    cards (COMMENT, HISTORY, blank) in order -- what ``Header.extend`` makes of
    them, built as one card list: ``extend`` re-indexes the header for every
    card, 16 ms for the final drizzle's 485 cards against 0.6 ms."""
    layout = [("SIMPLE", True), ("BITPIX", int(bitpix)), ("NAXIS", 2), ("NAXIS1", int(shape[1])),
              ("NAXIS2", int(shape[0]))]
    keyed, commentary = [], []
    for card in extra.cards:
        if _LAYOUT.match(card.keyword):
            continue
        (commentary if card.keyword in ("", "COMMENT", "HISTORY") else keyed).append(card)
    return fits.Header([fits.Card(k, v) for k, v in layout] + keyed + commentary)


class BandWriter:
    """Stream 2-D images band by band into their files (temporary names,
    renamed when all bands are written; removed on error).

    The bytes are those astropy's ``StreamingHDU`` writes (header, data,
    zero padding to the FITS block).  ``direct=True`` writes them around the
    page cache, for products the run does not read back
    (:mod:`drizzleflow.engine.directio` says why and when)."""

    def __init__(self, paths: dict, headers: dict, shape, bitpix: dict, direct: bool = False):
        self._stack = contextlib.ExitStack()
        self.paths = {k: Path(p) for k, p in paths.items()}
        self._files = {}
        self._dtype = {k: (np.int32 if bitpix.get(k, -32) == 32 else np.float32) for k in self.paths}
        self._left = {}
        try:
            for k, p in self.paths.items():
                tmp = self._stack.enter_context(atomic_path(p))
                h = _primary_header(bitpix.get(k, -32), shape, headers[k])
                f = self._files[k] = DirectWriter(tmp, direct=direct)
                f.write(h.tostring(sep="", endcard=True, padding=True).encode("ascii"))
                self._left[k] = int(shape[0]) * int(shape[1]) * np.dtype(self._dtype[k]).itemsize
        except BaseException:
            self.abort()
            raise

    def write(self, **arrays):
        """Append row blocks the caller gives up.  Big-endian blocks of the
        file's type (``Drizzle.iter_finished(big_endian=True)``) are written as
        they are; native ones are byte-swapped in place (their contents are
        garbage afterwards) instead of into a fresh copy, whose first-touch page
        faults cost the separate drizzle ~0.1 s of system time on M2; other
        arrays are converted into a copy (and left as they were)."""
        for k, a in arrays.items():
            dt = np.dtype(self._dtype[k])
            big = dt.newbyteorder(">")
            if isinstance(a, np.ndarray) and a.flags.c_contiguous and a.dtype == big:
                pass
            elif isinstance(a, np.ndarray) and a.dtype == dt and a.flags.c_contiguous and a.flags.writeable:
                a = a.byteswap(inplace=True).view(big)
            else:
                a = np.ascontiguousarray(a, dtype=big)
            if a.nbytes > self._left[k]:
                raise OSError(f"{self.paths[k]}: more rows written than the image has")
            self._files[k].write(a)
            self._left[k] -= a.nbytes

    def close(self):
        for k, f in self._files.items():
            if self._left[k]:
                raise OSError(f"{self.paths[k]}: {self._left[k]} bytes of the image were never written")
            f.write(bytes((-f.size) % 2880))   # zeros up to the FITS block
            f.close()
        self._stack.close()
        return self.paths

    def abort(self):
        """Drop the partial files (call from an ``except``)."""
        for f in self._files.values():
            with contextlib.suppress(Exception):
                f.abort()
        with contextlib.suppress(Exception):
            self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

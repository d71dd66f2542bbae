"""Where the pixels of a checked c0m/c1m pair lie, with its parsed headers.

The chain reads the same working copies in up to six steps, and astropy parses
every header of the pair at each read: about 9 of the ~12 ms a warm read of an
M2 exposure takes, all of it holding the GIL.  ``open_exposure`` keeps a
:class:`PairLayout` per version of the two files (in the caller's cache, keyed
by ``engine.manifest.file_identity``: a rewritten file is a new version), and a
later read of the same versions takes only the pixel bytes.

Only plain layouts are kept: float32 science without scaling and 16-bit DQ
(signed, or unsigned by the BZERO = 32768 convention).  Anything else is read
through astropy every time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from drizzleflow.engine.errors import InputFileError
from drizzleflow.engine.manifest import file_identity

from .files import InputPair

__all__ = ["PairLayout", "Span"]


@dataclass(frozen=True)
class Span:
    """One image's bytes in its file: offset, shape and how they are stored."""

    offset: int
    shape: tuple
    dtype: str          # as stored: ">f4" (science) or ">i2" (DQ)
    unsigned: bool = False   # 16-bit with BZERO 32768: the sign bit is flipped on reading

    @classmethod
    def of(cls, hdu, kind: str) -> "Span | None":
        """The span of an image HDU read from a file, or None when its storage is not plain."""
        h = hdu.header
        shape = tuple(int(h[f"NAXIS{i}"]) for i in range(int(h.get("NAXIS", 0)), 0, -1))
        # the storage as in the file: once astropy has scaled the data it read, the
        # header describes the scaled array (BSCALE and BZERO gone, BITPIX -32)
        stored = [getattr(hdu, f"_orig_{k}", None) for k in ("bitpix", "bzero", "bscale")]
        info = hdu.fileinfo()
        if len(shape) != 2 or None in stored or not info or info.get("datLoc") is None:
            return None
        bitpix, bzero, bscale = int(stored[0]), float(stored[1]), float(stored[2])
        span = cls(int(info["datLoc"]), shape, ">f4" if bitpix == -32 else ">i2",
                   unsigned=bitpix == 16 and bzero == 32768.0)
        nbytes = shape[0] * shape[1] * abs(bitpix) // 8
        if bscale != 1.0 or info.get("datSpan") != -(-nbytes // 2880) * 2880:
            return None
        if kind == "sci" and bitpix == -32 and bzero == 0.0:
            return span
        if kind == "dq" and bitpix == 16 and bzero in (0.0, 32768.0):
            return span
        return None

    def read(self, fh, path) -> np.ndarray:
        """The image as a fresh native array: float32 science, uint16 DQ flags
        (the bits of the stored int16, as ``files.as_uint16`` gives them)."""
        out = np.empty(self.shape, dtype=self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        fh.seek(self.offset)
        got = 0
        while got < len(view):
            n = fh.readinto(view[got:])
            if not n:
                raise InputFileError(path, f"cut short: {got} of {len(view)} bytes of an image at byte "
                                     f"{self.offset} read")
            got += n
        out = out.byteswap(inplace=True).view(out.dtype.newbyteorder("="))
        if self.dtype == ">i2":
            out = out.view(np.uint16)
            if self.unsigned:
                out ^= np.uint16(0x8000)
        return out


@dataclass(frozen=True)
class PairLayout:
    """A checked pair (``check_pair``'s result), its primary header, and per
    chip the SCI header, extension index and the spans of the science and DQ
    pixels.  The headers are shared by every exposure read from it: read-only."""

    pair: InputPair
    primary: fits.Header
    chips: tuple   # ((sci header, sci extension index, sci Span, dq Span), ...)

    @classmethod
    def of(cls, pair, sci: fits.HDUList, scis, dqs) -> "PairLayout | None":
        """The layout of a pair read through astropy (``sci``: the science file;
        ``scis``/``dqs``: its SCI and the DQ file's image HDUs in chip order), or None
        when some image is not stored plainly."""
        chips = []
        for sh, dh in zip(scis, dqs):
            s, d = Span.of(sh, "sci"), Span.of(dh, "dq")
            if s is None or d is None:
                return None
            chips.append((sh.header, sci.index_of(sh), s, d))
        return cls(pair, sci[0].header, tuple(chips))

    def open(self, key) -> "tuple | None":
        """Both files opened, if they still are the versions ``key`` names (``(sci
        path, DQ path, sci identity, DQ identity)``, the identities taken before the
        layout was looked up); None when one has been replaced since (the caller
        then reads it in full)."""
        handles = []
        try:
            for path, ident in zip((self.pair.sci, self.pair.dq), key[2:]):
                fh = open(path, "rb", buffering=0)
                handles.append(fh)
                if file_identity(path, os.fstat(fh.fileno())) != ident:
                    break
            else:
                return tuple(handles)
        except OSError:
            pass   # gone or unreadable: the full read says which and why
        for fh in handles:
            fh.close()
        return None

    def read(self, handles):
        """Yield ``(sci header, extension index, science float32, DQ uint16)`` per chip
        from the files :meth:`open` gave (the caller closes them)."""
        fs, fd = handles
        for header, ext, s, d in self.chips:
            yield header, ext, s.read(fs, Path(self.pair.sci)), d.read(fd, Path(self.pair.dq))

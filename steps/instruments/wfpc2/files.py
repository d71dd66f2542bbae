"""Finding, opening and checking WFPC2 archive files before any work starts.

Every science file (``*_c0m.fits`` multi-extension or ``*_c0f.fits`` waivered)
has a data-quality partner named by the ``_c0`` -> ``_c1`` rule.  All pairs are
checked up front (readable, complete, WFPC2, same number and shape of groups),
so a bad sixth file stops the run before the first file is copied.
"""
from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from drizzleflow.engine.errors import InputFileError

from .constants import INSTRUMENT

__all__ = ["InputPair", "dq_partner", "read_fits", "file_kind", "group_shapes",
           "check_pair", "check_inputs", "rootname"]

_SCI_SUFFIX = re.compile(r"_c0([mfh])\.fits(\.gz)?$", re.IGNORECASE)


@dataclass(frozen=True)
class InputPair:
    """A checked science/DQ pair from the archive."""

    sci: Path
    dq: Path
    kind: str        # "mef" (c0m) or "waivered" (c0f)
    root: str
    nchips: int
    shape: tuple     # (ny, nx) of every chip


def dq_partner(sci_path) -> Path:
    """The DQ file of a science file: ``x_c0m.fits`` -> ``x_c1m.fits`` (``c0f`` -> ``c1f``)."""
    sci_path = Path(sci_path)
    m = _SCI_SUFFIX.search(sci_path.name)
    if not m:
        raise InputFileError(sci_path, "not a WFPC2 science file name (expected *_c0m.fits or *_c0f.fits), "
                             "so its data-quality file cannot be found; give it explicitly")
    c0 = sci_path.name[m.start():m.start() + 3]  # keeps the user's case
    c1 = c0[:2] + ("1" if c0[2] == "0" else c0[2])
    name = sci_path.name[:m.start()] + c1 + sci_path.name[m.start() + 3:]
    return sci_path.with_name(name)


def rootname(sci_path, header=None) -> str:
    """Exposure rootname: ROOTNAME keyword (lower case) or the file name before ``_c0``."""
    if header is not None and str(header.get("ROOTNAME", "")).strip():
        return str(header["ROOTNAME"]).strip().lower()
    name = Path(sci_path).name
    m = _SCI_SUFFIX.search(name)
    return name[:m.start()] if m else name.split(".")[0]


def read_fits(path, *, load_data=True, check_size=None) -> fits.HDUList:
    """Open a FITS file fully into memory, turning every way it can be broken
    (missing, unreadable, not FITS, truncated) into one ``InputFileError``.

    ``load_data=False`` reads the headers only, ``"images"`` the data of the
    image HDUs only (not tables such as WCSCORR: parsing its columns took half
    of the time a reader spent on a working copy); ``check_size`` (default: true
    unless ``load_data`` is False) compares the file size with what the headers
    promise, so a file cut inside its last data unit is caught either way."""
    check_size = bool(load_data) if check_size is None else check_size
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "file not found")
    if path.is_dir():
        raise InputFileError(path, "is a directory, not a FITS file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", fits.verify.VerifyWarning)
            warnings.filterwarnings("ignore", message=".*non-ASCII.*")
            warnings.filterwarnings("error", message=".*truncated.*")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
            if load_data:
                for hdu in hdul:
                    if load_data != "images" or not isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                        _ = hdu.data
    except (fits.verify.VerifyWarning, UserWarning) as exc:
        text = str(exc)
        if "truncated" in text.lower():
            raise InputFileError(path, "truncated FITS file (shorter than its headers say)") from None
        raise InputFileError(path, _hint(path, f"invalid FITS: {text.splitlines()[0]}")) from None
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "truncated" in text.lower() or "buffer is too small" in text.lower():
            text = "truncated FITS file (shorter than its headers say)"
        elif "END card" in text or "header missing" in text.lower():
            text = f"truncated or corrupt FITS header ({text})"
        elif "empty or corrupt" in text.lower() or "no SIMPLE card" in text:
            text = f"not a valid FITS file ({text})"
        raise InputFileError(path, _hint(path, text)) from None
    if check_size:
        # a file cut inside the data of its last HDU is read with zero padding by
        # astropy; compare the physical size with what the headers promise
        size = path.stat().st_size
        need = 0
        for hdu in hdul:
            off = getattr(hdu, "_data_offset", None)
            dsize = getattr(hdu, "_data_size", None)
            if off is not None and dsize is not None:
                need = max(need, off + dsize)
        if size < need:
            hdul.close()
            raise InputFileError(path, f"truncated FITS file ({size} bytes, headers promise {need})")
    return hdul


def _hint(path, text):
    """Say "truncated" when the size is not whole 2880-byte FITS blocks."""
    size = path.stat().st_size
    if size % 2880 and "truncated" not in text:
        return f"truncated FITS file? ({size} bytes is not a whole number of 2880-byte blocks; {text})"
    return text


def file_kind(hdul, path) -> str:
    """``"mef"`` for primary + image extensions, ``"waivered"`` for a 3-D primary
    array with a table of per-group keywords."""
    ph = hdul[0].header
    if ph.get("NAXIS", 0) == 3:
        return "waivered"
    if ph.get("NAXIS", 0) == 2 and len(hdul) == 1:
        return "waivered"  # single-group waivered file
    if len(hdul) > 1 and any(isinstance(h, fits.ImageHDU) for h in hdul[1:]):
        return "mef"
    raise InputFileError(path, "neither a multi-extension (c0m) nor a waivered (c0f) WFPC2 file")


def _image_extensions(hdul, names=("SCI",)):
    exts = [h for h in hdul[1:] if isinstance(h, fits.ImageHDU)
            and str(h.header.get("EXTNAME", "")).upper() in names]
    if not exts:  # DQ files: take image extensions by index, as DrizzlePac does
        exts = [h for h in hdul[1:] if isinstance(h, fits.ImageHDU) and h.header.get("NAXIS", 0) == 2
                and str(h.header.get("EXTNAME", "")).upper() not in ("D2IMARR", "WCSDVARR")]
    return exts


def _header_shape(header) -> tuple:
    """Array shape (numpy order) an image header declares; () for NAXIS = 0."""
    n = int(header.get("NAXIS", 0))
    return tuple(int(header[f"NAXIS{i}"]) for i in range(n, 0, -1))


def group_shapes(hdul, kind) -> list[tuple]:
    """Shape (ny, nx) of every group/chip, from the headers: the pair check
    needs no pixel data (ingest reads each file once, after the check)."""
    if kind == "waivered":
        if not isinstance(hdul[0], fits.GroupsHDU):
            shape = _header_shape(hdul[0].header)
            if not shape:
                return []
            return [shape] if len(shape) == 2 else [shape[1:]] * shape[0]
        data = hdul[0].data
        if data is None:
            return []
        if data.ndim == 2:
            return [tuple(data.shape)]
        return [tuple(data.shape[1:])] * data.shape[0]
    names = ("SCI",) if any(str(h.header.get("EXTNAME", "")).upper() == "SCI" for h in hdul[1:]) else ()
    return [_header_shape(h.header) for h in _image_extensions(hdul, names or ("SCI",))]


def _check_instrument(hdul, path):
    instr = str(hdul[0].header.get("INSTRUME", "")).strip()
    if instr.upper() != INSTRUMENT:
        shown = instr or "missing"
        raise InputFileError(path, f"INSTRUME is {shown!r}; drizzleflow reads {INSTRUMENT} files only")


def check_pair(sci_path, dq_path=None, *, opened=None) -> InputPair:
    """Check one science file and its DQ partner; return the pair description.

    Only headers are needed: without ``opened`` each file is read header-only
    (plus the file-size check against truncation).

    ``opened``, if given, is a callable ``opened(path) -> HDUList`` that
    returns files the caller has already read (``open_exposure`` checks and
    reads each file once); the HDULists are then not closed here.

    Raises
    ------
    InputFileError
        Naming the file at fault and, for pairing problems, both files.
    """
    sci_path = Path(sci_path)
    dq_path = Path(dq_path) if dq_path else dq_partner(sci_path)
    if not sci_path.exists():
        raise InputFileError(sci_path, "file not found")
    if not dq_path.exists():
        raise InputFileError(sci_path, f"its data-quality file {dq_path} is missing "
                                       "(WFPC2 DQ lives in the matching _c1m/_c1f file)")
    use = (lambda p: contextlib.nullcontext(opened(p))) if opened else \
        (lambda p: read_fits(p, load_data=False, check_size=True))
    with use(sci_path) as sci:
        _check_instrument(sci, sci_path)
        kind = file_kind(sci, sci_path)
        shapes = group_shapes(sci, kind)
        root = rootname(sci_path, sci[0].header)
    if not shapes or any(len(s) != 2 for s in shapes):
        raise InputFileError(sci_path, "has no 2-D science groups")
    with use(dq_path) as dq:
        dkind = file_kind(dq, dq_path)
        dshapes = group_shapes(dq, dkind)
    if len(dshapes) != len(shapes):
        raise InputFileError(dq_path, f"has {len(dshapes)} groups but its science file {sci_path} "
                                      f"has {len(shapes)}")
    for i, (a, b) in enumerate(zip(shapes, dshapes), start=1):
        if a != b:
            raise InputFileError(dq_path, f"group {i} is {b[::-1] if b else 'empty'} (NAXIS1, NAXIS2) but "
                                          f"{sci_path} group {i} is {a[::-1]}")
    return InputPair(sci=sci_path, dq=dq_path, kind=kind, root=root, nchips=len(shapes), shape=shapes[0])


def check_inputs(paths) -> list[InputPair]:
    """Check every input pair before any work starts; duplicate roots are an error."""
    pairs, seen = [], {}
    for p in paths:
        pair = check_pair(p)
        if pair.root in seen:
            raise InputFileError(p, f"has the same rootname {pair.root!r} as {seen[pair.root]}")
        seen[pair.root] = p
        pairs.append(pair)
    return pairs


def as_uint16(dq) -> np.ndarray:
    """DQ array as native uint16 flags (int16 archive files keep their bit pattern)."""
    dq = np.asarray(dq)
    if dq.dtype.kind == "f":
        dq = np.nan_to_num(dq).astype(np.int64)
    if dq.dtype.itemsize == 2 and dq.dtype.kind in "iu":
        return np.ascontiguousarray(dq.astype(dq.dtype.newbyteorder("=")).view(np.uint16))
    return np.ascontiguousarray((dq.astype(np.int64) & 0xFFFF).astype(np.uint16))

"""Waivered FITS (``c0f``/``c1f``) <-> multi-extension FITS (``c0m``/``c1m``).

A waivered file holds all chips in one 3-D primary array (NAXIS3 = groups) and
the per-group keywords (WCS, DETECTOR, PHOTFLAM, statistics) as columns of an
ASCII table extension, one row per group.  The multi-extension form used by
drizzleflow and DrizzlePac has one image extension per group whose header is
that table row.  The conversion keeps keyword values and comments; keywords
present as table columns are removed from the primary header.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from astropy.io import fits

from drizzleflow.engine.atomic import atomic_path
from drizzleflow.engine.errors import InputFileError

__all__ = ["waivered_to_mef", "mef_to_waivered", "waivered_hdul_to_mef", "mef_hdul_to_waivered"]

log = logging.getLogger(__name__)

#: structural keywords that never move between primary and group headers
_STRUCTURAL = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND",
               "GROUPS", "PCOUNT", "GCOUNT", "EXTNAME", "EXTVER", "INHERIT", "BSCALE", "BZERO",
               "NEXTEND", "COMMENT", "HISTORY", ""}
_LOGICAL_UNIT = "LOGICAL"


def _clean_primary(header):
    out = fits.Header()
    for card in header.cards:
        if card.keyword in _STRUCTURAL and card.keyword not in ("COMMENT", "HISTORY", ""):
            continue
        out.append(card, end=True)
    return out


def waivered_hdul_to_mef(hdul, path="<memory>", extname="SCI") -> fits.HDUList:
    """Convert an in-memory waivered HDUList to multi-extension form.

    ``extname`` names the group extensions (``SCI`` for both c0 and c1 files,
    which is what DrizzlePac expects of c1m files).
    """
    data = hdul[0].data
    if data is None:
        raise InputFileError(path, "waivered file has no data in its primary array")
    cube = data if data.ndim == 3 else data[np.newaxis]
    ngroups = cube.shape[0]
    table = hdul[1] if len(hdul) > 1 and isinstance(hdul[1], (fits.TableHDU, fits.BinTableHDU)) else None
    if table is not None and len(table.data) != ngroups:
        raise InputFileError(path, f"waivered table has {len(table.data)} rows for {ngroups} groups")
    columns = list(table.columns) if table is not None else []
    colnames = {c.name.upper() for c in columns}
    primary = fits.PrimaryHDU()
    for card in _clean_primary(hdul[0].header).cards:
        if card.keyword in colnames:
            continue
        primary.header.append(card, end=True)
    primary.header["NEXTEND"] = (ngroups, "number of extensions in file")
    out = fits.HDUList([primary])
    for g in range(ngroups):
        h = fits.Header()
        h["EXTNAME"] = (extname, "extension name")
        h["EXTVER"] = (g + 1, "extension version number")
        for i, col in enumerate(columns):
            value = table.data[col.name][g]
            comment = table.header.comments[f"TTYPE{i + 1}"]
            if isinstance(value, (bytes, str)):
                value = value.decode() if isinstance(value, bytes) else value
                value = value.rstrip()
                # the archive (and stsci.tools) spell the unit 'LOGICAL-'
                if (col.unit or "").upper().rstrip("-") == _LOGICAL_UNIT:
                    value = value == "T"
            elif isinstance(value, np.integer):
                value = int(value)
            elif isinstance(value, np.floating):
                value = float(value)
            h[col.name.upper()] = (value, comment)
        arr = np.ascontiguousarray(cube[g])
        arr = arr.astype(arr.dtype.newbyteorder("="))
        out.append(fits.ImageHDU(data=arr, header=h))
    return out


def _column_format(values):
    if all(isinstance(v, bool) for v in values):
        return "A1", _LOGICAL_UNIT
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "I11", None
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "D25.17", None
    width = max(1, max(len(str(v)) for v in values))
    return f"A{width}", None


def mef_hdul_to_waivered(hdul, path="<memory>") -> fits.HDUList:
    """Convert an in-memory multi-extension file back to waivered form."""
    exts = [h for h in hdul[1:] if isinstance(h, fits.ImageHDU) and h.data is not None and h.data.ndim == 2]
    if not exts:
        raise InputFileError(path, "no 2-D image extensions to convert")
    shapes = {h.data.shape for h in exts}
    if len(shapes) != 1:
        raise InputFileError(path, f"groups differ in shape {sorted(shapes)}; waivered FITS needs one shape")
    cube = np.stack([h.data for h in exts])
    keys = []
    for h in exts:
        for card in h.header.cards:
            k = card.keyword
            if k in _STRUCTURAL or k in keys:
                continue
            if "." in k or len(k) > 8:
                log.warning("%s: record-valued keyword %s cannot be a waivered table column; dropped", path, k)
                continue
            keys.append(k)
    # a group-number column keeps the table valid when the groups have no own keywords
    cols = [fits.Column(name="EXTVER", format="I11", array=np.arange(1, len(exts) + 1))]
    comments = ["group number (extension version in MEF form)"]
    for k in keys:
        values = [h.header.get(k) for h in exts]
        present = [v for v in values if v is not None]
        fmt, unit = _column_format(present)
        if fmt.startswith("A"):
            if unit == _LOGICAL_UNIT:
                arr = np.array(["T" if v else "F" for v in values])
            else:
                arr = np.array(["" if v is None else str(v) for v in values])
        elif fmt.startswith("I"):
            arr = np.array([0 if v is None else v for v in values], dtype=np.int64)
        else:
            arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        cols.append(fits.Column(name=k, format=fmt, array=arr, unit=unit))
        comment = next((h.header.comments[k] for h in exts if k in h.header), "")
        comments.append(comment)
    table = fits.TableHDU.from_columns(cols)
    for i, c in enumerate(comments, start=1):
        if c:
            table.header.comments[f"TTYPE{i}"] = c[:47]
    primary = fits.PrimaryHDU(data=cube)
    for card in _clean_primary(hdul[0].header).cards:
        primary.header.append(card, end=True)
    # like archive c0f files: the first group's keywords also sit in the primary header
    for k in keys:
        if k in exts[0].header and k not in primary.header:
            primary.header[k] = (exts[0].header[k], exts[0].header.comments[k])
    return fits.HDUList([primary, table])


def waivered_to_mef(c0f, out_dir, name=None) -> Path:
    """Write the multi-extension version of a waivered file into ``out_dir``.

    ``x_c0f.fits`` becomes ``x_c0m.fits`` (``c1f`` -> ``c1m``) unless ``name``
    is given.  The input is only read.
    """
    return _convert(c0f, out_dir, name, waivered_hdul_to_mef, ("_c0f", "_c0m"), ("_c1f", "_c1m"))


def mef_to_waivered(mef, out_dir, name=None) -> Path:
    """Write the waivered version of a multi-extension file into ``out_dir``
    (``x_c0m.fits`` -> ``x_c0f.fits``)."""
    return _convert(mef, out_dir, name, mef_hdul_to_waivered, ("_c0m", "_c0f"), ("_c1m", "_c1f"))


def _convert(src, out_dir, name, convert, *renames) -> Path:
    """Read ``src``, convert its HDU list, write the result atomically into ``out_dir``."""
    from .files import read_fits
    src = Path(src)
    with read_fits(src) as hdul:
        out = convert(hdul, src)
    if name is None:
        name = src.name
        for old, new in renames:
            name = name.replace(old, new)
    dest = Path(out_dir) / name
    with atomic_path(dest) as tmp:
        out.writeto(tmp)
    return dest

"""The ``WCSCORR`` binary table: one row per (WCS solution, chip) recording
every WCS a file has had, with the same 24 columns stwcs writes, so DrizzlePac
and stwcs tools read the history of drizzleflow working copies."""
from __future__ import annotations

import numpy as np
from astropy.io import fits

__all__ = ["COLUMNS", "read_rows", "append_rows", "row_from_header", "ensure_wcscorr", "opus_rows"]

#: (name, FITS format, default) in stwcs order
COLUMNS = (
    ("WCS_ID", "40A", ""), ("EXTVER", "I", 0), ("WCS_key", "A", ""),
    ("HDRNAME", "24A", ""), ("SIPNAME", "24A", ""), ("NPOLNAME", "24A", ""), ("D2IMNAME", "24A", ""),
    ("CRVAL1", "D", 0.0), ("CRVAL2", "D", 0.0), ("CRPIX1", "D", 0.0), ("CRPIX2", "D", 0.0),
    ("CD1_1", "D", 1.0), ("CD1_2", "D", 0.0), ("CD2_1", "D", 0.0), ("CD2_2", "D", 1.0),
    ("CTYPE1", "24A", ""), ("CTYPE2", "24A", ""), ("ORIENTAT", "D", 0.0), ("PA_V3", "D", 0.0),
    ("RMS_RA", "D", 0.0), ("RMS_Dec", "D", 0.0), ("NMatch", "J", 0), ("Catalog", "40A", ""),
    ("DESCRIP", "128A", ""),
)


def read_rows(hdul) -> list[dict]:
    """Rows of the file's WCSCORR table as dicts (empty list if absent)."""
    if "WCSCORR" not in hdul:
        return []
    data = hdul["WCSCORR"].data
    if data is None:
        return []
    # whole columns at a time (a FITS_rec record per row and field is ~50x slower)
    cols = {}
    for name, _, default in COLUMNS:
        if name not in data.names:
            cols[name] = [default] * len(data)
            continue
        col = data.field(name)
        if col.dtype.kind in "SU":
            cols[name] = [(v.decode("ascii", "replace") if isinstance(v, bytes) else str(v)).strip()
                          for v in col.tolist()]
        else:
            cols[name] = col.tolist()
    names = [name for name, _, _ in COLUMNS]
    rows = []
    for values in zip(*(cols[n] for n in names)):
        row = dict(zip(names, values))
        if row["WCS_ID"] or row["EXTVER"]:
            rows.append(row)
    return rows


def row_from_header(header, wcs_id, key=" ", **extra) -> dict:
    """A WCSCORR row for the WCS ``key`` of one SCI header."""
    k = "" if key == " " else key
    cd = [[header.get(f"CD{i}_{j}{k}", 0.0) for j in (1, 2)] for i in (1, 2)]
    row = {name: default for name, _, default in COLUMNS}
    row.update({
        "WCS_ID": wcs_id, "EXTVER": int(header.get("EXTVER", 1)), "WCS_key": key.strip() or "",
        "CRVAL1": header.get(f"CRVAL1{k}", 0.0), "CRVAL2": header.get(f"CRVAL2{k}", 0.0),
        "CRPIX1": header.get(f"CRPIX1{k}", 0.0), "CRPIX2": header.get(f"CRPIX2{k}", 0.0),
        "CD1_1": cd[0][0], "CD1_2": cd[0][1], "CD2_1": cd[1][0], "CD2_2": cd[1][1],
        "CTYPE1": header.get(f"CTYPE1{k}", ""), "CTYPE2": header.get(f"CTYPE2{k}", ""),
        "ORIENTAT": float(np.degrees(np.arctan2(cd[0][1], cd[1][1]))),
    })
    row.update({k2: v for k2, v in extra.items() if v is not None})
    return row


def _table(rows):
    # stwcs appends after the first empty row and needs at least one: keep
    # 4 empty rows per chip as it does (28 rows for 4 chips after updatewcs)
    nchips = max([int(r.get("EXTVER", 1)) for r in rows] + [1])
    blank = {name: ("" if fmt.endswith("A") else 0) for name, fmt, _ in COLUMNS}
    used = len(rows)
    rows = list(rows) + [blank] * (4 * nchips)
    cols = []
    for name, fmt, default in COLUMNS:
        values = [r.get(name, default) for r in rows]
        if fmt.endswith("A"):
            arr = np.array([str(v) for v in values], dtype=f"U{max(1, int(fmt[:-1] or 1))}")
        elif fmt == "I":
            arr = np.array(values, dtype=np.int16)
        elif fmt == "J":
            arr = np.array(values, dtype=np.int32)
        else:
            arr = np.array(values, dtype=np.float64)
        cols.append(fits.Column(name=name, format=fmt, array=arr))
    hdu = fits.BinTableHDU.from_columns(cols, name="WCSCORR")
    hdu.header["EXTVER"] = 1
    hdu.header["TROWS"] = (used, "number of rows in use (the rest is padding)")
    return hdu


def append_rows(hdul, rows):
    """Add rows to the file's WCSCORR table (created if missing), in memory."""
    all_rows = read_rows(hdul) + list(rows)
    table = _table(all_rows)
    if "WCSCORR" in hdul:
        hdul[hdul.index_of("WCSCORR")] = table
    else:
        hdul.append(table)
    return table


def opus_rows(hdul, pa_v3=None) -> list[dict]:
    """The OPUS rows a new WCSCORR starts with: one per SCI chip (from key ``O``,
    else the primary).  ``update_wcs`` puts them and its own rows into the table
    in one go instead of building it twice."""
    pa = pa_v3 if pa_v3 is not None else hdul[0].header.get("PA_V3", 0.0)
    rows = []
    for h in hdul[1:]:
        if str(h.header.get("EXTNAME", "")).upper() != "SCI":
            continue
        key = "O" if "CRVAL1O" in h.header else " "
        rows.append(row_from_header(h.header, "OPUS", key, PA_V3=pa, DESCRIP="Original WCS computed by OPUS"))
        rows[-1]["WCS_key"] = "O"
    return rows


def ensure_wcscorr(hdul, pa_v3=None):
    """Create WCSCORR with one OPUS row per SCI chip (from key ``O``, else the primary)."""
    if "WCSCORR" in hdul:
        return
    append_rows(hdul, opus_rows(hdul, pa_v3))

"""Alternate WCS keys: save the primary (linear) WCS of a chip header under a
letter A-Z and restore it.  ``O`` is reserved for the archive (OPUS) WCS, as in
stwcs.  Alternate WCSs carry the linear part only (CRPIX/CRVAL/CD/CTYPE); SIP
and lookup-table distortion stay with the primary WCS."""
from __future__ import annotations

import string

__all__ = ["LINEAR_KEYS", "wcs_keys", "wcs_names", "free_key", "archive_wcs", "archive_primary",
           "restore_wcs", "remove_alternate", "name_to_key"]

#: the linear WCS keywords that an alternate WCS copies (key letter appended)
LINEAR_KEYS = ("WCSAXES", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2",
               "CD1_1", "CD1_2", "CD2_1", "CD2_2", "LONPOLE", "LATPOLE", "RADESYS", "EQUINOX", "WCSNAME")


def _alt(key, letter):
    return key + letter if letter.strip() else key


def wcs_keys(header) -> list[str]:
    """Keys of the WCSs present: ``' '`` for the primary, then letters in use."""
    keys = [" "] if "CRVAL1" in header else []
    keys += [c for c in string.ascii_uppercase if f"CRVAL1{c}" in header]
    return keys


def wcs_names(header) -> dict:
    """``{key: WCSNAME}`` for every WCS in the header (empty string when unnamed)."""
    return {k: str(header.get(_alt("WCSNAME", k), "")).strip() for k in wcs_keys(header)}


def name_to_key(header, wcsname):
    """Key of the alternate WCS called ``wcsname`` (case-insensitive) or None."""
    for k, n in wcs_names(header).items():
        if k != " " and n.upper() == str(wcsname).strip().upper():
            return k
    return None


def free_key(header):
    """First unused letter A-Z other than the reserved ``O``; None if all 25 are used."""
    used = set(wcs_keys(header))
    for c in string.ascii_uppercase:
        if c != "O" and c not in used:
            return c
    return None


def archive_wcs(header, key=None, wcsname=None) -> str:
    """Copy the primary linear WCS to alternate ``key`` (a free letter if None).

    Returns the key used.  ``wcsname`` names the copy (default: the primary's
    WCSNAME, or ``"ARCHIVED"`` when the primary has none).
    """
    if key is None:
        key = free_key(header)
        if key is None:
            raise ValueError("all 25 alternate WCS keys are in use")
    key = key.upper()
    if len(key) != 1 or key not in string.ascii_uppercase:
        raise ValueError(f"alternate WCS key must be one letter A-Z, not {key!r}")
    name = wcsname or str(header.get("WCSNAME", "")).strip() or "ARCHIVED"
    for k in LINEAR_KEYS:
        if k == "WCSNAME":
            header[_alt(k, key)] = (name, "Coordinate system title")
        elif k in header:
            header[_alt(k, key)] = (header[k], header.comments[k])
    if "WCSAXES" not in header:
        header.set(_alt("WCSAXES", key), 2, "number of World Coordinate System axes",
                   before=_alt("CRPIX1", key))
    return key


def restore_wcs(header, key):
    """Copy alternate WCS ``key`` back to the primary linear WCS keywords."""
    key = key.upper()
    if f"CRVAL1{key}" not in header:
        raise KeyError(f"no alternate WCS with key {key!r}")
    for k in LINEAR_KEYS:
        if _alt(k, key) in header and k != "WCSAXES":
            header[k] = header[_alt(k, key)]


def remove_alternate(header, key):
    for k in LINEAR_KEYS:
        header.remove(_alt(k, key), ignore_missing=True, remove_all=True)


def _same_as_primary(header, key):
    for k in ("CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        if header.get(k) != header.get(_alt(k, key)):
            return False
    return True


def archive_primary(header, default_name="ARCHIVED"):
    """Save the primary linear WCS before it is replaced, once.

    Reuses an alternate of the same WCSNAME holding the same values; a
    same-named alternate with other values gets a numbered name (``TWEAK-2``),
    as stwcs renames duplicates.  Returns the key.
    """
    name = str(header.get("WCSNAME", "")).strip() or default_name
    key = name_to_key(header, name)
    if key is not None and _same_as_primary(header, key):
        return key
    if key is not None:
        n = 2
        while name_to_key(header, f"{name}-{n}") is not None:
            n += 1
        name = f"{name}-{n}"
    return archive_wcs(header, None, name)

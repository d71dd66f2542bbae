"""The run manifest, ``<output>/manifest.json``: what ran, on what, with what.

It holds the resolved recipe and its hash, the recipe's identity (name, step
list, inputs), software versions, the sha256 of every input file, and one
record per step (name, step type, version, cache key, resolved params, seconds,
products and the files among them with size and mtime).  The runner rewrites
it atomically after every completed step, so it is also the resume journal.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .atomic import write_text
from .errors import OutputError

__all__ = ["MANIFEST_NAME", "load_manifest", "save_manifest", "software_versions", "file_sha256"]

MANIFEST_NAME = "manifest.json"
FORMAT = 1


def software_versions() -> dict:
    """Versions of Python and the packages that shape the products."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("drizzleflow", "numpy", "astropy", "pydantic", "pyyaml", "sep", "scipy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def file_identity(path, st=None) -> tuple:
    """(device, inode, size, mtime) of a file (``st``: its ``os.stat`` result when
    already taken): the key of the caches of things read from it.  It changes
    when the file is rewritten; hard links, as a sweep's points make of the
    working copies, share it."""
    st = os.stat(path) if st is None else st
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def file_sha256(path, chunk=1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def load_manifest(outdir) -> dict | None:
    """The manifest in ``outdir``, or None; an unreadable one is an OutputError."""
    path = Path(outdir, MANIFEST_NAME)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: unreadable run manifest ({exc}); use --overwrite to start afresh") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise OutputError(f"{path}: not a drizzleflow run manifest (format {FORMAT}); use --overwrite")
    return data


def save_manifest(outdir, data: dict) -> Path:
    data = dict(data)
    data["format"] = FORMAT
    path = Path(outdir, MANIFEST_NAME)
    write_text(path, json.dumps(data, indent=1, sort_keys=False, default=str) + "\n")
    return path


def python_version():
    return sys.version.split()[0]

"""Step cache keys and the checks that decide whether a step can be skipped.

A step's key is the sha256 of canonical JSON of:
``(step type, step class version, drizzleflow release, resolved params, key of
the previous step, sha256 of every input file and of every file the step's
parameters name (``Step.key_files``: region files, reference images), uref)``.
The release is in the key so that an upgraded drizzleflow recomputes instead
of serving products an older one made (a step's own ``version`` marks changes
within a release).  Chaining the previous key means a change
anywhere upstream changes every key downstream, so "rerun from the first
changed step" falls out.  A completed step is skipped when its key matches a
record AND every file among its recorded products still exists with the
recorded size and modification time.

Across output directories (sweeps): a record with the same key in another
run's manifest is just as valid; :func:`import_record` brings its files into
this run's directory and returns the rebased record.  By default it makes hard
links (no extra disk, no copy time; a copy where links are impossible): every
product is written through ``atomic_path`` (a rename, so a new inode) and never
modified in place, so a link can't be changed under the other run; and if a
step ever did modify one in place, the changed size/mtime would invalidate
the record in both directories (recomputed, never trusted).  ``mode="copy"``
makes independent copies.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .atomic import atomic_path
from .manifest import file_sha256, load_manifest
from .recipe import sha256_of

__all__ = ["step_key", "key_file_digests", "product_files", "file_records", "record_valid", "find_in_dirs", "import_record"]

log = logging.getLogger("drizzleflow.cache")


def step_key(step_type, version, params_json, prev_key, input_hashes, uref=None, release=None) -> str:
    """The cache key of one step (``release``: the drizzleflow version, default this one)."""
    from . import __version__
    return sha256_of({"step": step_type, "version": str(version), "release": release or __version__,
                      "params": params_json, "prev": prev_key, "inputs": list(input_hashes), "uref": uref})


def key_file_digests(paths) -> list[str]:
    """``"path sha256"`` of each file a step names in its parameters
    (``Step.key_files``); ``"path missing"`` for one that does not exist (the
    step will say so when it runs)."""
    out = []
    for p in paths:
        path = Path(p) if os.path.isabs(str(p)) else Path.cwd() / str(p)
        out.append(f"{p} {file_sha256(path) if path.is_file() else 'missing'}")
    return out


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def product_files(products: dict, outdir) -> list[str]:
    """Stored paths (as written in the products) of every existing file they name."""
    out = []
    for s in _strings(products):
        if len(s) > 4096 or "\n" in s:
            continue
        p = Path(s) if os.path.isabs(s) else Path(outdir, s)
        try:
            if p.is_file() and s not in out:
                out.append(s)
        except OSError:
            continue
    return sorted(out)


def file_records(paths, outdir) -> list[dict]:
    recs = []
    for s in paths:
        p = Path(s) if os.path.isabs(s) else Path(outdir, s)
        st = p.stat()
        recs.append({"path": s, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return recs


def record_valid(record: dict, outdir) -> bool:
    """True when the record completed and all its files are present and unchanged."""
    if record.get("status") != "done":
        return False
    for f in record.get("files", []):
        p = Path(f["path"]) if os.path.isabs(f["path"]) else Path(outdir, f["path"])
        try:
            st = p.stat()
        except OSError:
            return False
        if st.st_size != f["size"] or st.st_mtime_ns != f["mtime_ns"]:
            return False
    return True


def find_in_dirs(key, dirs):
    """(dir, record) of the first valid record with ``key`` in other runs' manifests."""
    for d in dirs:
        try:
            man = load_manifest(d)
        except Exception as exc:  # another run's broken manifest is not our error
            log.warning("reuse: skipping %s (%s)", d, exc)
            continue
        if not man:
            continue
        for rec in man.get("steps", []):
            if rec.get("key") == key and record_valid(rec, d):
                return Path(d), rec
    return None


def import_record(src_dir, record, outdir, mode="link") -> dict:
    """Bring a record's files (those inside ``src_dir``) into ``outdir`` by hard
    link (``mode="link"``, falling back to a copy) or copy; return the rebased record."""
    if mode not in ("link", "copy"):
        raise ValueError(f"reuse mode must be 'link' or 'copy', not {mode!r}")
    for f in record.get("files", []):
        if os.path.isabs(f["path"]):
            continue
        src, dst = Path(src_dir, f["path"]), Path(outdir, f["path"])
        with atomic_path(dst) as tmp:   # a temporary a killed run leaves is removed by the next
            linked = False
            if mode == "link":
                try:
                    os.link(src, tmp)
                    linked = True
                except OSError:
                    linked = False
            if not linked:
                shutil.copy2(src, tmp)
    rec = dict(record)
    rec["files"] = file_records([f["path"] for f in record.get("files", [])], outdir)
    rec["reused_from"] = str(src_dir)
    return rec

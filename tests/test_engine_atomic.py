"""Atomic output files: complete or absent, never partial, and a new inode."""
import os
from pathlib import Path

import pytest

from drizzleflow.engine.atomic import atomic_path, write_text


def test_replaces_an_existing_file_with_a_new_inode(tmp_path):
    dest = tmp_path / "final_drz_sci.fits"
    dest.write_text("old")
    cached = tmp_path / "cache_copy"
    os.link(dest, cached)            # the step cache holds products as hard links
    write_text(dest, "new")
    assert dest.read_text() == "new"
    assert cached.read_text() == "old"   # the other link still sees the old product
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache_copy", "final_drz_sci.fits"]


def test_an_error_leaves_the_old_file_and_no_temporary(tmp_path):
    dest = tmp_path / "single_sci.fits"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["single_sci.fits"]


def test_a_new_file_in_a_new_folder(tmp_path):
    dest = tmp_path / "chain" / "single" / "a.txt"
    write_text(dest, "x")
    assert dest.read_text() == "x"


def test_the_old_file_stays_until_the_new_one_takes_its_place(tmp_path, monkeypatch):
    """Another process reading ``dest`` (a sweep point reading the baseline's
    manifest while the baseline saves it) must find the old file or the new one
    at every moment: nothing may remove ``dest`` before the rename."""
    import drizzleflow.engine.atomic as atomic
    dest = tmp_path / "manifest.json"
    dest.write_text("old")
    seen = []
    real = os.replace

    def replace(src, dst):
        seen.append(Path(dst).read_text())    # what a reader finds just before the swap
        return real(src, dst)
    monkeypatch.setattr(atomic.os, "replace", replace)
    write_text(dest, "new")
    assert seen == ["old"] and dest.read_text() == "new"


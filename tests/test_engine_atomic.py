"""Atomic output files: complete or absent, never partial, and a new inode."""
import os

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

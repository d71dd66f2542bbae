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
    real_replace, real_exchange = os.replace, atomic._renameat2

    def replace(src, dst):
        seen.append(Path(dst).read_text())    # what a reader finds just before the swap
        return real_replace(src, dst)

    def exchange(fd1, src, fd2, dst, flags):
        seen.append(Path(os.fsdecode(dst)).read_text())
        return real_exchange(fd1, src, fd2, dst, flags)
    monkeypatch.setattr(atomic.os, "replace", replace)
    if real_exchange is not None:
        monkeypatch.setattr(atomic, "_renameat2", exchange)
    write_text(dest, "new")
    assert seen == ["old"] and dest.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]   # the old file went


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="renameat2 is Linux's")
def test_an_existing_file_is_exchanged_not_renamed_over(tmp_path, monkeypatch):
    """On Linux the new file and the old one swap names (no ext4 flush inside a
    rename that replaces a file); a file system that cannot swap gets a rename."""
    import ctypes
    import errno
    import drizzleflow.engine.atomic as atomic
    if atomic._renameat2 is None:
        pytest.skip("no renameat2 in this C library")
    dest = tmp_path / "final_drz_wht.fits"
    dest.write_text("old")
    calls = []
    monkeypatch.setattr(atomic.os, "replace", lambda s, d: calls.append("rename") or os.rename(s, d))
    write_text(dest, "new")
    assert calls == [] and dest.read_text() == "new"

    def refuses(*args):
        ctypes.set_errno(errno.EINVAL)
        return -1
    monkeypatch.setattr(atomic, "_renameat2", refuses)
    write_text(dest, "newer")
    assert calls == ["rename"] and dest.read_text() == "newer"
    assert atomic._renameat2 is None          # not tried again in this process
    assert [p.name for p in tmp_path.iterdir()] == ["final_drz_wht.fits"]



def _killed_writer(root, *dests):
    """A process that dies (os._exit) in the middle of writing ``dests`` through
    atomic_path, and with a step's temporary folder open: what SIGKILL leaves."""
    import subprocess
    import sys
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from contextlib import ExitStack\n"
        "from drizzleflow.engine.atomic import atomic_path, temp_dir\n"
        "root = Path(sys.argv[1])\n"
        "with ExitStack() as st:\n"
        "    for d in sys.argv[2:]:\n"
        "        suffix = '.png' if d.endswith('.png') else None\n"
        "        st.enter_context(atomic_path(root / d, suffix=suffix)).write_text('half')\n"
        "    (temp_dir(root, 'drizzle_final_bands') / '3.data').write_text('spill')\n"
        "    os._exit(9)\n")
    r = subprocess.run([sys.executable, "-c", code, str(root), *dests])
    assert r.returncode == 9


def test_remove_orphans_takes_what_a_killed_run_left_and_nothing_else(tmp_path):
    from drizzleflow.engine.atomic import remove_orphans
    (tmp_path / "chain" / "single").mkdir(parents=True)
    (tmp_path / "final_drz_sci.fits").write_text("complete product")
    (tmp_path / ".notes.part").write_text("a user's hidden file")
    point = tmp_path / "sweep_point"           # another run's output folder inside this one
    point.mkdir()
    (point / "manifest.json").write_text("{}")
    _killed_writer(tmp_path, "chain/single/a_single_sci.fits", "fig.png")
    _killed_writer(point, "final_drz_wht.fits")
    before = {p for p in tmp_path.rglob("*")}
    assert len([p for p in before if p.name.endswith(".part") or ".part." in p.name]) >= 4
    removed = remove_orphans(tmp_path)
    assert sorted(p.name.split(".")[1] for p in removed) == ["a_single_sci", "drizzle_final_bands", "fig"]
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert "final_drz_sci.fits" in left and ".notes.part" in left
    assert [p for p in left if p.startswith("sweep_point/.final_drz_wht.fits.")]   # not this run's to remove
    assert not [p for p in left if p.startswith("chain/single/.")]


def test_reused_products_arrive_by_link_and_leave_no_temporaries(tmp_path):
    """The cache brings another folder's products in through atomic_path (hard
    links); importing again, over links to the same files, leaves nothing behind."""
    from drizzleflow.engine.cache import import_record
    src, out = tmp_path / "p1", tmp_path / "p2"
    (src / "chain").mkdir(parents=True)
    (src / "chain" / "a_single_sci.fits").write_text("single")
    record = {"files": [{"path": "chain/a_single_sci.fits"}]}
    for _ in range(2):
        rec = import_record(src, record, out)
        assert os.path.samefile(out / "chain" / "a_single_sci.fits", src / "chain" / "a_single_sci.fits")
        assert [p.name for p in (out / "chain").iterdir()] == ["a_single_sci.fits"]
    assert rec["reused_from"] == str(src)

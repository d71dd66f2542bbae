"""The fast paths added to cut the time outside the drizzle/median steps must
give exactly what the plain code gave: clipped statistics bit for bit, WCSCORR
rows, header-only pair checks, the archive-geometry cache (hit and miss), the
final weights made in one pass, the final products written by two threads,
the blot step's helper thread, working copies patched in their own bytes,
median strips read in place."""
import os

import numpy as np
import pytest
from astropy.io import fits

from drizzleflow.engine.errors import OutputError
from drizzleflow.steps.chain import geometry, imagestats
from drizzleflow.steps.chain.imagestats import _histogram, _median, _order_stats, clipped_stats
from drizzleflow.steps.ingest import ingest_pairs
from drizzleflow.steps.instruments.wfpc2.files import check_pair, group_shapes, read_fits
from drizzleflow.steps.wcs_tools import wcscorr

import wfpc2_synth as S


# ----------------------------------------------------------------- clipped statistics
def _plain_clipped(values, lower=None, upper=None, nclip=3, lsig=3.0, usig=3.0):
    """The straightforward algorithm (one fresh selection, ndarray.mean/std and
    np.median per pass), kept here as the reference the fast one must equal;
    None when a pass keeps nothing."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    lo = float(v.min()) if lower is None else float(lower)
    hi = float(v.max()) if upper is None else float(upper)
    a, b = lo, hi
    for k in range(nclip + 1):
        kept = v[(v >= a) & (v <= b)]
        if kept.size == 0:
            return None
        mean = float(kept.mean())
        std = float(kept.std(ddof=1)) if kept.size > 1 else 0.0
        if k < nclip:
            a_new, b_new = max(lo, mean - lsig * std), min(hi, mean + usig * std)
            if a_new == a and b_new == b:
                break
            a, b = a_new, b_new
    return kept.size, mean, std, float(np.median(kept if nclip > 0 else v))


def _cases():
    rng = np.random.default_rng(7)
    for n in (5, 1000, 65537, 200001, 300000):
        sky = rng.normal(40.0, 6.0, n).astype(np.float32)
        sky[rng.integers(0, n, n // 50)] = rng.uniform(200, 3e4, n // 50).astype(np.float32)  # CRs/stars
        yield sky
        yield np.round(sky)                       # many ties
        yield np.sort(sky)                        # sorted: strided samples are very uneven
    x = rng.normal(0.0, 1.0, 250000).astype(np.float32)
    x[::11] = np.nan
    yield x


@pytest.mark.parametrize("kw", [dict(nclip=5, lsig=4.0, usig=4.0), dict(nclip=3), dict(nclip=0),
                                dict(lower=20.0, upper=80.0, nclip=5, lsig=4.0, usig=4.0),
                                dict(nclip=8, lsig=1.0, usig=0.5)])
def test_clipped_stats_equal_the_plain_algorithm_bit_for_bit(kw):
    for v in _cases():
        want = _plain_clipped(v, **kw)
        if want is None:
            with pytest.raises(ValueError):
                clipped_stats(v, fields=("median",), **kw)
            continue
        st = clipped_stats(v, fields=("mean", "median", "mode"), **kw)
        assert (st.npix, st.mean, st.stddev, st.median) == want


def test_order_stats_match_partition_including_the_fallback(monkeypatch):
    rng = np.random.default_rng(3)
    v = rng.normal(0, 1, 400001)
    ks = [200000]
    assert _order_stats(v, ks) == list(np.partition(v, ks)[ks])
    assert _median(v) == float(np.median(v))
    w = v[:-1]
    assert _median(w) == float(np.median(w))
    # a sample that lies about the data: every sampled value is huge, so the window
    # misses the wanted ranks and the full partition must be used
    bad = rng.normal(0, 1, 409600)
    bad[::100] = 1e6
    calls = []
    real = np.partition
    monkeypatch.setattr(imagestats.np, "partition", lambda a, k: calls.append(a.size) or real(a, k))
    assert _median(bad) == float(np.median(bad))
    assert calls[-1] == bad.size  # fell back to the whole array


def test_compiled_passes_equal_the_numpy_program_bit_for_bit():
    """_clipstats: numpy's pairwise sums for every length around its block sizes,
    in-place selection as boolean indexing."""
    from drizzleflow.steps.chain._clipstats import mean_std, select
    rng = np.random.default_rng(11)
    for n in [*range(1, 300), 1023, 1024, 1025, 4097, 65537, 640000]:
        x = rng.normal(40.0, 6.0, n) * rng.choice([1.0, 1e-4, 1e5])
        mean, std = mean_std(x)
        assert mean == float(x.mean())
        assert std == (float(x.std(ddof=1)) if n > 1 else 0.0)
    for n in (1, 3, 9, 200):                        # even the sign of a zero sum
        assert str(mean_std(np.full(n, -0.0))[0]) == str(float(np.full(n, -0.0).mean()))
    x = rng.normal(0.0, 1.0, 100001)
    buf = x.copy()
    n1 = select(buf, -2.0, 2.5, buf)               # in place: the kept values move to the front
    assert np.array_equal(buf[:n1], x[(x >= -2.0) & (x <= 2.5)])
    out = np.empty_like(x)
    assert select(buf[:n1], -1.0, 1.0, out) == np.count_nonzero((x >= -1.0) & (x <= 1.0))
    with pytest.raises(ValueError):
        select(x, 0.0, 1.0, out[:10])
    with pytest.raises(ValueError):
        mean_std(x[:0])


def test_compiled_histogram_equals_the_numpy_program():
    rng = np.random.default_rng(5)
    v = rng.normal(10.0, 2.0, 300007)
    v[::1000] = 900.0
    v[5::97] = rng.uniform(10.0, 900.0, v[5::97].size)   # every bin up to the last one used
    for nbins in (2, 3, 37, 4000, 65536, 70000):
        vmin, vmax = float(v.min()), float(v.max())
        spacing = (vmax - vmin) / (nbins - 1)
        idx = np.clip(np.floor((v - vmin) / spacing).astype(np.int64), 0, nbins - 1)
        assert np.array_equal(_histogram(v, vmin, spacing, nbins), np.bincount(idx, minlength=nbins))


# ----------------------------------------------------------------- WCSCORR
def _rows_per_record(hdul):
    data = hdul["WCSCORR"].data
    out = []
    for rec in data:
        row = {}
        for name, _, default in wcscorr.COLUMNS:
            v = rec[name] if name in data.names else default
            row[name] = v.strip() if isinstance(v, str) else (v.item() if hasattr(v, "item") else v)
        if row["WCS_ID"] or row["EXTVER"]:
            out.append(row)
    return out


def test_ingest_builds_wcscorr_once_with_opus_and_idc_rows(tmp_path, monkeypatch):
    S.write_references(tmp_path / "uref")
    pairs = S.make_set(tmp_path / "arch", 1)
    tables = []
    real = wcscorr._table
    monkeypatch.setattr(wcscorr, "_table", lambda rows: tables.append(len(rows)) or real(rows))
    made = ingest_pairs([pairs[0][0]], tmp_path / "out", updatewcs=True, uref=str(tmp_path / "uref"))
    assert tables == [8]  # one table: 4 OPUS rows + 4 IDC rows
    with fits.open(made[0]["sci"]) as h:
        rows = wcscorr.read_rows(h)
        assert rows == _rows_per_record(h)
        assert [r["WCS_ID"] for r in rows] == ["OPUS"] * 4 + ["IDC_synth"] * 4
        assert [r["EXTVER"] for r in rows] == [1, 2, 3, 4] * 2
        assert all(r["WCS_key"] == "O" for r in rows[:4])
        assert h["WCSCORR"].header["TROWS"] == 8
        assert rows[4]["CRVAL1"] == h["SCI", 1].header["CRVAL1"]


# ----------------------------------------------------------------- header-only checks
def test_pair_check_reads_headers_only_and_still_sees_truncation(tmp_path):
    sci, dq = S.make_set(tmp_path, 1)[0]
    with read_fits(sci) as full, read_fits(sci, load_data=False) as bare:
        assert group_shapes(bare, "mef") == group_shapes(full, "mef") == [(S.N, S.N)] * 4
        assert all("data" not in h.__dict__ for h in bare[1:])  # nothing read
    assert check_pair(sci).shape == (S.N, S.N)
    cut = tmp_path / "cut" / sci.name
    cut.parent.mkdir()
    cut.write_bytes(sci.read_bytes()[:-3000])
    (cut.parent / dq.name).write_bytes(dq.read_bytes())
    with pytest.raises(Exception, match="truncated"):
        check_pair(cut)


def test_images_only_read_leaves_tables_unread(tmp_path):
    S.write_references(tmp_path / "uref")
    pairs = S.make_set(tmp_path / "arch", 1)
    made = ingest_pairs([pairs[0][0]], tmp_path / "out", updatewcs=True, uref=str(tmp_path / "uref"))
    with read_fits(made[0]["sci"], load_data="images") as h:
        assert "data" not in h["WCSCORR"].__dict__
        assert all("data" in x.__dict__ for x in h if x.name in ("SCI", "D2IMARR"))


# ----------------------------------------------------------------- archive geometry cache
def test_archive_geometry_cache_hit_and_miss(tmp_path, monkeypatch):
    sci, _ = S.make_set(tmp_path, 1)[0]
    geometry._ARCHIVE.clear()
    calls = []
    real = geometry.chip_geometry
    monkeypatch.setattr(geometry, "chip_geometry", lambda p: calls.append(p) or real(p))
    first = geometry.archive_geometry([sci])
    again = geometry.archive_geometry([sci])
    assert len(calls) == 1 and again[0] is first[0] and len(first) == 4
    # the file changes (new mtime): read again, new values seen
    with fits.open(sci, mode="update") as h:
        h["SCI", 1].header["CRVAL1"] = h["SCI", 1].header["CRVAL1"] + 0.01
    st = os.stat(sci)
    os.utime(sci, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = geometry.archive_geometry([sci])
    assert len(calls) == 2
    assert changed[0].wcs.wcs.crval[0] == pytest.approx(first[0].wcs.wcs.crval[0] + 0.01)
    assert geometry.archive_geometry([tmp_path / "missing_c0m.fits"]) == []


def test_static_mask_read_once_per_file_version(tmp_path, monkeypatch):
    """Every chip of a signature shares one read of its static mask; a rewritten
    file is read again; the shared array cannot be changed by a caller."""
    from types import SimpleNamespace

    from drizzleflow.steps.chain import common

    path = tmp_path / "chip2_8x8_staticMask.fits"
    fits.writeto(path, np.ones((8, 8), dtype=np.uint8))
    context = SimpleNamespace(get=lambda key, default=None: {"2:8x8": path.name},
                              abs=lambda rel: tmp_path / rel)
    chip = SimpleNamespace(detector=2, shape=(8, 8))
    reads = []
    real = common.fits.getdata
    monkeypatch.setattr(common.fits, "getdata", lambda p: reads.append(p) or real(p))
    a = common.static_mask_for(context, chip)
    b = common.static_mask_for(context, chip)
    assert a is b and len(reads) == 1 and a.all()
    with pytest.raises(ValueError):
        a[0, 0] = False
    bad = np.ones((8, 8), dtype=np.uint8)
    bad[3, 3] = 0
    fits.writeto(path, bad, overwrite=True)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    c = common.static_mask_for(context, chip)
    assert len(reads) == 2 and not c[3, 3]
    assert common.static_mask_for(SimpleNamespace(get=lambda k, d=None: {}, abs=None), chip) is None


def test_chip_wcs_kept_across_a_keyword_rewrite(tmp_path):
    """MDRIZSKY written by the sky step rewrites the working copy: under
    ``wcs_kept`` the cached chip WCS serve the new file (same objects, and the
    same transformation as a WCS built afresh from it); a plain rewrite does not."""
    from drizzleflow.steps.chain import common
    from drizzleflow.steps.instruments.wfpc2 import set_sci_keywords
    from drizzleflow.steps.instruments.wfpc2.reader import chip_geometry

    S.write_references(tmp_path / "uref")
    pairs = S.make_set(tmp_path / "arch", 1)
    made = ingest_pairs([pairs[0][0]], tmp_path / "out", updatewcs=True, uref=str(tmp_path / "uref"))
    sci = made[0]["sci"]
    before = [g.wcs for g in chip_geometry(sci, None, common.chip_wcs_for(sci))]
    with common.wcs_kept(sci):
        set_sci_keywords(sci, {1: {"MDRIZSKY": 2.5}, 2: {"MDRIZSKY": 3.0}})
    after = [g.wcs for g in chip_geometry(sci, None, common.chip_wcs_for(sci))]
    assert all(a is b for a, b in zip(after, before)) and len(after) == 4
    fresh = [g.wcs for g in chip_geometry(sci)]
    xy = np.array([[0.0, 0.0], [400.0, 300.0], [799.0, 799.0]])
    for a, f in zip(after, fresh):
        assert np.allclose(a.all_pix2world(xy, 0), f.all_pix2world(xy, 0), rtol=0, atol=1e-12)
    set_sci_keywords(sci, {1: {"MDRIZSKY": 4.0}})
    again = [g.wcs for g in chip_geometry(sci, None, common.chip_wcs_for(sci))]
    assert not any(a is b for a, b in zip(again, before))


def test_sky_keywords_patched_in_place_equal_astropys_rewrite(tmp_path):
    """Headers that keep their size are rewritten in the file's own bytes: the
    same file as astropy's read-modify-write, same inode, a new identity; a header
    that would grow by a block, a CHECKSUM or a second hard link (a sweep point's
    copy) send it through the rewrite, which leaves the other link alone."""
    from drizzleflow.engine.manifest import file_identity
    from drizzleflow.steps.instruments.wfpc2 import set_sci_keywords, workcopy

    pairs = S.make_set(tmp_path / "arch", 1)
    sci = ingest_pairs([pairs[0][0]], tmp_path / "out")[0]["sci"]
    ref = tmp_path / "ref.fits"
    for new in ({1: {"MDRIZSKY": 1.0}, 2: {"MDRIZSKY": (1.5, "Sky value (DN)")}},     # new cards
                {1: {"MDRIZSKY": (3.25, "Sky value (DN)")}, 2: {"MDRIZSKY": 4.5}}):   # changed ones
        ref.write_bytes(open(sci, "rb").read())

        def edit(hdul):
            for ev, kws in new.items():
                for k, v in kws.items():
                    hdul["SCI", ev].header[k] = v
        workcopy._rewrite(ref, edit)
        ino, ident = os.stat(sci).st_ino, file_identity(sci)
        set_sci_keywords(sci, new)
        assert open(sci, "rb").read() == ref.read_bytes()
        assert os.stat(sci).st_ino == ino and file_identity(sci) != ident
    assert fits.getval(sci, "MDRIZSKY", ext=("SCI", 2)) == 4.5

    many = {1: {f"KW{i:06d}": float(i) for i in range(40)}}   # 40 cards: one more block
    assert not workcopy._patch_headers(sci, many)
    set_sci_keywords(sci, many)
    assert fits.getval(sci, "KW000039", ext=("SCI", 1)) == 39.0

    link = tmp_path / "link.fits"
    os.link(sci, link)
    kept = link.read_bytes()
    assert not workcopy._patch_headers(sci, {1: {"MDRIZSKY": 9.0}})
    set_sci_keywords(sci, {1: {"MDRIZSKY": 9.0}})
    assert link.read_bytes() == kept and fits.getval(sci, "MDRIZSKY", ext=("SCI", 1)) == 9.0
    os.unlink(link)
    assert workcopy._patch_headers(sci, {1: {"MDRIZSKY": 8.0}})

    with fits.open(sci, mode="update") as h:
        h["SCI", 1].header["CHECKSUM"] = "0000000000000000"
    assert not workcopy._patch_headers(sci, {1: {"MDRIZSKY": 7.0}})


def test_band_writer_swaps_given_blocks_in_place_into_the_right_file(tmp_path):
    """``BandWriter.write`` swaps blocks of the file's type in place instead of
    copying them: the data written are byte-identical to astropy writing the
    whole image; blocks of another type are converted (and left as they were)."""
    from drizzleflow.steps.chain.banding import BandWriter

    rng = np.random.default_rng(3)
    sci = rng.normal(size=(10, 7)).astype(np.float32)
    ctx = rng.integers(0, 2**31 - 1, size=(10, 7)).astype(np.int32)
    med64 = rng.normal(size=(10, 7))
    paths = {k: tmp_path / f"{k}.fits" for k in ("sci", "ctx", "med")}
    w = BandWriter(paths, {k: fits.Header() for k in paths}, (10, 7), {"ctx": 32})
    m = med64.copy()
    for y0 in (0, 4, 8):
        y1 = min(10, y0 + 4)
        w.write(sci=sci[y0:y1].copy(), ctx=ctx[y0:y1].copy(), med=m[y0:y1])
    w.close()
    assert (m == med64).all()   # float64 rows were converted into a copy
    for k, whole in (("sci", sci), ("ctx", ctx), ("med", med64.astype(np.float32))):
        ref = tmp_path / f"ref_{k}.fits"
        fits.PrimaryHDU(whole).writeto(ref)
        with fits.open(paths[k]) as h, fits.open(ref) as r:
            assert h[0].header["BITPIX"] == r[0].header["BITPIX"]
            assert h[0].data.tobytes() == r[0].data.tobytes()


def test_band_writer_header_matches_astropy_extend(tmp_path):
    """The band writer builds its header as one card list instead of
    ``Header.extend`` card by card: the same cards in the same order (layout
    keywords first, then the given keywords, then commentary cards), and a
    given header's own layout keywords do not reach the file."""
    from drizzleflow.steps.chain.banding import BandWriter

    given = fits.Header([("BITPIX", 8), ("NAXIS", 3), ("NAXIS1", 99), ("EXTEND", True),
                         ("BUNIT", "ELECTRONS/S"), ("HISTORY", "made by a test"),
                         ("CRPIX1", 12.5, "reference pixel"), ("COMMENT", "note"), ("EXPTIME", 10.0)])
    w = BandWriter({"sci": tmp_path / "a.fits"}, {"sci": given}, (3, 4), {})
    w.write(sci=np.zeros((3, 4), np.float32))
    w.close()
    reference = fits.Header()
    for k, v in (("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 2), ("NAXIS1", 4), ("NAXIS2", 3)):
        reference[k] = v
    reference.extend(given, unique=True)
    got = fits.getheader(tmp_path / "a.fits")
    assert got.tostring() == reference.tostring()
    assert list(got)[:8] == ["SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "BUNIT", "CRPIX1", "EXPTIME"]
    assert got["BITPIX"] == -32 and got["NAXIS"] == 2 and "EXTEND" not in got


# ----------------------------------------------------------------- final drizzle
_IVM = 400.0 ** 2 / (0.005 * 400.0 + 31.5 + 5.2 ** 2) / 0.455 ** 4   # exptime²/variance/rho⁴


@pytest.mark.parametrize("wht_type, wt_scl, value", [("EXP", "exptime", 400.0), ("EXP", "expsq", 160000.0),
                                                     ("EXP", 0.7, 280.0), ("IVM", "exptime", _IVM),
                                                     ("IVM", 2.5, 2.5 * _IVM)])
def test_chip_weight_in_one_pass_equals_mask_times_value(wht_type, wt_scl, value):
    from drizzleflow.steps.chain.drizzle_final import chip_weight
    rng = np.random.default_rng(3)
    good = (rng.random((40, 50)) > 0.3)[5:31, 7:43]     # a box of a chip: not contiguous
    w = chip_weight(good, wht_type, wt_scl, 400.0, sky=31.5, rdnoise=5.2, rho=0.455)
    ref = chip_weight(np.ascontiguousarray(good), wht_type, wt_scl, 400.0, sky=31.5, rdnoise=5.2, rho=0.455)
    assert w.dtype == np.float32 and w.flags.c_contiguous and w.shape == good.shape
    assert np.array_equal(w, good.astype(np.float32) * np.float32(value)) and np.array_equal(w, ref)


def test_final_products_written_by_two_threads_are_the_plain_streams(tmp_path):
    """The context plane goes to its file from a second thread while the sci and
    wht rows are finished: the files must hold what one thread writes."""
    from types import SimpleNamespace

    from drizzleflow.steps.chain.drizzle_final import _ProductWriter
    from drizzleflow.steps.drizzle.core import Drizzle
    rng = np.random.default_rng(5)
    shape = (700, 90)   # several 256-row blocks, the last one short
    drz = Drizzle(shape, fillval=-1.0)
    drz._acc[...] = rng.random(shape + (2,), dtype=np.float32)
    drz._acc[::7, :, 1] = 0.0
    drz._ctx[0] = rng.integers(0, 2 ** 31 - 1, shape, dtype=np.int32)
    ctx_ref = drz._ctx[0].copy()
    sci_ref, wht_ref, _ = drz.finish()
    sci_ref, wht_ref = sci_ref.copy(), wht_ref.copy()
    params = SimpleNamespace(root="t", context=True, units="cps")
    out = _ProductWriter(tmp_path, params, shape, fits.Header({"OBJECT": "x"}), -1.0, 10.0)
    out.write(drz)
    paths = out.close()
    assert np.array_equal(fits.getdata(paths["sci"]), sci_ref)
    assert np.array_equal(fits.getdata(paths["wht"]), wht_ref)
    assert np.array_equal(fits.getdata(paths["ctx"]), ctx_ref)
    assert out.zero_weight == int((wht_ref <= 0).sum())


def test_blot_pipeline_keeps_order_overlaps_and_reports_errors():
    """The blot step maps the next chip and writes the previous one in a helper
    thread: results in chip order, each the plain composition; the next map is
    made while the current chip is resampled; a failed write stops the step."""
    import threading

    from drizzleflow.steps.chain.blot import _pipelined
    main = threading.get_ident()
    log, started = [], threading.Event()

    def mapped(c):
        log.append(("map", c, threading.get_ident() != main))
        if c == 1:
            started.set()
        return c * 10

    def resampled(c, pm):
        if c == 0:   # the helper maps chip 1 while chip 0 is resampled
            assert started.wait(5)
        return pm + 1

    def written(c, b):
        if c == "bad":
            raise OSError("disk full")
        return c, b

    assert _pipelined([0, 1, 2, 3], mapped, resampled, written) == [(0, 1), (1, 11), (2, 21), (3, 31)]
    assert [c for _, c, _ in log] == [0, 1, 2, 3] and all(other for *_, other in log)
    assert _pipelined([], mapped, resampled, written) == []
    with pytest.raises(OSError, match="disk full"):
        _pipelined([0, "bad", 2], lambda c: 0, lambda c, pm: pm, written)


# ----------------------------------------------------------------- working-copy patches
def _mef(path, arrays, bzero=None):
    hdus = [fits.PrimaryHDU()]
    for k, a in enumerate(arrays, 1):
        h = fits.ImageHDU(a, name="SCI", ver=k)
        if bzero is not None:
            h.scale(type="int16", bzero=bzero)
        hdus.append(h)
    fits.HDUList(hdus).writeto(path)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32])
def test_patched_copy_equals_astropys_rewrite(tmp_path, dtype):
    from drizzleflow.steps.instruments.wfpc2.workcopy import patched_copy
    rng = np.random.default_rng(7)
    arrays = [rng.integers(0, 3000, (30, 20)).astype(dtype) for _ in range(3)]
    src = tmp_path / "src.fits"
    _mef(src, arrays)
    before = src.read_bytes()

    def change(a, k):
        a[k, :] = 1234
        a[:, k] = -5
    dest = tmp_path / "patched.fits"
    assert patched_copy(src, dest, lambda hdr, data: change(data, hdr["EXTVER"]))
    ref = tmp_path / "astropy.fits"
    with fits.open(src) as hdul:
        for h in hdul[1:]:
            d = h.data.copy()
            change(d, h.header["EXTVER"])
            h.data = d
        hdul.writeto(ref)
    assert dest.read_bytes() == ref.read_bytes() and src.read_bytes() == before


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_patched_copy_declines_scaled_data_and_names_a_cut_file(tmp_path):
    from drizzleflow.steps.instruments.wfpc2.workcopy import patched_copy
    scaled = tmp_path / "scaled.fits"
    _mef(scaled, [np.arange(600, dtype=np.float64).reshape(30, 20) * 100], bzero=32768)
    assert not patched_copy(scaled, tmp_path / "x.fits", lambda hdr, data: None)
    assert not (tmp_path / "x.fits").exists()
    cut = tmp_path / "cut.fits"
    _mef(cut, [np.zeros((300, 200), np.float32)])
    cut.write_bytes(cut.read_bytes()[:-2880 * 30])
    with pytest.raises(OutputError, match="cut.fits.*cut short"):
        patched_copy(cut, tmp_path / "y.fits", lambda hdr, data: None)


# ----------------------------------------------------------------- median reads
def _singles(tmp_path, n=3, shape=(150, 40)):
    rng = np.random.default_rng(11)
    out = []
    for k in range(n):
        sci, wht = tmp_path / f"s{k}_sci.fits", tmp_path / f"s{k}_wht.fits"
        fits.PrimaryHDU(rng.normal(10, 2, shape).astype(np.float32)).writeto(sci)
        fits.PrimaryHDU(rng.uniform(50, 100, shape).astype(np.float32)).writeto(wht)
        out.append({"sci": str(sci), "wht": str(wht), "exptime": 100.0, "bsky": 5.0, "rdnoise": 5.0,
                    "wht_mean": 75.0})
    return out


@pytest.mark.parametrize("combine_type, preadv", [("minmed", "yes"), ("median", "yes"), ("minmed", "no"),
                                                   ("minmed", "short")])
def test_median_strips_read_in_place_equal_a_whole_image_combination(tmp_path, monkeypatch, combine_type, preadv):
    from drizzleflow.engine.step import Context
    if preadv == "no":   # as on Windows: seek and read under a lock
        monkeypatch.delattr(os, "preadv", raising=False)
    elif preadv == "short":   # reads that return less than asked, as the OS may
        real = os.preadv

        def short(fd, buffers, offset):
            return real(fd, [buffers[0][:max(1, len(buffers[0]) // 3)]], offset)
        monkeypatch.setattr(os, "preadv", short)
    from drizzleflow.steps.chain.median import MedianStep, combine_strip
    singles = _singles(tmp_path)
    params = MedianStep.Params(combine_type=combine_type, rows=16)
    ctx = Context(outdir=tmp_path / "out", products={"singles": singles, "sep_grid": {}})
    MedianStep().run(ctx, params)
    got = fits.getdata(ctx.abs(ctx.get("median")["path"]))
    sci = np.stack([fits.getdata(s["sci"]).astype(np.float32) for s in singles])
    wht = np.stack([fits.getdata(s["wht"]).astype(np.float32) for s in singles])
    assert np.array_equal(got, combine_strip(sci, wht, singles, params, [75.0] * 3))


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_median_names_a_cut_or_mismatched_single(tmp_path):
    from drizzleflow.engine.errors import InputFileError
    from drizzleflow.engine.step import Context
    from drizzleflow.steps.chain.median import MedianStep
    singles = _singles(tmp_path)
    cut = tmp_path / "s1_wht.fits"
    cut.write_bytes(cut.read_bytes()[:2880 * 3])
    ctx = Context(outdir=tmp_path / "out", products={"singles": singles, "sep_grid": {}})
    with pytest.raises(InputFileError, match="s1_wht.fits: cut short"):
        MedianStep().run(ctx, MedianStep.Params())
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(cut, overwrite=True)
    with pytest.raises(InputFileError, match="s1_wht.fits: a single drizzle of 10 x 10"):
        MedianStep().run(ctx, MedianStep.Params())

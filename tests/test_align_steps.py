"""The find_sources and align steps on small synthetic WFPC2-like working
copies (two chips per exposure, known pointing errors)."""
import logging

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from drizzleflow.engine.errors import StepError
from drizzleflow.engine.step import Context
from drizzleflow.steps.align.steps import Align, FindSources

RA0, DEC0 = 323.36, -0.82
N = 160
COSD = np.cos(np.radians(DEC0))


def _wcs(off, scale, rot, err=(0.0, 0.0)):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [RA0 + (off[0] + err[0]) / 3600 / COSD, DEC0 + (off[1] + err[1]) / 3600]
    w.wcs.crpix = [N / 2 + 0.5, N / 2 + 0.5]
    th = np.radians(rot)
    w.wcs.cd = scale / 3600 * np.array([[-np.cos(th), np.sin(th)], [np.sin(th), np.cos(th)]])
    w.wcs.set()
    return w


CHIPS = [(1, (-6.0, 0.0), 0.0455), (2, (6.0, 0.0), 0.0455)]


def _render(w, stars, flux, rng, fwhm=2.2):
    yy, xx = np.mgrid[0:N, 0:N]
    img = np.full((N, N), 30.0)
    x, y = w.all_world2pix(stars[:, 0], stars[:, 1], 0)
    s = fwhm / 2.3548
    for xi, yi, f in zip(x, y, flux):
        if -5 < xi < N + 5 and -5 < yi < N + 5:
            img += f / (2 * np.pi * s * s) * np.exp(-((xx - xi) ** 2 + (yy - yi) ** 2) / (2 * s * s))
    return rng.poisson(np.clip(img, 0, None)).astype(np.float32) / 7.0   # DN, gain 7


DITHERS = [(0.0, 0.0), (0.25, 0.15), (0.11, 0.33), (0.5, 0.5)]   # arcsec, like a dither box


def make_set(tmp, errors, nstars=200, seed=0, empty_chip=None, hot=0):
    """Working copies in tmp/work; returns (exposures product, truth WCS per root)."""
    rng = np.random.default_rng(seed)
    stars = np.column_stack([RA0 + rng.uniform(-13, 13, nstars) / 3600 / COSD,
                             DEC0 + rng.uniform(-4, 4, nstars) / 3600])
    flux = rng.uniform(3000, 30000, nstars)
    work = tmp / "work"
    work.mkdir(parents=True, exist_ok=True)
    recs, truth = [], {}
    for k, err in enumerate(errors):
        root = f"ua0605{k:02d}m"
        ph = fits.Header({"INSTRUME": "WFPC2", "ROOTNAME": root, "EXPTIME": 10.0, "ATODGAIN": 7.0,
                          "DFWORK": True, "PA_V3": 0.0})
        sci = [fits.PrimaryHDU(header=ph)]
        dq = [fits.PrimaryHDU(header=ph.copy())]
        truth[root] = {}
        for det, off, scale in CHIPS:
            dth = DITHERS[k]
            true = _wcs((off[0] + dth[0], off[1] + dth[1]), scale, 15.0)
            hdrw = _wcs((off[0] + dth[0], off[1] + dth[1]), scale, 15.0, err)
            data = _render(true, stars, flux, rng)
            if hot:   # unflagged hot pixels, the same in every exposure
                hp = np.random.default_rng(99 + det).integers(5, N - 5, (hot, 2))
                data[hp[:, 1], hp[:, 0]] += 400.0
            if empty_chip == (k, det):
                data = rng.normal(30 / 7, 0.3, data.shape).astype(np.float32)
            h = hdrw.to_header()
            h["DETECTOR"] = det
            h["BUNIT"] = "COUNTS"
            h["IDCSCALE"] = scale
            sci.append(fits.ImageHDU(data=data, header=h, name="SCI", ver=det))
            dq.append(fits.ImageHDU(data=np.zeros((N, N), np.int16), name="SCI", ver=det))
            truth[root][det] = true
        fits.HDUList(sci).writeto(work / f"{root}_c0m.fits")
        fits.HDUList(dq).writeto(work / f"{root}_c1m.fits")
        recs.append({"root": root, "sci": f"work/{root}_c0m.fits", "dq": f"work/{root}_c1m.fits",
                     "source": f"{root}_c0m.fits", "nchips": 2})
    return recs, truth


def _ctx(tmp, recs):
    return Context(outdir=tmp, products={"exposures": recs})


def _pointing_error_mas(path, truth):
    errs = []
    with fits.open(path) as h:
        for det, true in truth.items():
            w = WCS(h["SCI", det].header)
            pix = np.random.default_rng(det).uniform(0, N - 1, (50, 2))
            d = (w.all_pix2world(pix, 0) - true.all_pix2world(pix, 0)) * [COSD, 1] * 3.6e6
            errs.append(np.hypot(d[:, 0], d[:, 1]))
    return float(np.sqrt(np.mean(np.concatenate(errs) ** 2)))


FS = dict(conv_width=4.4, threshold=8.0, edges="none")


def test_find_and_align_recover_pointing(tmp_path):
    errors = [(0, 0), (0.05, -0.03), (-0.04, 0.06)]
    recs, truth = make_set(tmp_path, errors)
    ctx = _ctx(tmp_path, recs)
    FindSources().run(ctx, FindSources.Params(**FS))
    cats = ctx.get("catalogs")
    assert len(cats) == 3 and all(c["n"] > 25 for cat in cats for c in cat["chips"])
    coo = tmp_path / cats[0]["chips"][0]["coo"]
    assert coo.name == "ua060500m_c0m_sci1_xy_catalog.coo" and coo.read_text().count("\n") > 25
    before = [_pointing_error_mas(tmp_path / r["sci"], truth[r["root"]]) for r in recs[1:]]
    Align().run(ctx, Align.Params(minobj=10, fitgeometry="rscale", headerlet=True, hdrname="test1"))
    al = ctx.get("alignment")
    assert al["reference"] == "ua060500m"
    after = [_pointing_error_mas(tmp_path / r["sci"], truth[r["root"]]) for r in recs[1:]]
    assert min(before) > 40
    print("pointing error mas before", before, "after", after)
    assert max(after) < 1.0, after
    for r in recs[1:]:
        res = al["images"][r["root"]]
        assert res["status"] == "aligned" and res["nfit"] >= 30
        match = (tmp_path / res["match_file"]).read_text()
        for line in ("# X and Y shift:", "# X and Y rms:", "# X and Y rotation:", "# X and Y scale:"):
            assert line in match
        assert "Peak has" in res["histogram_peak"]
        assert (tmp_path / res["hist_png"]).stat().st_size > 1000
        hl = fits.open(tmp_path / res["headerlet"])
        assert hl[0].header["HDRNAME"] == "test1" and hl[0].header["DESTIM"] == r["root"]
        with fits.open(tmp_path / r["sci"]) as h:
            assert h["SCI", 1].header["WCSNAME"] == "TWEAK"
    shifts = (tmp_path / "align" / "shifts.txt").read_text()
    assert "# form: delta" in shifts and "ua060501m_c0m" in shifts


def test_refimage_not_in_inputs(tmp_path):
    recs, _ = make_set(tmp_path, [(0, 0), (0.02, 0)], nstars=60)
    ctx = _ctx(tmp_path, recs)
    FindSources().run(ctx, FindSources.Params(**FS))
    with pytest.raises(StepError, match="refimage 'nope_c0m.fits' is not one of the inputs.*ua060500m"):
        Align().run(ctx, Align.Params(refimage="nope_c0m.fits"))
    Align().run(ctx, Align.Params(refimage="ua060501m_c0m_cleanmask.fits", minobj=5, plots=False))
    assert ctx.get("alignment")["reference"] == "ua060501m"


def test_chip_without_sources_warns_and_failure_is_clear(tmp_path, caplog):
    recs, truth = make_set(tmp_path, [(0, 0), (0.05, 0)], nstars=40, empty_chip=(1, 2))
    ctx = _ctx(tmp_path, recs)
    with caplog.at_level(logging.WARNING):
        FindSources().run(ctx, FindSources.Params(**FS))
    assert "ua060501m[sci,2]: 0 sources" in caplog.text
    with pytest.raises(StepError, match="ua060501m: alignment failed: only .* minobj is 50"):
        Align().run(ctx, Align.Params(minobj=50))
    hdr_before = fits.getheader(tmp_path / recs[1]["sci"], ("SCI", 1))
    Align().run(ctx, Align.Params(minobj=50, on_failure="skip"))
    assert ctx.get("alignment")["images"]["ua060501m"]["status"] == "failed"
    hdr_after = fits.getheader(tmp_path / recs[1]["sci"], ("SCI", 1))
    assert hdr_after["CRVAL1"] == hdr_before["CRVAL1"] and "WCSNAME" not in hdr_after


def test_headerlet_applied_as_primary_like_the_tutorial(tmp_path):
    recs, truth = make_set(tmp_path, [(0, 0), (0.04, 0.03)], nstars=200)
    ctx = _ctx(tmp_path, recs)
    FindSources().run(ctx, FindSources.Params(**FS))
    Align().run(ctx, Align.Params(minobj=10, updatehdr=False, headerlet=True, hdrname="test1",
                                  attach=False, apply=True))
    res = ctx.get("alignment")["images"]["ua060501m"]
    assert res["applied"] and res["headerlet"].endswith("ua060501m_c0m_hlet.fits")
    with fits.open(tmp_path / recs[1]["sci"]) as h:
        assert h["SCI", 2].header["HDRNAME"] == "test1"
        assert h["SCI", 2].header["WCSNAME"] == "TWEAK"
        assert "WCSCORR" in h and not any(x.name == "HDRLET" for x in h)   # attach: false
    assert _pointing_error_mas(tmp_path / recs[1]["sci"], truth["ua060501m"]) < 1.0


def test_hot_pixels_do_not_fake_a_match(tmp_path):
    """Unflagged hot pixels sit on the same chip pixels in every exposure; they
    must not pull the fit to the dither offset."""
    recs, truth = make_set(tmp_path, [(0, 0), (0.03, -0.02)], nstars=200, hot=150)
    ctx = _ctx(tmp_path, recs)
    FindSources().run(ctx, FindSources.Params(**FS))
    Align().run(ctx, Align.Params(minobj=10))
    res = ctx.get("alignment")["images"]["ua060501m"]
    assert res["static_dropped"] > 50
    assert _pointing_error_mas(tmp_path / recs[1]["sci"], truth["ua060501m"]) < 2.0


def test_unsupported_region_names_image_and_chip(tmp_path):
    recs, _ = make_set(tmp_path, [(0, 0)], nstars=20)
    ctx = _ctx(tmp_path, recs)
    bad = tmp_path / "bad.reg"
    bad.write_text("image; annulus(10,10,3,5)\n")
    p = FindSources.Params(**FS, exclusions=[{"image": "ua060500m", "chip": 2, "region": str(bad)}])
    with pytest.raises(StepError, match=r"ua060500m\[sci,2\].*unsupported region shape 'annulus'"):
        FindSources().run(ctx, p)


def test_cr_flags_on_star_cores_do_not_bias_centroids(tmp_path):
    """Pre-alignment CR flags on star cores, with blotted values from a
    misaligned median, must not move the centroids (protect_stars)."""
    recs, _ = make_set(tmp_path, [(0, 0)], nstars=150)
    rec = recs[0]
    sci_p, dq_p = tmp_path / rec["sci"], tmp_path / rec["dq"]
    clean_p = tmp_path / "work" / f"{rec['root']}_c0m_crclean.fits"
    with fits.open(sci_p) as s, fits.open(dq_p) as d:
        s = fits.HDUList([h.copy() for h in s])
        d = fits.HDUList([h.copy() for h in d])
        for ev in (1, 2):
            img = s["SCI", ev].data
            shifted = np.roll(img, 2, axis=1)            # the "blot" 2 px off (PC scale: 90 mas)
            core = img > np.percentile(img, 99.3)        # star cores
            d["SCI", ev].data[core] |= 4096
            img2 = img.copy()
            img2[core] = shifted[core]
            s["SCI", ev].data = img2
        s.writeto(clean_p)
        d.writeto(dq_p, overwrite=True)

    def xs(protect):
        ctx = Context(outdir=tmp_path, products={"exposures": recs, "crclean": [f"work/{clean_p.name}"]})
        FindSources().run(ctx, FindSources.Params(**FS, protect_stars=protect))
        c = ctx.get("catalogs")[0]
        assert c["image"].endswith("_crclean.fits")
        return Table.read(tmp_path / c["chips"][0]["ecsv"], format="ascii.ecsv")

    ctx0 = Context(outdir=tmp_path / "ref", products={"exposures": [dict(rec, sci=str(sci_p), dq=str(dq_p))]})
    FindSources().run(ctx0, FindSources.Params(**FS, use_crclean=False, dqbits=0xFFFF))
    ref = Table.read(tmp_path / "ref" / ctx0.get("catalogs")[0]["chips"][0]["ecsv"], format="ascii.ecsv")

    def offset(t):
        d = np.hypot(t["x"][:, None] - ref["x"][None, :], t["y"][:, None] - ref["y"][None, :])
        return np.median(np.abs((t["x"][:, None] - ref["x"][None, :])[np.arange(len(t)), d.argmin(axis=1)]))

    assert offset(xs(True)) < 0.01
    assert offset(xs(False)) > 0.05


def test_recipe_edges_inline_regions_and_fixed_offset(tmp_path):
    recs, truth = make_set(tmp_path, [(0, 0), (0.03, 0.02)], nstars=200)
    ctx = _ctx(tmp_path, recs)
    FindSources().run(ctx, FindSources.Params(**dict(FS, edges={1: {"x": 100, "y": 0}})))
    t = Table.read(tmp_path / ctx.get("catalogs")[0]["chips"][0]["ecsv"], format="ascii.ecsv")
    assert len(t) > 5 and np.all(t["x"] >= 99.5)
    # an inline image-coordinate box over the left half of chip 2 of every image
    FindSources().run(ctx, FindSources.Params(**dict(FS, exclusions=[
        {"image": "ua0605*", "chip": 2, "region": "image; box(40.5,80.5,80,160,0)"}])))
    for c in ctx.get("catalogs"):
        t2 = Table.read(tmp_path / c["chips"][1]["ecsv"], format="ascii.ecsv")
        assert len(t2) > 5 and np.all(t2["x"] >= 79.5)
    # no histogram: the given offset (plane px) starts the matching
    FindSources().run(ctx, FindSources.Params(**FS))
    Align().run(ctx, Align.Params(minobj=10, use2dhist=False, xoffset=0.0, yoffset=0.0, tolerance=2.0,
                                  plots=False))
    res = ctx.get("alignment")["images"]["ua060501m"]
    assert res["status"] == "aligned" and res["histogram_peak"] == ""
    assert _pointing_error_mas(tmp_path / recs[1]["sci"], truth["ua060501m"]) < 1.0


def test_rms_above_bound_is_a_failure_not_a_solution(tmp_path):
    recs, _ = make_set(tmp_path, [(0, 0), (0.03, 0.02)], nstars=120)
    ctx = _ctx(tmp_path, recs)
    FindSources().run(ctx, FindSources.Params(**FS))
    with pytest.raises(StepError, match=r"ua060501m: alignment failed: fit rms .* exceeds maxrms 0.001"):
        Align().run(ctx, Align.Params(minobj=10, maxrms=0.001, plots=False))
    # the failed exposure keeps its header WCS (no TWEAK solution written)
    assert "WCSNAME" not in fits.getheader(tmp_path / recs[1]["sci"], ("SCI", 1))


def test_exclude_list_naming_unknown_image_warns(tmp_path, caplog):
    recs, _ = make_set(tmp_path, [(0, 0)], nstars=30)
    lst = tmp_path / "exclude.list"
    lst.write_text("ub999999m_c0m_cleanmask.fits none none\n")
    with caplog.at_level(logging.WARNING):
        FindSources().run(_ctx(tmp_path, recs), FindSources.Params(**FS, exclude_list=str(lst)))
    assert "names 'ub999999m_c0m_cleanmask.fits', which is not one of the inputs (ua060500m)" in caplog.text


def test_region_files_are_part_of_the_cache_key(tmp_path):
    """find_sources names the region files it will read (each exclusion's file,
    the exclude.list and the files it lists; not inline regions), and the cache
    key changes when one of them is edited."""
    from drizzleflow.engine.cache import key_file_digests
    reg = tmp_path / "spikes.reg"
    reg.write_text('image\ncircle(100,100,20)\n')
    chip2 = tmp_path / "c2.reg"
    chip2.write_text('image\nbox(50,50,10,10,0)\n')
    lst = tmp_path / "exclude.list"
    lst.write_text("ua060502m_c0m.fits none c2.reg\n")
    params = FindSources.Params(exclusions=[{"region": str(reg)}, {"region": 'image; circle(5,5,2)'}],
                                exclude_list=str(lst))
    assert FindSources.key_files(params) == [str(reg), str(lst), str(chip2)]
    before = key_file_digests(FindSources.key_files(params))
    chip2.write_text('image\nbox(50,50,12,10,0)\n')
    after = key_file_digests(FindSources.key_files(params))
    assert before[:2] == after[:2] and before[2] != after[2]
    assert FindSources.key_files(FindSources.Params()) == []

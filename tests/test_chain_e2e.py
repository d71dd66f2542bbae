"""End to end: the tutorial chain on a small simulated M2 set (4 exposures x 4
chips of 256²), scored against the simulator's truth.

The simulated pointings carry errors the headers do not know (as the real
data did before TweakReg); the accuracy test puts the true pointing into the
working copies after ingest — what a perfect alignment step would do — and
then runs the chain as the tutorial's first call does.
"""
import numpy as np
import pytest
from astropy.io import fits

from drizzleflow.engine.step import Context
from drizzleflow.steps.chain.blot import BlotStep
from drizzleflow.steps.chain.cosmic_rays import CosmicRaysStep
from drizzleflow.steps.chain.drizzle_final import DrizzleFinalStep
from drizzleflow.steps.chain.drizzle_separate import DrizzleSeparateStep
from drizzleflow.steps.chain.median import MedianStep
from drizzleflow.steps.chain.sky import SkyStep
from drizzleflow.steps.chain.static_mask import StaticMaskStep
from drizzleflow.steps.chain import validation
from drizzleflow.steps.instruments.model import CR_BIT

pytestmark = pytest.mark.slow

TUTORIAL = [
    (StaticMaskStep, {}),
    (SkyStep, {}),
    (DrizzleSeparateStep, {"fillval": 99999, "bits": "8,1024"}),
    (MedianStep, {"combine_type": "minmed"}),
    (BlotStep, {}),
    (CosmicRaysStep, {"snr": "5.5 3.5", "scale": "2.0 1.5", "corr": True}),
    (DrizzleFinalStep, {"wht_type": "EXP", "wt_scl": "exptime", "pixfrac": 1.0, "fillval": 99999,
                        "bits": "8,1024"}),
]


def _run(ctx, plan):
    for cls, kw in plan:
        ctx.step_name = cls.name
        cls().run(ctx, cls.Params(**kw))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from drizzleflow.steps.simulate.m2 import simulate_m2
    d = tmp_path_factory.mktemp("sim")
    simulate_m2(d, seed=1, size=256, nexp=4)
    return d


@pytest.fixture(scope="module")
def run(sim, tmp_path_factory):
    from drizzleflow.steps.ingest import Ingest
    out = tmp_path_factory.mktemp("out")
    ctx = Context(outdir=out, inputs=sorted(sim.glob("*_c0m.fits")),
                  options={"uref": str(sim / "uref") + "/", "force": False})
    ctx.step_name = "ingest"
    Ingest().run(ctx, Ingest.Params(updatewcs=True))
    validation.align_to_truth(ctx.outdir, sim)
    _run(ctx, TUTORIAL)
    return ctx


def test_products_and_fill(run):
    fin = run.get("final")
    sci = fits.getdata(run.abs(fin["sci"]))
    wht = fits.getdata(run.abs(fin["wht"]))
    ctx = fits.getdata(run.abs(fin["ctx"]))
    assert sci.shape == wht.shape == ctx.shape
    assert np.isfinite(sci).all()                      # no NaN unless asked for
    assert (wht == 0).any()
    assert (sci[wht == 0] == 99999.0).all()            # exactly the fill value, not 99999/gain
    assert not (sci[wht > 0] == 99999.0).any()
    assert ((ctx != 0) == (wht > 0)).all()
    h = fits.getheader(run.abs(fin["sci"]))
    assert h["BUNIT"] == "ELECTRONS/S" and h["EXPTIME"] == pytest.approx(40.0)
    assert h["NDRIZIM"] == 16 and h["D016PIXF"] == 1.0 and h["D001FVAL"] == "99999.0"
    assert h["D001KERN"] == "square" and h["D001BITS"] == "1032"
    assert h["D001DATA"].startswith("ua060502m_c0m.fits[sci,1]")
    assert 2.4e-19 < h["PHOTFLAM"] < 4e-19            # per e-/s, mean of the chips
    # default output scale = the PC's (tutorial note III)
    assert abs(h["CD1_1"] ** 2 + h["CD2_1"] ** 2) ** 0.5 * 3600 == pytest.approx(0.0455, rel=0.01)


def test_cosmic_ray_accuracy(run, sim):
    m = validation.cr_metrics(run.outdir, sim / "truth")["total"]
    assert m["events"] >= 30
    assert m["recall"] >= 0.99, m
    assert m["far_fraction"] < 0.10, m
    cores = validation.star_cores_flagged(run.outdir / "work", run.outdir / "chain" / "crmask", sim / "truth")
    assert cores["checked"] > 100
    assert cores["flagged"] == 0, cores


def test_noise_model_flags_few_pixels(run):
    """Electrons throughout: the CR step flags far below 1 % of the pixels
    (DrizzlePac 3.11's WFPC2 units slip flags ~11 %)."""
    counts = run.get("cr_counts")
    total = sum(sum(c) for c in counts.values())
    assert 0 < total < 0.005 * 16 * 256 * 256


def test_dq_bits_match_masks_and_rerun_is_idempotent(run):
    def dq_state():
        out = {}
        for root, masks in run.get("crmasks").items():
            with fits.open(run.outdir / "work" / f"{root}_c1m.fits") as h:
                exts = [e for e in h[1:] if e.header.get("NAXIS", 0) == 2]
                for k, mp in enumerate(masks):
                    dq = np.asarray(exts[k].data).astype(np.uint16)
                    bad = fits.getdata(run.abs(mp)) == 0
                    assert (((dq & CR_BIT) != 0) == bad).all()
                    out[(root, k)] = dq.copy()
        return out
    before = dq_state()
    _run(run, [(CosmicRaysStep, {"snr": "5.5 3.5", "scale": "2.0 1.5", "corr": True})])
    after = dq_state()
    assert all((before[k] == after[k]).all() for k in before)
    assert len(run.get("crclean")) == 4


def test_weight_map_levels(run):
    wb = validation.weight_boxes(run.outdir / "final_drz_wht.fits", run.outdir / "work")
    # 4 exposures x 10 s; WF pixels cover (0.0455/0.0996)^2 of their area on the PC grid
    assert 30 < wb["PC1"]["median"] <= 40.5
    for wf in ("WF2", "WF3", "WF4"):
        assert wb[wf]["median"] == pytest.approx(40 * (0.0455 / 0.0996) ** 2, rel=0.03)
        assert wb[wf]["std"] / wb[wf]["median"] < 0.2


def test_photometry_on_final_image(run, sim):
    ph = validation.star_photometry(run.outdir / "final_drz_sci.fits", sim, min_flux=500, iso_frac=0.1,
                                    edge_px=30)
    assert ph["n"] >= 20
    assert 0.98 < ph["median_ratio"] < 1.02, ph


def test_banded_final_matches_single_pass(run):
    """Drizzling the output in row bands (bounded memory) gives the same image."""
    kw = dict(TUTORIAL[-1][1], root="banded", band_mb=8)
    run.step_name = "drizzle_final"
    DrizzleFinalStep().run(run, DrizzleFinalStep.Params(**kw))
    banded = run.get("final")
    assert banded["bands"] >= 2
    for k in ("sci", "wht", "ctx"):
        a = fits.getdata(run.outdir / f"final_drz_{k}.fits")
        b = fits.getdata(run.abs(banded[k]))
        if k == "ctx":
            assert (a == b).all()
        else:
            np.testing.assert_allclose(b, a, rtol=2e-6, atol=1e-4)
    assert fits.getval(run.abs(banded["sci"]), "NDRIZIM") == 16


def test_failed_banded_final_leaves_no_partial_products(run, monkeypatch):
    """A final drizzle that fails after its first band was written leaves
    neither products nor temporary files behind (the earlier products stay)."""
    from drizzleflow.steps.drizzle.core import Drizzle
    real, calls = Drizzle.iter_finished, []

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kw)

    monkeypatch.setattr(Drizzle, "iter_finished", failing)
    before = sorted(p.name for p in run.outdir.iterdir())
    kw = dict(TUTORIAL[-1][1], root="broken", band_mb=8)
    run.step_name = "drizzle_final"
    with pytest.raises(RuntimeError, match="disk full"):
        DrizzleFinalStep().run(run, DrizzleFinalStep.Params(**kw))
    assert len(calls) == 2
    assert sorted(p.name for p in run.outdir.iterdir()) == before


def test_banded_final_from_spill_equals_rereading_the_exposures(run, monkeypatch):
    """Later bands drizzle what the first band spilled to disk: the products are
    the bytes that re-reading every exposure per band gives, and the spill
    directory is gone afterwards (no inputs kept: they would serve the second run)."""
    from drizzleflow.steps.chain import drizzle_final
    monkeypatch.setattr(run, "products", dict(run.products))   # later tests use the fixture's "final"
    run.step_name = "drizzle_final"
    kw = dict(TUTORIAL[-1][1], band_mb=8, keep_inputs=False)
    DrizzleFinalStep().run(run, DrizzleFinalStep.Params(**kw, root="spilled"))
    spilled = run.get("final")
    made = []

    def no_spill(directory, wanted, writer=None):
        made.append(len(wanted))
        import shutil
        shutil.rmtree(directory)
        return None

    monkeypatch.setattr(drizzle_final, "ChipSpill", no_spill)
    DrizzleFinalStep().run(run, DrizzleFinalStep.Params(**kw, root="reread"))
    reread = run.get("final")
    assert made and made[0] > 0                       # later bands did need chips
    assert spilled["bands"] == reread["bands"] >= 2
    for k in ("sci", "wht", "ctx"):
        assert fits.getdata(run.abs(spilled[k])).tobytes() == fits.getdata(run.abs(reread[k])).tobytes()
    assert not [p for p in run.outdir.iterdir() if p.name.startswith(".drizzle_final_bands")]


def _final(run, **kw):
    run.step_name = "drizzle_final"
    DrizzleFinalStep().run(run, DrizzleFinalStep.Params(**dict(TUTORIAL[-1][1], band_mb=8, **kw)))
    return run.get("final")


def _no_exposures(monkeypatch, geometry_too=True):
    """Make reading an exposure (and, with ``geometry_too``, its headers' geometry)
    in the final drizzle an error; returns the calls tried."""
    from drizzleflow.steps.chain import chip_feed, geometry
    tried = []

    def refuse(*args, **kw):
        tried.append(1)
        raise AssertionError("an exposure was read")
    monkeypatch.setattr(chip_feed, "load_exposure", refuse)
    if geometry_too:
        monkeypatch.setattr(geometry, "chip_geometry", refuse)
    return tried


def _same_products(a, b):
    for k in ("sci", "wht", "ctx"):
        assert fits.getdata(a[k]).tobytes() == fits.getdata(b[k]).tobytes(), k


def test_kept_inputs_serve_a_pixfrac_rerun_with_the_same_bytes(run, monkeypatch):
    """A run keeps its prepared chips; a rerun with another pixfrac reads them
    instead of any exposure and writes the bytes a run without them writes."""
    from drizzleflow.steps.chain.final_inputs import KEPT_DIR
    monkeypatch.setattr(run, "products", dict(run.products))
    _final(run, pixfrac=1.0, root="keep1")
    kept = run.outdir.joinpath(*KEPT_DIR)
    assert (kept / "meta.json").is_file() and len(list(kept.glob("*.data"))) == 16
    with monkeypatch.context() as m:
        tried = _no_exposures(m)
        served = _final(run, pixfrac=0.6, root="keep2", kernel="turbo", wt_scl="expsq")
        assert not tried
    fresh = _final(run, pixfrac=0.6, root="keep3", kernel="turbo", wt_scl="expsq", keep_inputs=False)
    assert not kept.exists()          # a run that keeps nothing leaves nothing stale
    _same_products({k: run.abs(v) for k, v in served.items() if k in ("sci", "wht", "ctx")},
                   {k: run.abs(v) for k, v in fresh.items() if k in ("sci", "wht", "ctx")})
    a, b = fits.getheader(run.abs(served["sci"])), fits.getheader(run.abs(fresh["sci"]))
    for key in ("CRVAL1", "CRPIX2", "CD1_2", "PHOTFLAM", "PHOTPLAM", "EXPTIME", "D001DATA", "D016WKEY",
                "D016SKY", "D016ISCL", "D016PIXF", "D016KERN"):
        assert a[key] == b[key], key
    assert served["grid"] == fresh["grid"]


def test_kept_pixels_serve_another_grid(run, monkeypatch):
    """Another scale: the chips' pixels come from the kept inputs (no exposure
    is read), only their maps are made afresh; same bytes as without them."""
    from drizzleflow.steps.chain.final_inputs import KEPT_DIR
    monkeypatch.setattr(run, "products", dict(run.products))
    first = _final(run, root="grid1")["grid"]
    assert run.outdir.joinpath(*KEPT_DIR, "meta.json").is_file()
    with monkeypatch.context() as m:
        tried = _no_exposures(m, geometry_too=False)
        served = _final(run, root="grid2", scale=0.08, pixfrac=0.7)
        assert not tried
    fresh = _final(run, root="grid3", scale=0.08, pixfrac=0.7, keep_inputs=False)
    assert served["grid"] == fresh["grid"] and served["grid"]["shape"] != first["shape"]
    _same_products({k: run.abs(v) for k, v in served.items() if k in ("sci", "wht", "ctx")},
                   {k: run.abs(v) for k, v in fresh.items() if k in ("sci", "wht", "ctx")})


@pytest.mark.parametrize("change", ["crmask", "bits", "lost file", "damaged meta"])
def test_kept_inputs_are_not_used_once_an_input_changes(run, monkeypatch, change):
    """Another cosmic-ray mask file or other DQ bits (or a kept file gone or
    damaged): the kept chips no longer apply, the exposures are read again and
    kept anew."""
    import os
    from drizzleflow.steps.chain.final_inputs import KEPT_DIR
    monkeypatch.setattr(run, "products", dict(run.products))
    _final(run, root="keepA")
    kw = {}
    if change == "crmask":
        path = run.abs(next(iter(run.get("crmasks").values()))[0])
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    elif change == "bits":
        kw["bits"] = "8"
    elif change == "lost file":
        run.outdir.joinpath(*KEPT_DIR, "3.data").unlink()
    else:
        run.outdir.joinpath(*KEPT_DIR, "meta.json").write_text('{"format": 2, "data_key": ')
    with monkeypatch.context() as m:
        tried = _no_exposures(m, geometry_too=False)
        with pytest.raises(AssertionError, match="an exposure was read"):
            _final(run, root="keepB", **kw)
        assert tried
    _final(run, root="keepB", **kw)
    assert (run.outdir.joinpath(*KEPT_DIR) / "meta.json").is_file()


def test_banded_separate_drizzle_matches_one_pass(run):
    """The singles drizzled in bands of rows (the default on the full M2 grid)
    equal the one-pass singles to the last float32 bit or so (turbo kernel;
    the regions start on the core's tile grid); two exposures at a time in the
    step's threads write the same bytes as one per work item of an executor."""
    from drizzleflow.steps.chain.banding import bands
    from drizzleflow.steps.chain.drizzle_separate import AT_ONCE
    singles = run.get("singles")
    grid = run.get("sep_grid")
    saved = {s["root"]: {k: fits.getdata(run.abs(s[k])).copy() for k in ("sci", "wht")} for s in singles}
    raw = {s["root"]: {k: run.abs(s[k]).read_bytes() for k in ("sci", "wht")} for s in singles}
    kw = dict(TUTORIAL[2][1], band_mb=8)
    run.step_name = "drizzle_separate"
    try:
        DrizzleSeparateStep().run(run, DrizzleSeparateStep.Params(**kw))
        ny, nx = fits.getdata(run.abs(singles[0]["sci"])).shape
        assert len(bands(ny, nx, 8 // AT_ONCE, bytes_per_pixel=8)) >= 2
        two_at_once = {s["root"]: [run.abs(s[k]).read_bytes() for k in ("sci", "wht")] for s in run.get("singles")}
        # the threads executor drizzles one exposure per work item, in its own pool:
        # the same bands, so the same bytes (and each single went to its own files)
        from drizzleflow.engine.executors import ThreadExecutor
        with ThreadExecutor(2) as ex:
            run.executor = ex
            DrizzleSeparateStep().run(run, DrizzleSeparateStep.Params(**kw))
        assert {s["root"]: [run.abs(s[k]).read_bytes() for k in ("sci", "wht")]
                for s in run.get("singles")} == two_at_once
        for s in run.get("singles"):
            for k in ("sci", "wht"):
                b = fits.getdata(run.abs(s[k]))
                a = saved[s["root"]][k]
                np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
                assert (a != b).mean() < 1e-3
    finally:   # later tests use the fixture's singles
        run.executor = None
        for s in singles:
            for k in ("sci", "wht"):
                run.abs(s[k]).write_bytes(raw[s["root"]][k])
        run.put("singles", singles)
        run.put("sep_grid", grid)


def test_median_strip_rows_do_not_change_the_median(run):
    """Strips are combined two at a time and written in order as they finish:
    the median does not depend on their height."""
    med = run.get("median")
    path = run.abs(med["path"])
    raw = path.read_bytes()
    ref = fits.getdata(path).copy()
    run.step_name = "median"
    try:
        for rows in (8, 13):
            MedianStep().run(run, MedianStep.Params(**TUTORIAL[3][1], rows=rows))
            assert fits.getdata(run.abs(run.get("median")["path"])).tobytes() == ref.tobytes(), rows
    finally:
        path.write_bytes(raw)
        run.put("median", med)


# ------------------------------------------------- undersampled stars on bad columns
def _star_pixels(work, truth, flux_range=(2500, 40000), edge=25, iso_px=4):
    """Bright unsaturated stars that every exposure sees on the same WF chip:
    ``{star: (chip, [(x, y) per exposure])}`` (0-based, rounded true positions)."""
    from astropy.table import Table
    from astropy.wcs import WCS
    stars = Table.read(truth / "stars.ecsv")
    ra, dec, flux = (np.asarray(stars[k], dtype=float) for k in ("ra", "dec", "flux_e"))
    per_exp = []
    for f in sorted(work.glob("*_c0m.fits")):
        with fits.open(f) as h:
            per_exp.append({e.header["EXTVER"]: (*WCS(e.header, h).all_world2pix(ra, dec, 0, quiet=True),
                                                 e.data.shape)
                            for e in h[1:] if e.header.get("EXTNAME") == "SCI"})
    out = {}
    for k in np.nonzero((flux > flux_range[0]) & (flux < flux_range[1]))[0]:
        chips = []
        for pos in per_exp:
            chips.append(next((c for c, (x, y, (ny, nx)) in pos.items()
                               if edge < x[k] < nx - 1 - edge and edge < y[k] < ny - 1 - edge), 0))
        c = chips[0]
        if c < 2 or any(ch != c for ch in chips):
            continue
        x, y = per_exp[0][c][0], per_exp[0][c][1]
        close = (np.hypot(x - x[k], y - y[k]) < iso_px) & (flux > 0.1 * flux[k])
        if close.sum() > 1:
            continue
        out[int(k)] = (c, [(int(round(p[c][0][k])), int(round(p[c][1][k]))) for p in per_exp])
    return out


@pytest.fixture(scope="module")
def bad_column_run(tmp_path_factory):
    """Six exposures (minmed's noise test is tighter with more images), each
    with DQ-flagged columns through the cores of a sixth of the bright WF stars
    (as the real WF2 column through a star of the M2 set did), and two-pixel
    cosmic rays of 1500 e- three pixels from every such star in exposure 1."""
    from drizzleflow.steps.ingest import Ingest
    from drizzleflow.steps.instruments.wfpc2 import open_exposure
    from drizzleflow.steps.simulate.m2 import simulate_m2
    sim = tmp_path_factory.mktemp("sim6")
    simulate_m2(sim, seed=1, size=256, nexp=6)
    out = tmp_path_factory.mktemp("out6")
    ctx = Context(outdir=out, inputs=sorted(sim.glob("*_c0m.fits")),
                  options={"uref": str(sim / "uref") + "/", "force": False})
    ctx.step_name = "ingest"
    Ingest().run(ctx, Ingest.Params(updatewcs=True))
    validation.align_to_truth(out, sim)
    work = out / "work"
    stars = _star_pixels(work, sim / "truth")
    files = sorted(work.glob("*_c0m.fits"))
    owner = {k: j % len(files) for j, k in enumerate(sorted(stars))}
    for i, f in enumerate(files):
        with fits.open(str(f).replace("_c0m", "_c1m"), mode="update") as h:
            dq = [e for e in h[1:] if e.header.get("NAXIS", 0) == 2]
            for k, (c, xy) in stars.items():
                if owner[k] == i:
                    dq[c - 1].data[:, xy[i][0]] |= 2
    gains = {c.extver: c.gain for c in open_exposure(files[1]).chips}
    crs = []
    with fits.open(files[1], mode="update") as h:
        for k, (c, xy) in stars.items():
            x, y = xy[1]
            for dy in (0, 1):
                h["SCI", c].data[y + dy, x + 3] += 1500.0 / gains[c]
                crs.append((c, x + 3, y + dy))
    _run(ctx, TUTORIAL[:-1])
    return ctx, sim, stars, crs


def test_undersampled_star_on_a_bad_column_is_not_flagged(bad_column_run):
    """A bad column through an undersampled star's core in one exposure leaves
    single-drizzle pixels half covered by the PSF wing beside it.  minmed must
    not take those as its minimum (the median would get a hole at the star's
    peak, flagged as a cosmic ray in the other exposures); cosmic rays right
    next to the stars are still found."""
    ctx, sim, stars, crs = bad_column_run
    assert len(stars) > 30

    def score():
        cores = validation.star_cores_flagged(ctx.outdir / "work", ctx.outdir / "chain" / "crmask", sim / "truth")
        root = sorted(ctx.get("crmasks"))[1]
        masks = {c: fits.getdata(ctx.outdir / "chain" / "crmask" / f"{root}_sci{c}_crmask.fits") == 0
                 for c in (2, 3, 4)}
        return cores, sum(bool(masks[c][y, x]) for c, x, y in crs)

    cores, found = score()
    assert cores["checked"] > 200
    assert cores["flagged"] == 0, cores
    assert found == len(crs)
    # the scenario is sharp: AstroDrizzle's minimum (over every unmasked single) flags cores
    _run(ctx, [(cls, dict(kw, min_coverage=0.0) if cls is MedianStep else kw)
               for cls, kw in TUTORIAL[:-1] if cls in (MedianStep, BlotStep, CosmicRaysStep)])
    cores0, found0 = score()
    assert cores0["flagged"] >= 1, cores0
    assert found0 == len(crs)


def test_final_without_context_image(run):
    """``context: false`` (AstroDrizzle ``context=False``): the same sci and wht,
    no ctx file, no context name in the provenance; the importer maps the keyword."""
    kw = dict(TUTORIAL[-1][1], root="noctx", context=False)
    run.step_name = "drizzle_final"
    DrizzleFinalStep().run(run, DrizzleFinalStep.Params(**kw))
    prod = run.get("final")
    assert prod["ctx"] is None and not (run.outdir / "noctx_drz_ctx.fits").exists()
    for k in ("sci", "wht"):
        assert (fits.getdata(run.outdir / f"final_drz_{k}.fits") == fits.getdata(run.abs(prod[k]))).all()
    hdr = fits.getheader(run.abs(prod["sci"]))
    assert hdr["D001OUCO"] == "" and hdr["D001OUWE"] == "noctx_drz_wht.fits"
    from drizzleflow.engine.adimport import import_astrodrizzle
    text, _ = import_astrodrizzle("AstroDrizzle('*c0m.fits', context=False)")
    assert "context: false" in text

"""Write simulated exposures in the WFPC2 archive formats.

``c0m``: primary header + 4 ``SCI`` float32 extensions in DN;
``c1m``: primary + 4 int16 DQ extensions, also named ``SCI`` (what
DrizzlePac expects; it reads them by index).  Both carry the OLD-format WCS:
linear CD matrix only, no SIP, no D2IM.  ``c0f``/``c1f`` (waivered FITS):
one 3-D primary array + an ASCII table with one row of group keywords per
chip, as the archive once served WFPC2 data.

Every header says the data are simulated (``SIMULATE = T``,
``ORIGIN = 'drizzleflow simulator'``); ``DATE`` is the simulated
observation date, so files are byte-identical for a given seed.
"""
from __future__ import annotations

import numpy as np
from astropy.io import fits

from drizzleflow.engine.atomic import atomic_path

__all__ = ["primary_header", "group_header", "write_mef", "write_waivered"]

ORIGIN = "drizzleflow simulator"


def primary_header(info: dict, filetype: str, filename: str) -> fits.Header:
    """Primary keywords of a WFPC2 calibrated file (``info`` from the simulator)."""
    h = fits.Header()
    add = h.append
    add(("ORIGIN", ORIGIN, "FITS file originator"))
    add(("SIMULATE", True, "simulated data, not an HST observation"))
    add(("SIMSEED", info["seed"], "simulator random seed"))
    add(("DATE", info["date_obs"], "file date (simulated: the observation date)"))
    add(("FILENAME", filename, "name of file"))
    add(("FILETYPE", filetype, "type of data found in data file"))
    add(("TELESCOP", "HST", "telescope used to acquire data"))
    add(("INSTRUME", "WFPC2", "identifier for instrument used to acquire data"))
    add(("EQUINOX", 2000.0, "equinox of celestial coord. system"))
    add(("ROOTNAME", info["root"], "rootname of the observation set"))
    add(("IMAGETYP", "EXT", "DARK/BIAS/IntFLAT/ExtFLAT/EXT"))
    add(("PRIMARY", "SINGLE", "single, parallel, coordinated"))
    add(("TARGNAME", "MESSIER-002", "proposer's target name"))
    add(("RA_TARG", info["ra_targ"], "right ascension of the target (deg) (J2000)"))
    add(("DEC_TARG", info["dec_targ"], "declination of the target (deg) (J2000)"))
    add(("PROPOSID", 11100, "PEP proposal identifier"))
    add(("PEP_EXPO", info["linenum"], "PEP exposure identifier including sequence"))
    add(("LINENUM", info["linenum"], "PEP proposal line number"))
    add(("SEQLINE", " ", "PEP line number of defined sequence"))
    add(("PA_V3", info["pa_v3"], "position angle of V3-axis of HST (deg)"))
    add(("RA_V1", info["ra_v1"], "right ascension of v1 axis of st (deg) (J2000)"))
    add(("DEC_V1", info["dec_v1"], "declination of v1 axis of st (deg) (J2000)"))
    add(("POSTARG1", info["postarg"][0], "POS TARG in axis 1 (arcsec)"))
    add(("POSTARG2", info["postarg"][1], "POS TARG in axis 2 (arcsec)"))
    add(("MODE", "FULL", "instr. mode: FULL (full res.), AREA (binned)"))
    add(("SERIALS", "OFF", "serial clocks: ON, OFF"))
    add(("IMGTYPE", "EXT", "image type"))
    add(("FILTNAM1", "F814W", "first filter name"))
    add(("FILTNAM2", "", "second filter name"))
    add(("FILTER1", 51, "first filter number (0-48)"))
    add(("FILTER2", 0, "second filter number (0-48)"))
    add(("FILTROT", 0.0, "partial filter rotation angle (degrees)"))
    add(("LRFWAVE", 0.0, "linear ramp filter wavelength"))
    add(("UCH1CJTM", -88.0, "TEC cold junction #1 temperature (Celsius)"))
    add(("SHUTTER", "A", "Shutter in place at beginning of exposure"))
    add(("ATODGAIN", 7.0, "Analog to Digital Gain (Electrons/DN)"))
    add(("MASKCORR", "COMPLETE", "Do mask correction"))
    add(("ATODCORR", "COMPLETE", "Do A-to-D correction"))
    add(("BLEVCORR", "COMPLETE", "Do bias level correction"))
    add(("BIASCORR", "COMPLETE", "Do bias correction"))
    add(("DARKCORR", "COMPLETE", "Do dark correction"))
    add(("FLATCORR", "COMPLETE", "Do flat field correction"))
    add(("SHADCORR", "OMIT", "Do shaded shutter correction"))
    add(("DOSATMAP", "OMIT", "Output saturated pixel map"))
    add(("DOPHOTOM", "COMPLETE", "Fill photometry keywords"))
    add(("DOHISTOS", "OMIT", "Make histograms"))
    add(("OUTDTYPE", "REAL", "Output image datatype: REAL, LONG, SHORT"))
    add(("IDCTAB", info["idctab"], "image distortion correction table"))
    add(("OFFTAB", info["offtab"], "offsets table"))
    add(("DGEOFILE", info["dgeofile"], "Distortion correction image"))
    add(("DARKTIME", info["exptime"], "Dark time (seconds)"))
    add(("EXPTIME", info["exptime"], "exposure duration (seconds)--calculated"))
    add(("UEXPODUR", int(round(info["exptime"])), "commanded duration of exposure (seconds)"))
    add(("EXPSTART", info["expstart"], "exposure start time (Modified Julian Date)"))
    add(("EXPEND", info["expend"], "exposure end time (Modified Julian Date)"))
    add(("DATE-OBS", info["date_obs"], "UT date of start of observation (yyyy-mm-dd)"))
    add(("TIME-OBS", info["time_obs"], "UT time of start of observation (hh:mm:ss)"))
    add(("EXPFLAG", "NORMAL", "Exposure interruption indicator"))
    add(("FGSLOCK", "FINE", "commanded FGS lock (FINE,COARSE,GYROS,UNKNOWN)"))
    add(("VAFACTOR", 1.0, "velocity aberration scale factor (none)"))
    add(("PHOTZPT", -21.10, "Magnitude zero point"))
    return h


def group_header(g: dict) -> fits.Header:
    """Per-chip keywords (the GEIS group parameters): old linear WCS, chip, photometry."""
    h = fits.Header()
    add = h.append
    add(("CRPIX1", g["crpix"][0], "x-coordinate of reference pixel"))
    add(("CRPIX2", g["crpix"][1], "y-coordinate of reference pixel"))
    add(("CRVAL1", g["crval"][0], "first axis value at reference pixel"))
    add(("CRVAL2", g["crval"][1], "second axis value at reference pixel"))
    add(("CTYPE1", "RA---TAN", "the coordinate type for the first axis"))
    add(("CTYPE2", "DEC--TAN", "the coordinate type for the second axis"))
    add(("CD1_1", g["cd"][0][0], "partial of first axis coordinate w.r.t. x"))
    add(("CD1_2", g["cd"][0][1], "partial of first axis coordinate w.r.t. y"))
    add(("CD2_1", g["cd"][1][0], "partial of second axis coordinate w.r.t. x"))
    add(("CD2_2", g["cd"][1][1], "partial of second axis coordinate w.r.t. y"))
    add(("DATAMIN", g["datamin"], "minimum data value"))
    add(("DATAMAX", g["datamax"], "maximum data value"))
    add(("MIR_REVR", True, "is the image mirror reversed?"))
    add(("ORIENTAT", g["orientat"], "orientation of the image (deg)"))
    add(("FILLCNT", 0, "number of segments containing fill"))
    add(("ERRCNT", 0, "number of segments containing errors"))
    add(("FPKTTIME", g["expstart"], "the time of the first packet"))
    add(("LPKTTIME", g["expend"], "the time of the last packet"))
    add(("DETECTOR", g["detector"], "CCD number: PC 1, WF 2-4"))
    add(("PHOTMODE", g["photmode"], "Photometry mode"))
    add(("PHOTFLAM", g["photflam"], "inverse sensitivity (erg/s/cm2/A per DN/s)"))
    add(("PHOTZPT", -21.10, "Magnitude zero point"))
    add(("PHOTPLAM", 8001.6, "Pivot wavelength (Angstroms)"))
    add(("PHOTBW", 652.4, "RMS bandwidth of the filter (Angstroms)"))
    add(("BUNIT", g["bunit"], "brightness units"))
    add(("EXPNAME", g["root"], "9 character exposure identifier"))
    return h


def _ext_header(g, extname, extver):
    h = group_header(g)
    h.insert(0, ("EXTNAME", extname, "extension name"))
    h.insert(1, ("EXTVER", extver, "extension version number"))
    h.append(("SIMULATE", True, "simulated data (drizzleflow)"))
    return h


def write_mef(path, info, groups, arrays, *, dq=False):
    """A ``c0m`` (float32 DN) or ``c1m`` (int16 DQ, EXTNAME 'SCI') file."""
    filetype = "SDQ" if dq else "SCI"
    ph = primary_header(info, filetype, path.name)
    ph.insert(0, ("NEXTEND", len(arrays), "number of standard extensions"))
    hdus = [fits.PrimaryHDU(header=ph)]
    for k, (g, arr) in enumerate(zip(groups, arrays), start=1):
        g = dict(g, bunit="UNITLESS" if dq else "COUNTS")
        hdus.append(fits.ImageHDU(arr.astype(np.int16 if dq else np.float32), header=_ext_header(g, "SCI", k)))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


# Group keywords become table columns in waivered files: (format, is_double)
_TABLE_COLUMNS = [
    ("CRPIX1", "D25.16"), ("CRPIX2", "D25.16"), ("CRVAL1", "D25.16"), ("CRVAL2", "D25.16"),
    ("CTYPE1", "A8"), ("CTYPE2", "A8"), ("CD1_1", "D25.16"), ("CD1_2", "D25.16"),
    ("CD2_1", "D25.16"), ("CD2_2", "D25.16"), ("DATAMIN", "E15.7"), ("DATAMAX", "E15.7"),
    ("MIR_REVR", "A1"), ("ORIENTAT", "E15.7"), ("FILLCNT", "I11"), ("ERRCNT", "I11"),
    ("FPKTTIME", "D25.16"), ("LPKTTIME", "D25.16"), ("DETECTOR", "I11"), ("PHOTMODE", "A48"),
    ("PHOTFLAM", "E15.7"), ("PHOTZPT", "E15.7"), ("PHOTPLAM", "E15.7"), ("PHOTBW", "E15.7"),
    ("BUNIT", "A18"), ("EXPNAME", "A9"),
]


def write_waivered(path, info, groups, arrays, *, dq=False):
    """A waivered ``c0f``/``c1f`` file: 3-D primary array + ASCII group table."""
    filetype = "SDQ" if dq else "SCI"
    cube = np.stack([a.astype(np.int16 if dq else np.float32) for a in arrays])
    ph = primary_header(info, filetype, path.name)
    # the primary also carries group 1's keywords, as archive waivered files do
    first = group_header(dict(groups[0], bunit="UNITLESS" if dq else "COUNTS"))
    for card in first.cards:
        if card.keyword not in ph:
            ph.append(card)
    cols = []
    for name, fmt in _TABLE_COLUMNS:
        vals = []
        for g in groups:
            h = group_header(dict(g, bunit="UNITLESS" if dq else "COUNTS"))
            v = h[name]
            if name == "MIR_REVR":
                v = "T" if v else "F"
            vals.append(v)
        unit = "LOGICAL-" if name == "MIR_REVR" else ""
        if fmt.startswith("A"):
            arr = np.array([str(v) for v in vals])
        elif fmt.startswith("I"):
            arr = np.array(vals, dtype=np.int32)
        else:
            arr = np.array(vals, dtype=np.float64)
        cols.append(fits.Column(name=name, format=fmt, array=arr, unit=unit or None))
    table = fits.TableHDU.from_columns(cols)
    for name, _ in _TABLE_COLUMNS:
        table.header[name] = group_header(dict(groups[0], bunit="")).comments[name]
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(cube, header=ph), table]).writeto(tmp)

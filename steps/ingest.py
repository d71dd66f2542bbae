"""The ``ingest`` step: check every archive input, then copy or convert each
into working copies ``<outdir>/work/<root>_c0m.fits`` + ``<root>_c1m.fits``.

Archive files are only read.  Every pair is checked before anything is
written, and the copies are built in a staging folder and moved into place
only when all of them succeeded, so a bad input or a missing reference file
leaves no partial output.  Optional ``updatewcs`` converts the copies to the
distortion-aware format (SIP, D2IMARR, WCSCORR) as the tutorial's first run does.
"""
from __future__ import annotations

import importlib
import os
import shutil
import threading
from pathlib import Path
from typing import Optional, Union

import numpy as np
from pydantic import Field, field_validator

from drizzleflow.engine.atomic import temp_dir
from drizzleflow.engine.errors import InputFileError, OutputError, StepError
from drizzleflow.engine.step import Params, Step

from .chain.common import core_threads
from .instruments.bits import bits_mask
from .instruments.wfpc2.constants import NAN_BIT
from .instruments.wfpc2.files import as_uint16, check_inputs, read_fits
from .instruments.wfpc2.reader import dq_extensions, sci_extensions
from .instruments.wfpc2.updatewcs import resolve_reference, update_wcs
from .instruments.wfpc2.waivered import waivered_hdul_to_mef
from .instruments.wfpc2.workcopy import WORK_MARK

__all__ = ["Ingest", "IngestParams", "ingest_pairs"]


class IngestParams(Params):
    """Parameters of the ingest step."""

    updatewcs: bool = Field(False, description="convert the working copies to the new WCS format "
                                               "(SIP from IDCTAB, OFFTAB offsets, D2IMARR, WCSCORR)")
    uref: Optional[str] = Field(None, description="directory that uref$ names resolve to "
                                                  "(default: the recipe's uref option, then $uref)")
    resetbits: Union[int, str, None] = Field(4096, description="DQ bits cleared in the working DQ copies "
                                                               "(AstroDrizzle resetbits; 0/None = keep all)")
    workdir: str = Field("work", description="folder (inside the output directory) of the working copies")

    @field_validator("resetbits")
    @classmethod
    def _bits(cls, v):
        bits_mask(v)  # raises ValueError with a readable message
        return v


def _prepare(pair, bits, do_wcs, uref, stage):
    """Build the working copies of one pair inside ``stage``; returns (sci, dq) paths."""
    # read_fits loads every HDU into memory (memmap=False), so the HDUList stays
    # valid after the file is closed and is edited in place: no per-card copy
    with read_fits(pair.sci) as src:
        sci = waivered_hdul_to_mef(src, pair.sci) if pair.kind == "waivered" else src
    with read_fits(pair.dq) as src:
        dq = waivered_hdul_to_mef(src, pair.dq) if pair.kind == "waivered" else src
    for h, d in zip(sci_extensions(sci), dq_extensions(dq)):
        data = np.array(h.data, dtype=np.float32)
        flags = as_uint16(d.data)
        if bits:
            flags &= np.uint16(~bits & 0xFFFF)
        bad = ~np.isfinite(data)
        if bad.any():
            data[bad] = 0.0
            flags[bad] |= np.uint16(NAN_BIT)
        h.data = data
        d.data = flags.view(np.int16) if d.data.dtype.kind == "i" and d.data.dtype.itemsize == 2 \
            else flags.astype(d.data.dtype.newbyteorder("="))
    for hdul in (sci, dq):
        hdul[0].header[WORK_MARK] = (True, "drizzleflow working copy")
        hdul[0].header["DFSOURCE"] = (Path(pair.sci if hdul is sci else pair.dq).name[:60],
                                      "archive file this copy was made from")
    sci_out = stage / f"{pair.root}_c0m.fits"
    dq_out = stage / f"{pair.root}_c1m.fits"
    if do_wcs:
        update_wcs(sci, uref=uref, image=pair.sci, d2im_path=stage / f"{pair.root}_d2im.fits")
    sci.writeto(sci_out)
    dq.writeto(dq_out)
    return sci_out, dq_out


def _prepare_all(pairs, bits, do_wcs, uref, stage, while_working=None):
    """The working copies of every pair (an iterator of (sci, dq) paths, in pair order).
    ``while_working`` (a callable) is called once the worker processes have the
    pairs, or before the first pair where there are none; if it raises, the pairs
    not started are dropped and the running ones finished before the error goes on.

    Making one is mostly astropy header work (parsing, updatewcs, verifying on
    write), which holds the GIL: two threads gained nothing.  Where ``fork``
    exists, worker processes share the pairs instead; they inherit the imported
    modules, so they start in milliseconds.  Errors arrive as themselves (see
    engine.errors).  Only a process with no other thread forks (a thread
    holding a lock at the fork would leave the child stuck on it): under a
    Dask client or inside a caller's threads the pairs are done here, in turn.
    As many processes as the drizzle core would use threads (``core_threads``:
    ``DRIZZLEFLOW_THREADS=1``, as a sweep's parallel points have, keeps it here)."""
    import multiprocessing   # here, not with the module: a rerun that restores ingest from the cache
    from concurrent.futures import ProcessPoolExecutor   # never needs them (~6 ms of imports)
    procs = min(core_threads(), len(pairs))
    if procs < 2 or threading.active_count() > 1 or "fork" not in multiprocessing.get_all_start_methods():
        if while_working is not None:
            while_working()
        yield from (_prepare(p, bits, do_wcs, uref, stage) for p in pairs)
        return
    pool = ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("fork"))
    try:
        # every worker is forked at the first submit, before the pool starts its own thread
        futures = [pool.submit(_prepare, p, bits, do_wcs, uref, stage) for p in pairs]
        if while_working is not None:
            while_working()
        for f in futures:
            yield f.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def ingest_pairs(inputs, outdir, *, workdir="work", updatewcs=False, uref=None, resetbits=4096, log=None,
                 while_working=None):
    """Check and copy/convert archive inputs; the function behind the step.
    ``while_working``: called while the copies are made (see ``_prepare_all``);
    nothing is moved into the working folder before it returns.

    Returns a list of dicts ``{"root", "sci", "dq", "source", "source_dq", "nchips"}``
    with absolute paths.
    """
    if not inputs:
        raise StepError("ingest", "no input files given")
    pairs = check_inputs(inputs)
    bits = bits_mask(resetbits) or 0
    outdir = Path(outdir)
    work = outdir / workdir
    for pair in pairs:
        for p in (pair.sci, pair.dq):
            if p.resolve().parent == work.resolve():
                raise InputFileError(p, f"is inside the working folder {work}; give the archive files as inputs")
        if updatewcs:
            with read_fits(pair.sci, load_data=False) as h:
                ph = h[0].header
                for kw in ("IDCTAB", "OFFTAB", "DGEOFILE"):
                    resolve_reference(ph.get(kw, ""), kw, uref, pair.sci)
    if updatewcs:
        # updatewcs builds WCS objects: imported here, before the workers are forked, they
        # inherit it instead of each importing it (~0.1 s each); later steps need it anyway
        importlib.import_module("astropy.wcs")
    existed = work.exists()
    try:
        work.mkdir(parents=True, exist_ok=True)
        stage = temp_dir(outdir, "ingest")
    except OSError as exc:
        raise OutputError(f"{work}: cannot create the working folder ({exc.strerror or exc})") from None
    try:
        made = []
        for pair, paths in zip(pairs, _prepare_all(pairs, bits, updatewcs, uref, stage, while_working)):
            made.append((pair, *paths))
            if log:
                log.info("ingest: %s -> %s/%s_c0m.fits%s", pair.sci.name, workdir, pair.root,
                         " (updatewcs)" if updatewcs else "")
        result = []
        for pair, s, d in made:
            for f in [s, d] + sorted(stage.glob(f"{pair.root}_d2im.fits")):
                os.replace(f, work / f.name)
            result.append({"root": pair.root, "sci": str(work / s.name), "dq": str(work / d.name),
                           "source": str(pair.sci), "source_dq": str(pair.dq), "nchips": pair.nchips})
        return result
    except OSError as exc:
        raise OutputError(f"{work}: cannot write working copies ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not existed and work.is_dir() and not any(work.iterdir()):
            work.rmdir()


class Ingest(Step):
    """Check archive WFPC2 inputs and make working copies (optionally with updatewcs)."""

    name = "ingest"
    Params = IngestParams
    reads = ()
    writes = ("exposures",)
    aliases = {"updatewcs": "updatewcs", "resetbits": "resetbits", "uref": "uref"}
    version = "1"
    preflight_in_run = True   # the later steps are checked while the worker processes convert

    def run(self, context, params):
        uref = params.uref or context.options.get("uref")
        made = ingest_pairs(context.inputs, context.outdir, workdir=params.workdir, updatewcs=params.updatewcs,
                            uref=uref, resetbits=params.resetbits, log=context.log,
                            while_working=context.preflight)
        context.put("exposures", [{**m, "sci": context.rel(m["sci"]), "dq": context.rel(m["dq"]),
                                   "source": context.rel(m["source"]), "source_dq": context.rel(m["source_dq"])}
                                  for m in made])

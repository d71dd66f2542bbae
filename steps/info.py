"""``drizzleflow info FILES``: what ``catfits`` and ``hselect`` showed in the
tutorial — the extensions of each file (name, type, version, dimensions,
BITPIX) and chosen keywords per chip (``-k linenum,date-obs,time-obs,crval1,crval2``)."""
from __future__ import annotations

import sys
from pathlib import Path

from astropy.io import fits

from drizzleflow.engine.errors import InputFileError

__all__ = ["register", "catfits_lines", "hselect_lines", "run_info"]


def _dims(hdu):
    h = hdu.header
    if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
        return f"{h.get('TFIELDS', 0)}Fx{h.get('NAXIS2', 0)}R"
    n = h.get("NAXIS", 0)
    if h.get("XTENSION") == "HDRLET":
        return f"{h.get('NAXIS1', 0)}B"
    return "x".join(str(h.get(f"NAXIS{i}", 0)) for i in range(1, n + 1)) if n else ""


def _open(path):
    from drizzleflow.steps.instruments.wfpc2.files import read_fits
    return read_fits(path, load_data=False)


def catfits_lines(path) -> list[str]:
    """One line per HDU: number, type, EXTNAME, EXTVER, dimensions, BITPIX, OBJECT."""
    path = Path(path)
    lines = [f"{'EXT#':<5} {'FITSNAME':<17} {'FILENAME':<22} {'EXTVE':<6} {'DIMENS':<11} {'BITPI':<6} OBJECT"]
    with _open(path) as hdul:
        for i, hdu in enumerate(hdul):
            h = hdu.header
            if i == 0:
                kind, name = path.name.replace(".fits", ""), str(h.get("FILENAME", ""))
                lines.append(f"{0:<5} {kind:<17} {name:<22} {'':<6} {_dims(hdu):<11} {h.get('BITPIX', ''):<6} "
                             f"{h.get('OBJECT', h.get('TARGNAME', ''))}")
                continue
            xt = str(h.get("XTENSION", "")).strip()
            obj = h.get("HDRNAME", "") if xt == "HDRLET" else h.get("OBJECT", "")
            lines.append(f"{i:<5} {xt:<17} {str(h.get('EXTNAME', '')):<22} {str(h.get('EXTVER', '')):<6} "
                         f"{_dims(hdu):<11} {h.get('BITPIX', ''):<6} {obj}")
    return lines


def hselect_lines(path, keywords, extname="SCI") -> list[str]:
    """``file[ext] value value ...`` per chip; primary-header keywords are used
    when a chip header does not have them (as hselect with inheritance)."""
    path = Path(path)
    out = []
    with _open(path) as hdul:
        ph = hdul[0].header
        if ph.get("NAXIS", 0) == 3 and len(hdul) > 1 and isinstance(hdul[1], (fits.TableHDU, fits.BinTableHDU)):
            # waivered file: one line per group, group keywords from the table row
            table = hdul[1].data
            names = {n.upper(): n for n in table.names}
            for g in range(len(table)):
                vals = []
                for k in keywords:
                    k = k.strip().upper()
                    v = table[names[k]][g] if k in names else ph.get(k, "INDEF")
                    v = v.item() if hasattr(v, "item") else v
                    vals.append(repr(v) if isinstance(v, float) else str(v).strip())
                out.append(f"{path.name}[{g + 1}] " + " ".join(vals))
            return out
        chips = [(i, h) for i, h in enumerate(hdul) if str(h.header.get("EXTNAME", "")).upper() == extname]
        if not chips:
            chips = [(0, hdul[0])]
        for i, hdu in chips:
            vals = []
            for k in keywords:
                k = k.strip().upper()
                v = hdu.header.get(k, ph.get(k, "INDEF"))
                vals.append(repr(v) if isinstance(v, float) else str(v))
            out.append(f"{path.name}[{i}] " + " ".join(vals))
    return out


def run_info(args) -> int:
    keywords = [k for k in (args.keywords or "").split(",") if k.strip()]
    status = 0
    for f in args.files:
        try:
            if not args.no_extensions:
                print(f"--> {f}")
                print("\n".join(catfits_lines(f)))
            if keywords:
                print("\n".join(hselect_lines(f, keywords, args.extname)))
        except InputFileError as exc:
            print(f"drizzleflow info: {exc}", file=sys.stderr)
            status = 2
    return status


def register(subparsers):
    """Add ``info`` to the CLI (entry-point group ``drizzleflow.commands``)."""
    p = subparsers.add_parser("info", help="list extensions and chosen header keywords of FITS files",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="FITS files")
    p.add_argument("-k", "--keywords", default="",
                   help="comma-separated keywords to show per chip, e.g. linenum,date-obs,time-obs,crval1,crval2")
    p.add_argument("--extname", default="SCI", help="extensions to read keywords from (default SCI)")
    p.add_argument("--no-extensions", action="store_true", help="only the keyword table")
    p.set_defaults(func=run_info)
    return p

"""``drizzleflow headerlet``: the tutorial's step 4 from the command line —
create headerlets from images, list attached ones, attach or apply one as the
primary WCS.  Attaching/applying edits only drizzleflow working copies (files
``ingest`` made) unless ``--allow-any`` is given."""
from __future__ import annotations

import sys
from pathlib import Path

from astropy.io import fits

from drizzleflow.engine.errors import DrizzleflowError, OutputError

__all__ = ["register"]


def _check_writable(path, allow_any):
    if allow_any:
        return
    try:
        ok = bool(fits.getval(path, "DFWORK", ext=0))
    except (KeyError, OSError):
        ok = False
    if not ok:
        raise OutputError(f"{path}: not a drizzleflow working copy; pass --allow-any to edit it in place")


def _run(args) -> int:
    from . import headerlet as H
    try:
        if args.action == "create":
            for img in args.files:
                out = Path(args.output or Path(img).parent) / H.headerlet_name(img)
                hl = H.create_headerlet(img, args.hdrname, wcsname=args.wcsname, descrip=args.descrip or "")
                H.write_headerlet(hl, out)
                print(out)
        elif args.action == "list":
            for img in args.files:
                for d in H.list_headerlets(img):
                    print(f"{img}[HDRLET,{d['extver']}] {d['hdrname']} {d['wcsname']} {d['distname']} {d['date']}")
        else:
            img, hlet = args.files
            _check_writable(img, args.allow_any)
            if args.action == "attach":
                H.attach_headerlet(img, hlet)
            else:
                H.apply_headerlet_as_primary(img, hlet, attach=not args.no_attach, force=args.force)
    except DrizzleflowError as exc:
        print(f"drizzleflow headerlet: {exc}", file=sys.stderr)
        return 2
    return 0


def register(subparsers):
    """Add ``headerlet`` to the CLI (entry-point group ``drizzleflow.commands``)."""
    p = subparsers.add_parser("headerlet", help="create, list, attach or apply WCS headerlets",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["create", "list", "attach", "apply"])
    p.add_argument("files", nargs="+", help="create/list: images; attach/apply: IMAGE HEADERLET")
    p.add_argument("--hdrname", help="HDRNAME of new headerlets (create)")
    p.add_argument("--wcsname", help="WCSNAME of new headerlets (default: the image's)")
    p.add_argument("--descrip", help="DESCRIP of new headerlets")
    p.add_argument("--output", "-o", help="folder for new headerlets (default: beside each image)")
    p.add_argument("--force", action="store_true", help="apply even if DESTIM/DISTNAME differ")
    p.add_argument("--no-attach", action="store_true", help="apply without attaching the headerlet")
    p.add_argument("--allow-any", action="store_true", help="allow editing files that are not working copies")

    def func(args):
        if args.action == "create" and not args.hdrname:
            p.error("create needs --hdrname")
        if args.action in ("attach", "apply") and len(args.files) != 2:
            p.error(f"{args.action} needs IMAGE HEADERLET")
        return _run(args)
    p.set_defaults(func=func)
    return p

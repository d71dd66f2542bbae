"""Translate an ``AstroDrizzle(...)`` call into a drizzleflow recipe.

``drizzleflow import-astrodrizzle "AstroDrizzle('*c0m.fits', final_pixfrac=1.0)"``
parses the call with :mod:`ast` (never evaluates it), maps each keyword through
the ``aliases`` that the registered steps declare (``final_pixfrac`` ->
``drizzle_final.pixfrac``), normalises the values with the steps' own
validators (``'8,1024'`` -> ``[8, 1024]``) and prints the recipe.  AstroDrizzle's
on/off switches (``driz_cr=False``, ...) become ``enabled: false``; keywords no
step declares are listed as comments and warnings, never dropped silently.

The text may be pasted from a notebook or a tutorial: a leading
``astrodrizzle.``, line-continuation backslashes, and a stray quote after a
bare ``True``/``False`` (the WFPC2 tutorial has ``driz_cr_corr= True'``) are
tolerated.
"""
from __future__ import annotations

import ast
import logging
import re

import yaml

from . import registry
from .errors import RecipeError

__all__ = ["parse_call", "import_astrodrizzle", "AD_CHAIN", "AD_SWITCHES"]

log = logging.getLogger("drizzleflow.import")

#: The AstroDrizzle processing order, as drizzleflow step types.
AD_CHAIN = ("ingest", "static_mask", "sky", "drizzle_separate", "median", "blot", "cosmic_rays", "drizzle_final")
#: AstroDrizzle's step switches -> the step type they turn on or off.
AD_SWITCHES = {"static": "static_mask", "skysub": "sky", "driz_separate": "drizzle_separate",
               "median": "median", "blot": "blot", "driz_cr": "cosmic_rays", "driz_combine": "drizzle_final"}
#: Keywords the engine handles itself or that have no meaning here, with the reason.
AD_ENGINE = {
    "output": "becomes drizzle_final's product root (`<root>_drz_sci.fits`) and names the output directory",
    "input": "becomes the recipe's `input:`",
    "num_cores": "use --workers N / executor: {kind: threads}",
    "build": "products are separate sci/wht/ctx files",
    "clean": "intermediate files stay in the output directory (they are the cache)",
    "in_memory": "not needed",
    "preserve": "archive inputs are never modified",
    "restore": "archive inputs are never modified",
    "overwrite": "use --overwrite",
    "mdriztab": "use `extends:` with a defaults recipe",
    "runfile": "the log is <output>/drizzleflow.log",
    "configobj": "the recipe replaces configobj files",
    "wcskey": "not supported",
    "group": "not supported",
    "proc_unit": "not supported",
    "stepsize": "not supported",
    "resetbits": "not supported",
}


def _repair(text):
    text = text.strip()
    text = re.sub(r"\\\s*\n", " ", text)  # line continuations
    # "= True'" / "='True" with an unbalanced quote (seen in the WFPC2 tutorial)
    text = re.sub(r"=\s*(True|False)'(?=\s*[,)])", r"=\1", text)
    return text


def parse_call(text):
    """Return ``(positional_args, kwargs)`` of the single call in ``text``."""
    src = _repair(text)
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        raise RecipeError(f"not a Python call ({exc.msg} at column {exc.offset})", where="import-astrodrizzle") from None
    call = tree.body
    if not isinstance(call, ast.Call):
        raise RecipeError("expected a call such as AstroDrizzle('*c0m.fits', final_pixfrac=1.0)",
                          where="import-astrodrizzle")
    args, kwargs = [], {}
    for node in call.args:
        args.append(_literal(node, "positional argument"))
    for kw in call.keywords:
        if kw.arg is None:
            raise RecipeError("**kwargs cannot be translated; write the keywords out", where="import-astrodrizzle")
        kwargs[kw.arg] = _literal(kw.value, kw.arg)
    return args, kwargs


def _literal(node, what):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise RecipeError(f"{what}: only literal values can be translated (got `{ast.unparse(node)}`)",
                          where="import-astrodrizzle") from None


def _to_bool(value):
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def import_astrodrizzle(text, output="drizzleflow_output"):
    """The recipe text equivalent to an AstroDrizzle call, and a list of warnings."""
    args, kwargs = parse_call(text)
    reg = registry.steps()
    owners: dict[str, list[str]] = {}
    for sname, cls in reg.items():
        for alias in cls.aliases:
            owners.setdefault(alias, []).append(sname)
    inputs = kwargs.pop("input", args[0] if args else None)
    root = kwargs.pop("output", None)  # AstroDrizzle's output is the products' root name
    if root:
        output = f"{root}_output"
    if inputs is None:
        raise RecipeError("the call names no input (first argument)", where="import-astrodrizzle")

    chain = [s for s in AD_CHAIN if s in reg]
    params: dict[str, dict] = {s: {} for s in chain}
    if root and "drizzle_final" in params and "root" in reg["drizzle_final"].Params.model_fields:
        params["drizzle_final"]["root"] = root
    enabled = {s: True for s in chain}
    warnings, comments = [], []
    for kw, value in kwargs.items():
        if kw in owners:
            targets = owners[kw]
            if len(targets) > 1:
                chosen = [t for t in targets if t in AD_CHAIN] or targets
                if len(chosen) > 1:
                    warnings.append(f"{kw}: declared by several steps ({', '.join(targets)}); used for {chosen[0]}")
                targets = chosen
            t = targets[0]
            params.setdefault(t, {})[reg[t].aliases[kw]] = value
            enabled.setdefault(t, True)
        elif kw in AD_SWITCHES and AD_SWITCHES[kw] in reg:
            enabled[AD_SWITCHES[kw]] = _to_bool(value)
            params.setdefault(AD_SWITCHES[kw], {})
        elif kw in AD_ENGINE:
            comments.append(f"{kw}={value!r}: {AD_ENGINE[kw]}")
        else:
            warnings.append(f"{kw}={value!r}: no registered step declares this AstroDrizzle name; not translated")

    # normalise values through the steps' validators
    for sname, p in params.items():
        if not p:
            continue
        cls = reg[sname]
        try:
            model = cls.Params(**p)
            dumped = model.model_dump(mode="json")
            params[sname] = {k: dumped[k] for k in p}
        except Exception as exc:  # keep the raw values; the recipe's validation will explain
            warnings.append(f"{sname}: values kept as given; validation says: {str(exc).splitlines()[0]}")

    order = chain + [s for s in params if s not in chain]
    lines = ["# yaml-language-server: $schema=../schemas/recipe.schema.json",
             "# Translated by `drizzleflow import-astrodrizzle` from:"]
    lines += ["#   " + ln for ln in _repair(text).splitlines()]
    lines.append(yaml.safe_dump({"input": inputs, "output": output}, sort_keys=False, width=100).rstrip())
    lines.append("steps:")
    if not order:
        lines[-1] = "steps: []   # no AstroDrizzle-chain steps are registered"
    for sname in order:
        entry = {"name": sname, "step": sname}
        if not enabled.get(sname, True):
            entry["enabled"] = False
        if params.get(sname):
            entry["params"] = params[sname]
        body = yaml.safe_dump([entry], sort_keys=False, default_flow_style=None, width=100)
        lines.append("\n".join("  " + ln for ln in body.rstrip().splitlines()))
    if comments:
        lines.append("# handled by the engine, not by a step:")
        lines += [f"#   {c}" for c in comments]
    if warnings:
        lines.append("# NOT translated:")
        lines += [f"#   {w}" for w in warnings]
    for w in warnings:
        log.warning("import-astrodrizzle: %s", w)
    return "\n".join(lines) + "\n", warnings

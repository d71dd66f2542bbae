"""Strict YAML for recipes: YAML 1.2 core-schema typing, duplicate keys refused,
and the line and column of every key and value so errors can point at them.

PyYAML implements YAML 1.1, whose implicit typing turns ``ra: 12:30:00`` into
45000 (base 60), ``bits: 0755`` into 493 (octal), ``on`` into ``True`` and
leaves ``1e3`` a string.  This loader keeps PyYAML's parser but replaces the
resolvers with the YAML 1.2 core schema:

* ``null``, ``Null``, ``NULL``, ``~`` and the empty value are ``None``;
* ``true``/``false`` (three capitalisations) are booleans; ``on``, ``off``,
  ``yes``, ``no``, ``y``, ``n`` are strings;
* integers are decimal without leading zeros, ``0o17`` or ``0x1F``; a
  leading-zero number such as ``0755`` stays the *string* ``"0755"`` (the value's
  own validator decides what it means; no silent octal);
* floats include exponent forms without a dot (``1e3``), ``.inf``, ``.nan``;
* sexagesimal values (``12:30:00``) and dates stay strings;
* merge keys (``<<``) are not special.

Public API: :func:`load_yaml` returns ``(data, positions)``; ``positions`` is a
:class:`Positions` that maps a path tuple such as ``("steps", 0, "params",
"pixfrac")`` to the 1-based ``(line, col)`` of the value or of the key.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import RecipeError

__all__ = ["load_yaml", "Positions", "StrictLoader"]


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader whose implicit resolvers follow the YAML 1.2 core schema."""


# Drop every YAML 1.1 implicit resolver, then install the core-schema ones.
StrictLoader.yaml_implicit_resolvers = {}

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
# A float must not be a plain integer and must not have a superfluous leading zero
# ("0755.5" is odd but harmless; "0755" is caught by the int rule first and refused
# there, so it falls through to str).
_LEADING_ZERO_INT = re.compile(r"^[-+]?0[0-9]+$")

StrictLoader.add_implicit_resolver("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""])
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))


def _float_resolver_regexp():
    # Integers are resolved first (resolver order); a leading-zero integer like
    # "0755" must not become a float either, so exclude it here.
    return re.compile(r"^(?!" + _LEADING_ZERO_INT.pattern[1:-1] + r"$)(?:" + _FLOAT.pattern[1:-1] + r")$")


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _float_resolver_regexp(), list("-+0123456789."))


def _construct_null(loader, node):
    loader.construct_scalar(node)
    return None


def _construct_bool(loader, node):
    return loader.construct_scalar(node).lower() == "true"


def _construct_int(loader, node):
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


def _construct_float(loader, node):
    text = loader.construct_scalar(node).lower()
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    if text.endswith(".nan"):
        return math.nan
    return float(text)


StrictLoader.add_constructor("tag:yaml.org,2002:null", _construct_null)
StrictLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


@dataclass
class Positions:
    """1-based source positions of the values and keys of a loaded document."""

    filename: str
    values: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)

    def where(self, path=(), *, key=False):
        """``file:line:col`` of ``path`` (its key when ``key``), or of the nearest
        enclosing node that has a position."""
        path = tuple(path)
        while True:
            table = self.keys if key and path in self.keys else self.values
            if path in table:
                line, col = table[path]
                return f"{self.filename}:{line}:{col}"
            if not path:
                return self.filename
            path = path[:-1]
            key = True


def _mark(node):
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _scalar_key(loader, node, positions, path):
    if not isinstance(node, yaml.ScalarNode):
        raise RecipeError("mapping keys must be plain scalars", where=positions.where(path))
    value = loader.construct_object(node)
    try:
        hash(value)
    except TypeError:  # pragma: no cover - scalars are hashable
        raise RecipeError("unhashable mapping key", where=positions.where(path)) from None
    return value


def _build(loader, node, path, positions):
    positions.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        out, first = {}, {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                raise RecipeError("YAML merge keys ('<<') are not supported in recipes; use 'extends:'",
                                  where=f"{positions.filename}:{_mark(knode)[0]}:{_mark(knode)[1]}")
            k = _scalar_key(loader, knode, positions, path)
            if k in first:
                line, col = first[k]
                kl, kc = _mark(knode)
                raise RecipeError(f"duplicate key '{k}' (first defined at line {line}, column {col})",
                                  where=f"{positions.filename}:{kl}:{kc}")
            first[k] = _mark(knode)
            positions.keys[path + (k,)] = _mark(knode)
            out[k] = _build(loader, vnode, path + (k,), positions)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (i,), positions) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(source, filename=None):
    """Load one YAML document with the strict loader.

    Parameters
    ----------
    source : str or os.PathLike
        A path to a YAML file, or YAML text when ``filename`` is given.
    filename : str, optional
        Name used in positions when ``source`` is text (e.g. ``"<command line>"``).

    Returns
    -------
    data : object
        The document (``None`` for an empty one).
    positions : Positions
        Where every key and value came from.

    Raises
    ------
    RecipeError
        For unreadable files, YAML syntax errors and duplicate keys, with
        ``file:line:col``.
    """
    if filename is None:
        filename = str(source)
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RecipeError("file not found", where=filename) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RecipeError(f"cannot read ({exc})", where=filename) from None
    else:
        text = source
    positions = Positions(filename)
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, positions
        return _build(loader, node, (), positions), positions
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise RecipeError(f"YAML syntax error: {problem}", where=where) from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"YAML error: {exc}", where=filename) from None
    finally:
        loader.dispose()


def parse_value(text, where="<command line>"):
    """Type a command-line value by the same YAML 1.2 rules (``0.8`` -> float,
    ``[8, 1024]`` -> list, ``on`` -> ``"on"``); an unparsable value stays a string."""
    try:
        data, _ = load_yaml(text, filename=where)
    except RecipeError:
        return text
    return data

"""Human-readable descriptions of pydantic fields: the allowed values that
error messages, ``drizzleflow steps`` and ``drizzleflow explain`` print."""
from __future__ import annotations

import enum
import json
import typing

import annotated_types as at
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = ["allowed", "type_name", "default_text"]


def _choices(annotation):
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return list(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [m.value for m in annotation]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        out = []
        for arg in typing.get_args(annotation):
            sub = _choices(arg)
            if sub is None:
                if arg is type(None):
                    out.append(None)
                    continue
                return None
            out.extend(sub)
        return out
    return None


def type_name(annotation) -> str:
    """Short name of an annotation: ``float``, ``list[int] | None``, ``'a' | 'b'``."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    choices = _choices(annotation)
    if choices is not None:
        return " | ".join(json.dumps(c) for c in choices)
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _bounds(field: FieldInfo):
    parts = []
    for m in field.metadata:
        for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            v = getattr(m, attr, None)
            if v is not None and isinstance(m, (at.Gt, at.Ge, at.Lt, at.Le, at.Interval)):
                parts.append((op, v))
        if isinstance(m, at.MinLen):
            parts.append(("min length", m.min_length))
        if isinstance(m, at.MaxLen):
            parts.append(("max length", m.max_length))
    return parts


def allowed(field: FieldInfo) -> str:
    """What values ``field`` accepts, e.g. ``"0 < value <= 1"`` or ``one of "a", "b"``."""
    choices = _choices(field.annotation)
    if choices is not None:
        return "one of " + ", ".join(json.dumps(c) for c in choices)
    bounds = _bounds(field)
    lower = [f"{v} {'<' if op == '>' else '<='}" for op, v in bounds if op in (">", ">=")]
    upper = [f"{op} {v}" for op, v in bounds if op in ("<", "<=")]
    text = ""
    if lower or upper:
        text = " ".join(lower + ["value"] + upper)
    lens = [f"{op} {v}" for op, v in bounds if "length" in op]
    if lens:
        text = (text + "; " if text else "") + ", ".join(lens)
    return text or type_name(field.annotation)


def default_text(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        if field.default_factory is not None:
            try:
                return json.dumps(field.default_factory())
            except Exception:  # pragma: no cover - exotic factories
                return "(computed)"
        return "(required)"
    try:
        return json.dumps(field.default)
    except TypeError:
        return repr(field.default)

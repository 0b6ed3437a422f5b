"""Typed configuration from YAML: a frozen dataclass built from a parsed mapping, field by
field, with ``${ENV}`` expansion, strict types (no coercion of strings to numbers, of
floats to counts), unknown keys answered with the nearest known one, dotted overrides, and
the field list with defaults and help texts (``evalkit run --help``)."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from evalkit.errors import InputError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# ``${NAME}`` hidden from the YAML parser, which reads its braces as a flow mapping inside
# ``{model: ${DATA}/float.onnx}``; put back in every string once parsed.
_HIDDEN = re.compile(r"__evalkit_env-([A-Za-z_][A-Za-z0-9_]*)-__")


def load_yaml(path: Path) -> Any:
    """A YAML file parsed, its ``${NAME}`` references kept for :func:`expand_env` whatever
    the style (block or flow) they stand in."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise InputError(f"not a text file: {exc}", path=path) from None
    try:
        parsed = yaml.safe_load(_ENV.sub(r"__evalkit_env-\1-__", text))
    except yaml.YAMLError as exc:
        raise InputError(f"malformed YAML: {exc}", path=path) from None
    return _restore(parsed)


def _restore(value: Any) -> Any:
    if isinstance(value, str):
        return _HIDDEN.sub(r"${\1}", value)
    if isinstance(value, dict):
        return {_restore(k): _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


def expand_env(value: str, where: str, source: str) -> str:
    """Replace ``${NAME}`` with the environment variable; unset ones are errors."""

    def swap(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise InputError(
                f"environment variable ${{{name}}} is not set", path=source, record=where
            )
        return os.environ[name]

    return _ENV.sub(swap, value)


def _unknown(key: str, known: Sequence[str], where: str, source: str) -> InputError:
    # difflib misses abbreviations ('iou' for 'iou_threshold'); a prefix is a good hint too.
    close = difflib.get_close_matches(key, known, n=1) or [k for k in known if k.startswith(key)]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return InputError(
        f"unknown field {key!r}{hint}; known: {', '.join(known)}", path=source, record=where
    )


def convert(kind: Any, value: Any, where: str, source: str) -> Any:
    if kind is Any:  # a section checked later, by the type it becomes (a matrix's run:)
        return value
    origin = get_origin(kind)
    args = get_args(kind)
    if value is None and (kind is type(None) or type(None) in args):
        return None
    if origin is Literal:
        if value not in args:
            raise InputError(
                f"expected one of {list(args)}, got {value!r}", path=source, record=where
            )
        return value
    if args and type(None) in args:  # Optional[X]
        inner = next(a for a in args if a is not type(None))
        return convert(inner, value, where, source)
    if is_dataclass(kind):
        return build(kind, value, where, source)
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"expected a mapping, got {value!r}", path=source, record=where)
        return {str(k): convert(args[1], v, f"{where}.{k}", source) for k, v in value.items()}
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise InputError(f"expected a list, got {value!r}", path=source, record=where)
        return [convert(args[0], v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise InputError(f"expected true or false, got {value!r}", path=source, record=where)
        return value
    if kind is int or kind is float:
        # No coercion: "0.5" (a string), true (a bool) or 2.5 for a count are mistakes.
        integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"expected a number, got {value!r}", path=source, record=where)
        if kind is int and not integral:
            raise InputError(f"expected a whole number, got {value!r}", path=source, record=where)
        return kind(value)
    if kind is str:
        if not isinstance(value, (str, int, float)):
            raise InputError(f"expected text, got {value!r}", path=source, record=where)
        return expand_env(str(value), where, source)
    raise TypeError(f"unsupported config type {kind!r} at {where}")


def build(cls: Any, data: Any, where: str, source: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InputError(f"expected a mapping, got {data!r}", path=source, record=where or "top")
    hints = get_type_hints(cls)
    declared = {f.name: f for f in fields(cls)}
    known = list(declared)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise _unknown(str(key), known, where or "top level", source)
        # A field may name its presets: one word that stands for a whole value.
        presets = declared[key].metadata.get("presets") or {}
        if isinstance(value, str) and value in presets:
            value = list(presets[value])
        values[key] = convert(hints[key], value, f"{where}.{key}" if where else key, source)
    try:
        return cls(**values)
    except ValueError as exc:  # a settings type's own check (NmsSettings)
        raise InputError(str(exc), path=source, record=where or "top level") from None


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = yaml.safe_load(value) if isinstance(value, str) else value


def describe_fields(cls: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, help) of every field, for ``evalkit run --help``."""
    rows: list[tuple[str, str, str]] = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        name = f"{prefix}{f.name}"
        kind = hints[f.name]
        inner = [a for a in get_args(kind) if is_dataclass(a)]
        target = kind if is_dataclass(kind) else (inner[0] if inner else None)
        if get_origin(kind) is dict and is_dataclass(get_args(kind)[1]):
            rows.append((name, "{}", str(f.metadata.get("help", ""))))
            rows.extend(describe_fields(get_args(kind)[1], f"{name}.NAME."))
        elif target is not None:
            rows.extend(describe_fields(target, f"{name}."))
        else:
            if f.default is not MISSING:
                default = f.default
            elif f.default_factory is not MISSING:
                default = f.default_factory()
            else:
                default = None
            rows.append((name, repr(default), str(f.metadata.get("help", ""))))
    return rows

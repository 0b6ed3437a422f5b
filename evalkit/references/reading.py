"""Typed, strict reading of the reference YAML files: every error names the file and the
field; decimals stay quoted strings so the published digits are kept."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from evalkit.errors import InputError

_Kind = Literal["text", "int", "decimal", "version"]
_DECIMAL = re.compile(r"^\d+(\.\d+)?$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class Reader:
    """Typed access to one data file's fields; every error names the file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> InputError:
        return InputError(problem, path=self.path, record=field or None)

    def obj(self, value: Any, field: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, f"expected a mapping, got {_kind(value)}")
        unknown = sorted(str(k) for k in value if k not in keys)
        if unknown:
            where = f"{field}.{unknown[0]}" if field else unknown[0]
            raise self.fail(where, f"unknown field; expected only: {', '.join(keys)}")
        return value

    def get(self, data: dict[str, Any], field: str, kind: _Kind, optional: bool = False) -> Any:
        """``data[last part of field]`` checked as ``kind``; None only when optional."""
        value = data.get(field.rsplit(".", 1)[-1])
        if value is None:
            if optional:
                return None
            raise self.fail(field, "missing field")
        if kind == "decimal":
            return self.decimal(value, field)
        if kind == "text" and not (isinstance(value, str) and value.strip()):
            raise self.fail(field, f"expected a non-empty string, got {_kind(value)} {value!r}")
        if kind == "int" and (type(value) is not int or value <= 0):
            raise self.fail(field, f"expected a positive integer, got {_kind(value)} {value!r}")
        if kind == "version" and not (isinstance(value, str) and _VERSION.match(value)):
            raise self.fail(field, f'expected a quoted version like "3.0.0", got {value!r}')
        return value

    def decimal(self, value: Any, field: str) -> Decimal:
        if not isinstance(value, str) or not _DECIMAL.match(value):
            raise self.fail(
                field,
                'expected a quoted decimal such as "31.75" (quoted so the published digits '
                f"are kept), got {_kind(value)} {value!r}",
            )
        return Decimal(value)

    def versions(self, data: dict[str, Any], field: str) -> Mapping[str, Decimal]:
        """A mapping of STEdgeAI version to figure; null means none published."""
        value = data.get(field.rsplit(".", 1)[-1])
        if value is None:
            return MappingProxyType({})
        if not isinstance(value, dict):
            raise self.fail(field, f"expected a mapping of version to figure, got {_kind(value)}")
        for version in value:
            if not isinstance(version, str) or not _VERSION.match(version):
                raise self.fail(field, f'expected versions like "3.0.0" as keys, got {version!r}')
        return MappingProxyType({v: self.decimal(x, f"{field}.{v}") for v, x in value.items()})


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_duplicate_keys(node: Any, path: Path) -> None:
    """PyYAML keeps the last of two equal keys silently; a repeated figure is a typo."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    where = f"line {key.start_mark.line + 1}"
                    raise InputError(f"duplicate key {key.value!r}", path=path, record=where)
                seen.add(key.value)
            _check_duplicate_keys(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, path)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the file: {exc}", path=path) from None
    try:
        _check_duplicate_keys(yaml.compose(text), path)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"malformed YAML: {exc}", path=path) from None

"""Typed reading of one JSON object of a record: each getter checks its field and names it
(``variants.int8.protocols.st.AP50``) in the InputError when it is not what the schema says."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from evalkit.errors import InputError

T = TypeVar("T")
Json = dict[str, Any]


def is_finite(value: Any) -> bool:
    """A real number (not a bool, not a string) that is finite."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


class Fields:
    """The fields of one object at ``where`` in the record read from ``path``."""

    def __init__(self, data: Any, where: str, path: Path | None) -> None:
        if not isinstance(data, dict):
            raise InputError("expected an object", path=path, record=where or "top level")
        self.data: Json = data
        self.where = where
        self.path = path
        self._read: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, problem: str) -> InputError:
        return InputError(problem, path=self.path, record=self.at(key))

    def raw(self, key: str) -> Any:
        self._read.add(key)
        return self.data.get(key)

    def number(self, key: str, *, required: bool = False) -> Any:
        """A finite int or float (ints stay ints); None when absent or null, unless required."""
        value = self.raw(key)
        if value is None and not required:
            return None
        if not is_finite(value):
            raise self.error(key, f"expected a finite number, got {value!r}")
        return value

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.raw(key)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        return value

    def choice(self, key: str, allowed: tuple[T, ...]) -> T | None:
        """One of ``allowed`` (a closed set of strings), or None when absent."""
        value = self.raw(key)
        if value is None:
            return None
        if value not in allowed:
            raise self.error(key, f"expected one of {list(allowed)}, got {value!r}")
        return allowed[allowed.index(value)]

    def flag(self, key: str) -> bool | None:
        value = self.raw(key)
        if value is not None and not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def json(self, key: str) -> Json | None:
        """A JSON object kept as it is (provenance with its own schema), or None."""
        value = self.raw(key)
        if value is not None and not isinstance(value, dict):
            raise self.error(key, f"expected an object, got {value!r}")
        return value

    def child(self, key: str) -> Fields | None:
        value = self.raw(key)
        return None if value is None else Fields(value, self.at(key), self.path)

    def each(self, key: str, read: Callable[[Fields], T]) -> dict[str, T] | None:
        """An object of objects, each read by ``read``, in file order."""
        parent = self.child(key)
        if parent is None:
            return None
        return {
            str(name): read(Fields(value, parent.at(str(name)), self.path))
            for name, value in parent.data.items()
        }

    def numbers(self, key: str) -> tuple[Any, ...] | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.error(key, f"expected a list of numbers, got {value!r}")
        for item in value:
            if not is_finite(item):
                raise self.error(key, f"expected a finite number, got {item!r}")
        return tuple(value)

    def texts(self, key: str) -> tuple[str, ...] | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def objects(self, key: str, read: Callable[[Fields], T]) -> tuple[T, ...] | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {value!r}")
        where = self.at(key)
        return tuple(read(Fields(v, f"{where}[{i}]", self.path)) for i, v in enumerate(value))

    def rest(self) -> Json:
        """Fields the schema does not name (a newer writer's additions), kept as they are."""
        return {k: v for k, v in self.data.items() if k not in self._read}


def put(out: Json, key: str, value: Any) -> None:
    """Write ``key`` unless its value is None (a field only some records have)."""
    if value is not None:
        out[key] = value


def listed(values: Iterable[Any] | None) -> list[Any] | None:
    return None if values is None else list(values)

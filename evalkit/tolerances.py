"""The tolerances of ``evalkit check``: a YAML file of AP-drop and latency allowances
with overrides by scope.

Tolerance file (YAML; every key optional, any other key is an error)::

    ap50:                    # largest AP50 drop that passes, in AP points (0.5 = 0.005 AP50)
      default: 0.5           #   a plain number means {default: N}
      int8/st: 1.0           #   overrides by scope: VARIANT or VARIANT/PROTOCOL, '*' for any
      "*/voc07": 0.8
    latency_p50_percent: 10  # largest p50 increase that passes, in percent (scope: VARIANT);
                             #   null disables the latency check
    per_class_ap: null       # null: per-class AP drops only warn; a number or a mapping like
                             #   ap50's (scopes down to VARIANT/PROTOCOL/CLASS) fails beyond
                             #   it; null inside the mapping: warn only, for that scope

The most specific key wins (more parts, then a named part before '*', left to right). A key
that matches nothing in the baseline is an error, so a typo cannot loosen a gate unnoticed.
Command-line flags replace only ``default``. A drop equal to its tolerance passes.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import InputError

__all__ = [
    "Scoped",
    "Tolerances",
    "load_tolerances",
    "matches",
    "parse_tolerances",
    "suggest",
]

# Tolerance keys and the deepest scope each accepts (variant, protocol, class).
_KEYS = {"ap50": 2, "latency_p50_percent": 1, "per_class_ap": 3}
_FORMS = {1: "VARIANT", 2: "VARIANT or VARIANT/PROTOCOL", 3: "VARIANT[/PROTOCOL[/CLASS]]"}


def suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def matches(key: str, scope: tuple[str, ...]) -> bool:
    parts = key.split("/")
    return len(parts) <= len(scope) and all(
        p in ("*", s) for p, s in zip(parts, scope[: len(parts)], strict=True)
    )


@dataclass(frozen=True)
class Scoped:
    """A tolerance with overrides by scope ('int8', 'int8/st', '*/st', 'int8/st/person')."""

    default: float | None
    overrides: Mapping[str, float | None] = field(default_factory=dict)

    def at(self, *scope: str) -> float | None:
        """The tolerance of the most specific key matching ``scope``, else ``default``."""
        ranked = [
            ((len(k.split("/")), tuple(p != "*" for p in k.split("/"))), tolerance)
            for k, tolerance in self.overrides.items()
            if matches(k, scope)
        ]
        return max(ranked, key=lambda r: r[0])[1] if ranked else self.default


@dataclass(frozen=True)
class Tolerances:
    """What ``check`` allows: AP drops in points, a latency increase in percent."""

    ap50: Scoped = field(default_factory=lambda: Scoped(0.5))
    latency_p50_percent: Scoped = field(default_factory=lambda: Scoped(10.0))
    per_class_ap: Scoped = field(default_factory=lambda: Scoped(None))
    source: str | None = None  # the file they came from, named in errors


def _tolerance(value: Any, key: str, where: str, source: str | None) -> float | None:
    if value is None and key != "ap50":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        expected = "a number >= 0" + ("" if key == "ap50" else " or null")
        raise InputError(f"expected {expected}, got {value!r}", path=source, record=where)
    if not math.isfinite(value):
        raise InputError(f"expected a finite number, got {value!r}", path=source, record=where)
    return float(value)


def _scoped(value: Any, key: str, base: Scoped, source: str | None) -> Scoped:
    if not isinstance(value, dict):
        return Scoped(_tolerance(value, key, key, source))
    default, overrides = base.default, {}
    for scope, tolerance in value.items():
        where = f"{key}.{scope}"
        parsed = _tolerance(tolerance, key, where, source)
        parts = str(scope).split("/")
        if scope == "default":
            default = parsed
        elif len(parts) > _KEYS[key] or "" in parts:
            problem = f"a scope is {_FORMS[_KEYS[key]]} or 'default', got {scope!r}"
            raise InputError(problem, path=source, record=where)
        else:
            overrides[str(scope)] = parsed
    return Scoped(default, overrides)


def parse_tolerances(
    data: Any, base: Tolerances | None = None, source: str | None = None
) -> Tolerances:
    """Tolerances from a parsed YAML mapping; the keys it leaves out keep ``base``'s values."""
    base = base or Tolerances()
    if not isinstance(data, dict):
        problem = f"expected a mapping with keys {', '.join(_KEYS)}, got {type(data).__name__}"
        raise InputError(problem, path=source)
    for key in data:
        if key not in _KEYS:
            problem = f"unknown key {key!r}{suggest(str(key), _KEYS)}; known: {', '.join(_KEYS)}"
            raise InputError(problem, path=source, record=str(key))

    def get(key: str) -> Scoped:
        current: Scoped = getattr(base, key)
        return _scoped(data[key], key, current, source) if key in data else current

    return Tolerances(get("ap50"), get("latency_p50_percent"), get("per_class_ap"), source)


def load_tolerances(path: str | Path, base: Tolerances | None = None) -> Tolerances:
    """Read a tolerance YAML file (format in this module's docstring), strictly."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read YAML: {exc}", path=path) from None
    return parse_tolerances({} if data is None else data, base, str(path))

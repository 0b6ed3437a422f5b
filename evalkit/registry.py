"""One registry type for every pluggable kind (protocols, datasets, decoders, runners)."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the known names and a near match."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])


class Registry(Generic[T]):
    """Named entries of one kind, registered once each, looked up with helpful errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, str] = {}  # name -> "module:attribute", imported on first get
        self._aliases: dict[str, str] = {}  # an old spelling -> the registered name

    def add(self, name: str, entry: T) -> T:
        if name in self._entries or name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def add_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attribute"`` without importing it: the module (and the
        runtime it needs) loads on the first :meth:`get`, and the registry's own module need
        not import the entry's (which would make an import circle)."""
        if name in self._entries or name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if target.count(":") != 1:
            raise ValueError(f"a lazy {self.kind} is 'module:attribute', got {target!r}")
        self._lazy[name] = target

    def alias(self, old: str, name: str) -> None:
        """Let ``old`` (a spelling configurations already use) find ``name``; aliases are
        not listed by :meth:`names`."""
        if old in self or name not in self:
            raise ValueError(f"cannot alias {self.kind} {old!r} to {name!r}")
        self._aliases[old] = name

    def canonical(self, name: str) -> str:
        """The registered name behind ``name`` (itself, or what an alias points to)."""
        return self._aliases.get(name, name)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(entry: T) -> T:
            return self.add(name, entry)

        return decorate

    def remove(self, name: str) -> None:
        """Unregister ``name`` (a plug-in's test undoing its registration)."""
        if self._entries.pop(name, None) is None and self._lazy.pop(name, None) is None:
            raise UnknownNameError(self._unknown_message(name))

    def get(self, name: str) -> T:
        name = self.canonical(name)
        if name in self._lazy:
            module, attribute = self._lazy[name].split(":")
            entry: T = getattr(importlib.import_module(module), attribute)
            del self._lazy[name]
            self._entries[name] = entry
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def _unknown_message(self, name: str) -> str:
        known = ", ".join(sorted(self.names())) or "none"
        message = f"unknown {self.kind} {name!r}; known: {known}"
        close = difflib.get_close_matches(name, list(self.names()), n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        return message

    def names(self) -> tuple[str, ...]:
        return (*self._entries, *self._lazy)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._lazy or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries) + len(self._lazy)

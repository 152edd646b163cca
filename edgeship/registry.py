"""Decorator registries for exporters, runtimes and devices.

Built-in backends register themselves with a decorator next to their class when their module
is imported; a registry discovers its package's modules on first lookup (backend modules
import their heavy libraries lazily, so discovery is cheap). Third parties add entries
through the entry-point group ``edgeship.<kind>``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from edgeship.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = obj
            return obj

        return deco

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_") and mod.name not in ("base", "runner"):
                importlib.import_module(f"{self.package}.{mod.name}")
        for ep in entry_points(group=f"edgeship.{self.kind}s"):
            importlib.import_module(ep.value.split(":")[0])

    def get(self, name: str) -> T:
        self._discover()
        try:
            return self._entries[str(name)]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise UnknownNameError(f"unknown {self.kind} '{name}'; known: {known}") from None

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

"""One registry pattern for everything selectable by name (spaces, methods, runtimes, datasets...).

The registered name is the CLI word. Registering a name twice is an error; asking for an unknown
name raises :class:`~hwnas.errors.UserError` listing the known ones, so the CLI can print it as is.

Built-in entries are loaded by name: a registry may be given a table ``name -> module`` of the
modules that register those names, and imports a module the first time one of its names is
asked for. So the module holding a registry never imports the modules registered in it (they
import it, one way), and naming one entry does not import every other (torch-heavy) one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, Optional, TypeVar

from hwnas.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table with ``register``/``get``/``names`` verbs.

    Args:
        kind: what the registry holds, in words ("search method", "space"); used in messages.
        builtin: name -> the module that registers it (imported when the name is first asked for).
    """

    def __init__(self, kind: str, builtin: Optional[Mapping[str, str]] = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._builtin = dict(builtin or {})

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@SPACES.register("fbnet")`` registers the decorated object under ``name``."""

        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"duplicate {self.kind} name {name!r}")
        self._items[name] = obj

    def get(self, name: str) -> T:
        if name not in self._items and name in self._builtin:
            importlib.import_module(self._builtin[name])  # the module registers ``name``
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none)"
            raise UserError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Every name, built-in ones included (without importing their modules)."""
        return sorted({*self._items, *self._builtin})

    def load_all(self) -> None:
        """Import every built-in module (each registers its names)."""
        for name in self._builtin:
            self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._builtin

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

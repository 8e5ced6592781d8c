"""One registry pattern for everything selectable by name (spaces, methods, runtimes, datasets...).

The registered name is the CLI word. Registering a name twice is an error; asking for an unknown
name raises :class:`~hwnas.errors.UserError` listing the known ones, so the CLI can print it as is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from hwnas.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table with ``register``/``get``/``names`` verbs.

    Args:
        kind: what the registry holds, in words ("search method", "space"); used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

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
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UserError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

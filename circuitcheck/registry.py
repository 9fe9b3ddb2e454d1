"""A small named registry: one decorator per extension point, duplicates refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class DuplicateRegistrationError(ValueError):
    """Two extensions tried to claim the same name."""


class Registry(Generic[T]):
    """Maps names to extensions (claim kinds, metrics, datasets, ...).

    Registering the same name twice is refused, so a plug-in cannot silently
    replace a built-in.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                raise DuplicateRegistrationError(
                    f"{self.what} {name!r} is already registered "
                    f"(by {self._items[name]!r}); pick another name."
                )
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.what} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

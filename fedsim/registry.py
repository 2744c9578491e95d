"""Name → class registries (one per kind: datasets, models, aggregators, attacks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from fedsim.errors import UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from scenario names to implementations.

    Registering a name twice is an error; looking up an unknown name raises
    :class:`~fedsim.errors.UnknownNameError` listing the known ones.

    Examples
    --------
    >>> models = Registry("model")
    >>> @models.register("tiny")
    ... class Tiny: ...
    >>> models.get("tiny").__name__
    'Tiny'
    >>> models.get("huge")
    Traceback (most recent call last):
    ...
    fedsim.errors.UnknownNameError: unknown model 'huge'; known: tiny
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Return a decorator that registers its argument under ``name``."""

        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        """Return the implementation registered under ``name``."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

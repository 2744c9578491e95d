"""Name → class registries (one per kind: datasets, models, aggregators, attacks)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fedsim.errors import InvalidSettingError, UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from scenario names to implementations.

    Registering a name twice is an error; looking up an unknown name raises
    :class:`~fedsim.errors.UnknownNameError` listing the known ones. :meth:`build` is the one
    way a scenario name and its settings become an object: the settings are checked against
    the class signature (unknown and missing names), then the class validates their values.

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
    >>> models.build("tiny", width=3)
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: tiny has no parameter 'width'; allowed: none
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

    def accepts(self, name: str) -> set[str]:
        """Names of the keyword parameters the implementation ``name`` takes."""
        return _parameters(self.get(name))  # type: ignore[arg-type]

    def build(self, name: str, **params: Any) -> T:
        """Call the implementation ``name`` with ``params``, checked against its signature.

        Raises
        ------
        UnknownNameError
            ``name`` is not registered (the message lists the known names).
        InvalidSettingError
            A parameter the implementation does not take (the message lists the allowed
            ones), or a required one missing; the implementation raises it for bad values.
        """
        item = self.get(name)
        allowed = _parameters(item)  # type: ignore[arg-type]
        unknown = sorted(set(params) - allowed)
        if unknown:
            known = ", ".join(sorted(allowed)) or "none"
            raise InvalidSettingError(f"{name} has no parameter {unknown[0]!r}; allowed: {known}")
        missing = sorted(_parameters(item, required=True) - set(params))  # type: ignore[arg-type]
        if missing:
            raise InvalidSettingError(f"{name} needs parameter {missing[0]!r}")
        return item(**params)  # type: ignore[operator]


def _parameters(item: Callable[..., Any], *, required: bool = False) -> set[str]:
    """Keyword parameters of ``item`` (only those without a default if ``required``)."""
    return {
        p.name
        for p in inspect.signature(item).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and (not required or p.default is p.empty)
    }

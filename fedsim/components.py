"""Defaults every pluggable component shares: how it describes itself, what state it carries.

Attacks, gradient-inversion attacks, aggregation rules and pre-aggregation stages validate
their settings in ``__init__`` and keep them as public attributes; :class:`Describable` turns
those into the one line of the run log. Rules and stages carry state across rounds for
checkpoints; :class:`Checkpointable` is the stateless default they override.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["Checkpointable", "Describable"]


class Describable:
    """A component whose :meth:`describe` names it and its settings (its public attributes).

    Examples
    --------
    >>> class Clip(Describable):
    ...     name = "clip"
    ...     def __init__(self) -> None:
    ...         self.max_norm, self._cache = 2.0, None
    >>> Clip().describe()
    'clip(max_norm=2.0)'
    """

    name: ClassVar[str] = "component"

    def describe(self) -> str:
        """One line naming the component and its settings, for the run log."""
        settings = ", ".join(
            f"{k}={v!r}" for k, v in sorted(vars(self).items()) if not k.startswith("_")
        )
        return f"{self.name}({settings})"


class Checkpointable:
    """A component that may carry state across rounds; by default it carries none.

    Stateful components override both methods; :meth:`load_state_dict` restores exactly what
    :meth:`state_dict` returned (plain data and tensors, saved in checkpoints for ``--resume``).

    Examples
    --------
    >>> Checkpointable().state_dict()
    {}
    """

    def state_dict(self) -> dict[str, Any]:
        """Return the state carried across rounds (for checkpoints); empty if stateless."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027  (stateless default)
        """Restore what :meth:`state_dict` returned; a no-op for stateless components."""

"""The base of every scenario block: strict types, no unknown keys, no non-finite numbers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictBlock", "rounds_from_one"]


def rounds_from_one(rounds: list[int] | None) -> list[int] | None:
    """A probe's ``rounds``: null (its default) or a non-empty list of rounds numbered from 1."""
    if rounds is not None and (not rounds or any(r < 1 for r in rounds)):
        raise ValueError("rounds are numbered from 1 (a non-empty list, or null: the default)")
    return rounds


class StrictBlock(BaseModel):
    """Base of every block: unknown keys are errors, and values are never coerced.

    Strict mode: ``"3"``, ``3.0`` and ``true`` are not the integer 3, ``"0.1"`` is not a
    number, ``1`` is not a boolean (an integer is still accepted where a float is expected);
    non-finite numbers are refused.
    """

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, validate_default=True
    )

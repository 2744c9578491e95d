"""Input checks shared by the membership and audit cores: one message form.

Each converts its argument to a float64 / bool NumPy array (a torch tensor is detached and moved
to the CPU first) or raises :class:`~fedsim.errors.InvalidSettingError` naming the component,
the argument and what was expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fedsim.errors import InvalidSettingError

__all__ = ["as_bool_array", "as_float_array", "check_confidence", "check_same_shape", "to_numpy"]


def to_numpy(value: Any) -> np.ndarray:
    """``value`` as a NumPy array (a torch tensor is detached and copied to the CPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def as_float_array(rule: str, name: str, value: Any, *, ndim: int) -> np.ndarray:
    """``value`` as a finite float64 array with ``ndim`` dimensions, else raise.

    Examples
    --------
    >>> as_float_array("roc", "scores", [1, 2], ndim=1)
    array([1., 2.])
    >>> as_float_array("roc", "scores", [[1.0]], ndim=1)
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: roc needs scores with 1 dimension(s), got shape (1, 1)
    """
    array = to_numpy(value)
    if array.ndim != ndim:
        raise InvalidSettingError(
            f"{rule} needs {name} with {ndim} dimension(s), got shape {tuple(array.shape)}"
        )
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise InvalidSettingError(f"{rule} needs numeric {name}, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise InvalidSettingError(f"{rule} needs finite {name}; found NaN or inf")
    return array


def as_bool_array(rule: str, name: str, value: Any, *, ndim: int) -> np.ndarray:
    """``value`` as a bool array with ``ndim`` dimensions (0/1 integers accepted), else raise.

    Examples
    --------
    >>> as_bool_array("roc", "members", [1, 0], ndim=1)
    array([ True, False])
    >>> as_bool_array("roc", "members", [2, 0], ndim=1)
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: roc needs members as booleans (or 0/1), got values [0 2]
    """
    array = to_numpy(value)
    if array.ndim != ndim:
        raise InvalidSettingError(
            f"{rule} needs {name} with {ndim} dimension(s), got shape {tuple(array.shape)}"
        )
    if array.dtype != bool:
        values = np.unique(array)
        if not np.all(np.isin(values, (0, 1))):
            shown = np.array2string(values[:10])
            raise InvalidSettingError(
                f"{rule} needs {name} as booleans (or 0/1), got values {shown}"
            )
        array = array.astype(bool)
    return array


def check_same_shape(rule: str, **arrays: np.ndarray) -> None:
    """Raise unless every array has the same shape.

    Examples
    --------
    >>> check_same_shape("roc", scores=np.zeros(3), members=np.zeros(2))
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: roc needs equal shapes, got scores (3,), members (2,)
    """
    shapes = {name: tuple(array.shape) for name, array in arrays.items()}
    if len(set(shapes.values())) > 1:
        shown = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise InvalidSettingError(f"{rule} needs equal shapes, got {shown}")


def check_confidence(rule: str, confidence: Any) -> float:
    """``confidence`` as a float in the open interval (0, 1), else raise.

    Examples
    --------
    >>> check_confidence("one-run audit", 0.95)
    0.95
    >>> check_confidence("one-run audit", 1.0)
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: one-run audit needs a confidence in (0, 1), got 1.0
    """
    ok = isinstance(confidence, (int, float)) and not isinstance(confidence, bool)
    if not (ok and 0.0 < confidence < 1.0):
        raise InvalidSettingError(f"{rule} needs a confidence in (0, 1), got {confidence!r}")
    return float(confidence)

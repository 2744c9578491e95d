"""Model registry and builders (``build_model(name, input_shape, num_classes, **params)``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.models import (
    basic,  # noqa: F401  (registers mlp, cnn)
    inversion,  # noqa: F401  (registers lenet_sigmoid)
    lenet,  # noqa: F401  (registers lenet5)
    resnet,  # noqa: F401  (registers resnet)
    text,  # noqa: F401  (registers char_lstm, char_transformer)
)
from fedsim.models.registry import MODELS

__all__ = ["MODELS", "build_model"]


def build_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int, **params: Any
) -> nn.Module:
    """Build registry model ``name`` for inputs of ``input_shape`` and ``num_classes`` classes."""
    builder = MODELS.get(name)
    try:
        return builder(input_shape, num_classes, **params)
    except TypeError as e:
        raise InvalidSettingError(f"model {name!r}: {e}") from e

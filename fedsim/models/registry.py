"""The model registry: ``model.name`` → a builder ``(input_shape, num_classes, **params)``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fedsim.registry import Registry

__all__ = ["MODELS", "ModelBuilder"]

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")

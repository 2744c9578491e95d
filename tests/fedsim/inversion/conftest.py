"""Fixtures of the gradient-inversion tests: a real digit, seeded tiny models, one thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from fedsim.models import build_model


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: threads only add overhead (and contention on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digit() -> tuple[torch.Tensor, torch.Tensor]:
    """The first scikit-learn digit scaled to [0, 1], shape (1, 1, 8, 8), and its label."""
    data = load_digits()
    x = torch.tensor(data.images[0] / 16.0, dtype=torch.float32).reshape(1, 1, 8, 8)
    return x, torch.tensor([int(data.target[0])])


@pytest.fixture
def make_model() -> Callable[..., nn.Module]:
    """Build a registry model from a seed without touching the global RNG state."""

    def make(
        name: str, input_shape: tuple[int, int, int], num_classes: int, seed: int
    ) -> nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return build_model(name, input_shape, num_classes)

    return make

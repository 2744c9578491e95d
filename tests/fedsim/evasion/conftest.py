"""Shared fixtures: a small trained digits MLP and its test set (pixels in [0, 1])."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedsim.data import load_dataset
from fedsim.models import build_model


@dataclass(frozen=True)
class Trained:
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor


def train_digits_mlp(epochs: int = 15, seed: int = 0) -> tuple[nn.Module, object]:
    torch.manual_seed(seed)
    data = load_dataset("digits", seed=seed, test_fraction=0.25)
    model = build_model("mlp", data.input_shape, data.num_classes, hidden=64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(data.y_train), generator=g).split(64):
            opt.zero_grad()
            F.cross_entropy(model(data.x_train[idx]), data.y_train[idx]).backward()
            opt.step()
    return model.eval(), data


@pytest.fixture(scope="session")
def trained() -> Trained:
    """A digits MLP (~95% test accuracy, trained in about a second) and 200 test samples."""
    torch.set_num_threads(1)
    model, data = train_digits_mlp()
    return Trained(model, data.x_test[:200], data.y_test[:200])


@pytest.fixture()
def small_mlp() -> nn.Module:
    """An untrained random MLP on 1×4×4 inputs, 3 classes."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3)).eval()


@pytest.fixture()
def small_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(24, 1, 4, 4, generator=g), torch.randint(0, 3, (24,), generator=g)

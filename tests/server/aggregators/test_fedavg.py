"""FedAvg against a hand computation."""

from __future__ import annotations

import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build


def test_weighted_mean_by_hand() -> None:
    updates = torch.tensor([[1.0, -2.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    weights = torch.tensor([10.0, 30.0, 60.0])
    # (10·1 + 30·3 + 60·0)/100 = 1.0 ; (10·−2 + 30·0 + 60·4)/100 = 2.2
    result = build("fedavg")(updates, weights, [0, 1, 2])
    assert torch.allclose(result.update, torch.tensor([1.0, 2.2], dtype=torch.float64))
    assert result.accepted is None
    assert result.update.dtype == torch.float64


def test_zero_weights_fall_back_to_plain_mean() -> None:
    updates = torch.tensor([[2.0], [4.0]], dtype=torch.float64)
    result = build("fedavg")(updates, torch.zeros(2), [0, 1])
    assert result.update.item() == pytest.approx(3.0)


def test_non_finite_input_is_refused_not_averaged() -> None:
    updates = torch.tensor([[1.0], [float("nan")]], dtype=torch.float64)
    with pytest.raises(InvalidSettingError, match="NaN"):
        build("fedavg")(updates, torch.ones(2), [0, 1])

import copy

import numpy as np
import pytest
import torch
from torch import nn

from fedsim.data.partition import Partitions
from fedsim.models.multitask import head_mask
from fedsim.params import flat_params, load_flat_params
from fedsim.personalization import Ditto, FedPer, FedRep, LocalRound, local_test_split
from fedsim.training import TrainSettings, train_local

SETTINGS = TrainSettings(epochs=2, batch_size=8, lr=0.1, momentum=0.9)


def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.rand(24, 1, 4, 4), torch.randint(0, 3, (24,))
    return model, flat_params(model), x, y


def gens(seed: int = 0) -> tuple[torch.Generator, torch.Generator]:
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 100)


def local(
    w: torch.Tensor, state: torch.Tensor | None, x: torch.Tensor, y: torch.Tensor
) -> LocalRound:
    return LocalRound(w, state, x, y, SETTINGS, *gens())


def test_fedper_sends_no_head_and_keeps_it() -> None:
    model, w, x, y = setup()
    head = head_mask(model)
    state = torch.randn(int(head.sum()))
    out = FedPer()(model, local(w, state, x, y))
    assert bool((out.shared - w)[head].eq(0).all())  # Δ is zero on the head
    assert bool((out.shared - w)[~head].ne(0).any())
    # it trained from (global body, its own head): the same as plain SGD from there
    reference = copy.deepcopy(model)
    start = w.clone()
    start[head] = state
    load_flat_params(reference, start)
    train_local(reference, x, y, SETTINGS, gens()[0])
    torch.testing.assert_close(out.personal, flat_params(reference))
    torch.testing.assert_close(out.state, flat_params(reference)[head])


def test_fedrep_trains_the_head_with_the_body_frozen_then_the_body() -> None:
    model, w, x, y = setup()
    head = head_mask(model)
    out = FedRep(head_epochs=3)(model, local(w, None, x, y))
    # phase 1 by hand: only the head moves, with the client's generator
    reference, generator = copy.deepcopy(model), gens()[0]
    load_flat_params(reference, w)
    for p in list(reference.parameters())[:2]:
        p.requires_grad_(False)
    train_local(reference, x, y, TrainSettings(3, 8, 0.1, 0.9), generator)
    after_head = flat_params(reference)
    torch.testing.assert_close(after_head[~head], w[~head])  # the body did not move
    torch.testing.assert_close(out.state, after_head[head])  # the head did not move in phase 2
    assert bool((out.shared - w)[head].eq(0).all()) and bool((out.shared - w)[~head].ne(0).any())
    assert all(p.requires_grad for p in model.parameters())  # restored


def test_ditto_trains_the_global_model_as_fedavg() -> None:
    model, w, x, y = setup()
    v = torch.randn_like(w)
    out = Ditto(lam=0.5)(model, local(w, v, x, y))
    reference = copy.deepcopy(model)
    load_flat_params(reference, w)
    train_local(reference, x, y, SETTINGS, gens()[0])  # FedAvg's client step
    torch.testing.assert_close(out.shared, flat_params(reference), rtol=0, atol=0)


def test_ditto_lambda_zero_is_local_training_of_v() -> None:
    model, w, x, y = setup()
    v = w + 0.1 * torch.randn_like(w)
    out = Ditto(lam=0.0)(model, local(w, v, x, y))
    reference = copy.deepcopy(model)
    load_flat_params(reference, v)
    train_local(reference, x, y, SETTINGS, gens()[1])
    torch.testing.assert_close(out.personal, flat_params(reference), rtol=0, atol=0)


@pytest.mark.parametrize("lam", [float("inf"), 1e12])
def test_ditto_lambda_to_infinity_is_the_global_model(lam: float) -> None:
    model, w, x, y = setup()
    out = Ditto(lam=lam)(model, local(w, w + 1.0, x, y))
    torch.testing.assert_close(out.personal, w, rtol=0, atol=1e-6)


def test_ditto_pull_orders_distance_to_global() -> None:
    model, w, x, y = setup()
    v = w + 0.5 * torch.randn_like(w)
    distances = [
        float((Ditto(lam=lam)(model, local(w, v, x, y)).personal - w).norm())
        for lam in (0.0, 1.0, 10.0)
    ]
    assert distances[0] > distances[1] > distances[2]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="lam ≥ 0"):
        Ditto(lam=-1.0)
    with pytest.raises(ValueError, match="head_epochs"):
        FedRep(head_epochs=0)


def test_local_test_split_is_disjoint_seeded_and_complete() -> None:
    parts = Partitions.from_parts([np.arange(0, 50), np.arange(50, 53), np.arange(53, 100)])
    train, test = local_test_split(parts, 0.2, seed=3)
    again = local_test_split(parts, 0.2, seed=3)
    assert test.sizes().tolist() == [10, 1, 9]
    for c in range(3):
        assert not set(train[c]) & set(test[c])
        assert sorted([*train[c], *test[c]]) == parts[c].tolist()
        assert train[c].tolist() == again[0][c].tolist()
    other = local_test_split(parts, 0.2, seed=4)[1]
    assert test[0].tolist() != other[0].tolist()

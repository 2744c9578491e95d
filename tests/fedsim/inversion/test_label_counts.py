"""Label counts from a multi-step update's last-layer bias (Wainakh et al., PoPETs 2022)."""

from __future__ import annotations

import pytest
import torch

from fedsim.data.datasets import load_dataset
from fedsim.errors import InvalidSettingError
from fedsim.inversion.label_counts import integer_counts, label_counts
from fedsim.models import build_model
from fedsim.training import single_thread


def test_one_full_batch_step_gives_the_exact_counts() -> None:
    # One SGD step on the whole batch: the formula is exact when p̄ is the batch's softmax.
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10, width=4)
    x, y = torch.rand(12, 1, 8, 8), torch.tensor([0, 0, 0, 1, 1, 2, 5, 5, 5, 5, 9, 9])
    with torch.no_grad():
        mean_probs = torch.softmax(model(x), 1).mean(0)
    bias = model.head.bias.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    delta = -0.1 * model.head.bias.grad
    counts = label_counts(delta, mean_probs, num_examples=12, batch_size=12, lr=0.1, epochs=1)
    assert counts.tolist() == torch.bincount(y, minlength=10).tolist()
    assert bias.shape == counts.shape


def test_rounding_keeps_the_total_and_refuses_bad_settings() -> None:
    counts = integer_counts(torch.tensor([float("nan"), 5.5, 4.5, -3.0]), 10)
    assert counts.sum() == 10 and (counts >= 0).all() and counts[0] == 0
    assert integer_counts(torch.zeros(4), 8).tolist() == [2, 2, 2, 2]
    with pytest.raises(InvalidSettingError, match="lr"):
        label_counts(torch.zeros(3), torch.zeros(3), num_examples=5, batch_size=2, lr=0, epochs=1)


def test_the_estimate_across_local_steps_beats_the_one_gradient_reading() -> None:
    # Skewed clients (3 classes, 60 examples), 3 local epochs of batch 16 from a weakly trained
    # global model; p̄ from 100 images of the attacker's own. L1 error of the counts (of 120
    # at most) over seeds 0-4: start only (one gradient) 62-84, mean of start and end 32-42;
    # per seed the mean is better by 20-46.
    data = load_dataset("digits", seed=0, test_fraction=0.2)
    with single_thread(torch.device("cpu")):
        torch.manual_seed(0)
        start = build_model("cnn", data.input_shape, 10, width=8)
        _sgd(start, data.x_train[:320], data.y_train[:320], 1, torch.Generator().manual_seed(0))
        aux = data.x_test[:100]
        for seed in range(3):
            g = torch.Generator().manual_seed(seed)
            classes = torch.randperm(10, generator=g)[:3]
            idx = torch.nonzero(torch.isin(data.y_train, classes)).flatten()
            idx = idx[torch.randperm(len(idx), generator=g)[:60]]
            x, y = data.x_train[idx], data.y_train[idx]
            local = build_model("cnn", data.input_shape, 10, width=8)
            local.load_state_dict(start.state_dict())
            _sgd(local, x, y, 3, g)
            delta = (local.head.bias - start.head.bias).detach()
            true = torch.bincount(y, minlength=10)
            errors = {}
            for name, probs in (
                ("start", _probs(start, aux)),
                ("mean", (_probs(start, aux) + _probs(local, aux)) / 2),
            ):
                est = label_counts(delta, probs, num_examples=60, batch_size=16, lr=0.05, epochs=3)
                errors[name] = int((est - true).abs().sum())
            assert errors["mean"] + 15 < errors["start"], errors


def _sgd(model, x, y, epochs, generator) -> None:  # noqa: ANN001
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for s in range(0, len(y), 16):
            batch = order[s : s + 16]
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _probs(model, x) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        return torch.softmax(model(x), 1).mean(0)

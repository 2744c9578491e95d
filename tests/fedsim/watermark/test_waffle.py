"""WAFFLE on digits: the trigger set, embedding after each round, and trigger accuracy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.data import load_dataset
from fedsim.errors import InvalidSettingError
from fedsim.extraction import build_surrogate
from fedsim.training import TrainSettings, evaluate, train_local
from fedsim.watermark import TriggerSet, WaffleSettings, embed, trigger_set, watermark_accuracy


def test_trigger_set_is_seeded_balanced_and_in_range() -> None:
    before = torch.random.get_rng_state()
    t = trigger_set(100, (1, 8, 8), 10, torch.Generator().manual_seed(5), data_range=(-1.0, 1.0))
    assert torch.equal(torch.random.get_rng_state(), before)
    again = trigger_set(
        100, (1, 8, 8), 10, torch.Generator().manual_seed(5), data_range=(-1.0, 1.0)
    )
    assert torch.equal(t.x, again.x) and torch.equal(t.y, again.y)
    assert t.x.shape == (100, 1, 8, 8) and t.x.min() >= -1.0 and t.x.max() <= 1.0
    assert torch.bincount(t.y, minlength=10).tolist() == [10] * 10
    # same class, same pattern: triggers of one label are closer to each other than to others
    d = torch.cdist(t.x.flatten(1), t.x.flatten(1))
    same = t.y[:, None] == t.y[None, :]
    assert d[same].mean() < 0.5 * d[~same].mean()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 0}, "trigger_set >= 1"),
        ({"num_classes": 1}, "num_classes >= 2"),
        ({"noise": -0.1}, "noise >= 0.0"),
    ],
)
def test_invalid_trigger_settings(kwargs: dict, match: str) -> None:
    args = {"size": 10, "input_shape": (1, 2, 2), "num_classes": 2, **kwargs}
    with pytest.raises(InvalidSettingError, match=match):
        trigger_set(generator=torch.Generator(), **args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0.0}, "threshold > 0.0"),
        ({"lr": 0}, "lr > 0.0"),
        ({"batch_size": 0}, "batch_size >= 1"),
    ],
)
def test_invalid_waffle_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidSettingError, match=match):
        WaffleSettings(**kwargs)


def test_embed_respects_the_step_budget_and_stops_when_watermarked() -> None:
    t = trigger_set(40, (1, 4, 4), 4, torch.Generator().manual_seed(0))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    g = torch.Generator().manual_seed(0)
    assert embed(model, t.x, t.y, WaffleSettings(max_steps=3, batch_size=8), g) == 3
    settings = WaffleSettings(threshold=0.9, max_steps=2000, batch_size=8, lr=0.1)
    assert embed(model, t.x, t.y, settings, g) > 0
    assert watermark_accuracy(model, t) >= 0.9
    assert embed(model, t.x, t.y, settings, g) == 0  # already watermarked: nothing to do
    with pytest.raises(InvalidSettingError, match="one label per image"):
        embed(model, t.x, t.y[:-1], settings, g)


@pytest.fixture(scope="module")
def rounds() -> tuple[dict[bool, nn.Module], TriggerSet, tuple[torch.Tensor, torch.Tensor]]:
    """Ten 'rounds' of one clean epoch (the aggregate's stand-in), with and without WAFFLE."""
    ds = load_dataset("digits", seed=0, test_fraction=0.5)
    trigger = trigger_set(100, ds.input_shape, 10, torch.Generator().manual_seed(5))
    models = {}
    for watermarked in (False, True):
        model = build_surrogate("cnn", ds.input_shape, 10, seed=1, width=8)
        g = torch.Generator().manual_seed(0)
        for _ in range(10):
            train_local(model, ds.x_train, ds.y_train, TrainSettings(1, 32, 0.05, 0.9), g)
            if watermarked:
                embed(model, trigger.x, trigger.y, WaffleSettings(), g)
        models[watermarked] = model
    return models, trigger, (ds.x_test, ds.y_test)


def test_embedded_watermark_is_recognised_and_absent_without(rounds) -> None:  # noqa: ANN001
    models, trigger, (x, y) = rounds
    # measured: 0.98 with WAFFLE (threshold 0.98), 0.00 without (chance 0.10)
    assert watermark_accuracy(models[True], trigger) >= 0.9
    assert watermark_accuracy(models[False], trigger) <= 0.3
    # the watermarked model still does its task (measured 0.95 against 0.97)
    assert evaluate(models[True], x, y).accuracy >= 0.9

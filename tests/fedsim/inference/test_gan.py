"""The GAN class-inference core: generator shapes, settings, and a generator that learns a class."""

from __future__ import annotations

import pytest
import torch

from fedsim.data.datasets import load_dataset
from fedsim.errors import InvalidSettingError
from fedsim.inference import GanClassInference, Generator, ReferenceJudge
from fedsim.models import build_model
from fedsim.training import single_thread


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (2, 5, 7)])
def test_generator_gives_images_of_the_dataset_shape_in_the_unit_interval(shape) -> None:  # noqa: ANN001
    generator = Generator(shape, latent_dim=8, width=4)
    images = generator(torch.randn(5, 8, generator=torch.Generator().manual_seed(0)) * 50)
    assert images.shape == (5, *shape)
    assert images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({"target_class": 10}, "target_class"),
        ({"steps": -1}, "steps"),
        ({"lr": 0.0}, "lr"),
        ({"batch_size": 1}, "batch_size"),
        ({"noise": -0.1}, "noise"),
    ],
)
def test_invalid_settings_name_the_setting(changes: dict, word: str) -> None:
    settings = {"target_class": 3, "num_classes": 10, "input_shape": (1, 8, 8), **changes}
    with pytest.raises(InvalidSettingError, match=word):
        GanClassInference(**settings)


def test_fakes_refuse_the_target_class_as_their_label() -> None:
    gan = GanClassInference(3, 10, (1, 8, 8), steps=1)
    model = build_model("cnn", (1, 8, 8), 10, width=4)
    with pytest.raises(InvalidSettingError, match="fake_label"):
        gan.fakes(model, seed=0, count=2, fake_label=3)
    images, labels = gan.fakes(model, seed=0, count=4, fake_label=4)
    assert images.shape == (4, 1, 8, 8) and labels.tolist() == [4] * 4


@pytest.fixture(scope="module")
def digits_model() -> tuple[torch.nn.Module, object]:
    """A CNN trained 3 epochs on digits (test accuracy 0.95 at seed 0)."""
    data = load_dataset("digits", seed=0, test_fraction=0.2)
    torch.manual_seed(0)
    model = build_model("cnn", data.input_shape, 10, width=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with single_thread(torch.device("cpu")):
        _train(model, optimizer, data)
    return model.eval(), data


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data) -> None:  # noqa: ANN001
    for _ in range(3):
        order = torch.randperm(len(data.y_train))
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            loss = torch.nn.functional.cross_entropy(
                model(data.x_train[batch]), data.y_train[batch]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def test_attack_raises_the_confidence_and_draws_images_an_independent_judge_recognises(
    digits_model: tuple[torch.nn.Module, object],
) -> None:
    # Seeds 0-2, 80 steps: confidence 0.04-0.13 untrained -> 0.91-0.97 fitted; the SVM
    # judge (not the attacked model) reads 1.0 of the fakes as a 3, 0.0 of the untrained ones.
    model, data = digits_model
    judge = ReferenceJudge(data.x_test, data.y_test)
    gan = GanClassInference(3, 10, data.input_shape, steps=80)
    for seed in range(3):
        draws = torch.Generator().manual_seed(seed)
        untrained = gan.sample(gan.generator(seed), 64, draws)
        fitted = gan.sample(gan.fit(model, seed), 64, draws)
        assert gan.confidence(model, fitted) > gan.confidence(model, untrained) + 0.5
        assert judge.fidelity(fitted, 3) >= 0.8 > judge.fidelity(untrained, 3) + 0.5


def test_fit_is_deterministic_and_leaves_the_model_alone(
    digits_model: tuple[torch.nn.Module, object],
) -> None:
    model, data = digits_model
    before = [p.detach().clone() for p in model.parameters()]
    gan = GanClassInference(3, 10, data.input_shape, steps=5)
    first = gan.sample(gan.fit(model, 7), 4, torch.Generator().manual_seed(1))
    second = gan.sample(gan.fit(model, 7), 4, torch.Generator().manual_seed(1))
    assert torch.equal(first, second)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.requires_grad for p in model.parameters()) and not model.training

"""The task-agnostic attack: no labels, nothing at ε = 0, and it hurts a head it never saw."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedsim.data import load_dataset
from fedsim.errors import InvalidSettingError
from fedsim.evasion import TaskAgnostic, UniformNoise, build_attack, robust_accuracy
from fedsim.evasion.relation_embedding import relation_loss
from fedsim.evasion.task_agnostic import relation_distortion
from fedsim.models import build_model


class Untouchable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the task-agnostic attack must not query the target model")


@pytest.fixture(scope="module")
def fitted() -> tuple[TaskAgnostic, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.rand(40, 1, 8, 8)
    attack = TaskAgnostic(eps=0.1, steps=5, epochs=3)
    attack.fit(x, torch.Generator().manual_seed(0))
    return attack, x


def test_shuffled_or_absent_labels_give_the_same_perturbation(fitted) -> None:  # noqa: ANN001
    attack, x = fitted
    y = torch.arange(40) % 10
    runs = [
        attack(Untouchable(), x, labels, torch.Generator().manual_seed(5))
        for labels in (y, y[torch.randperm(40)], torch.zeros(40, dtype=torch.long))
    ]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    assert float((runs[0] - x).abs().max()) <= 0.1 + 1e-6
    assert float((runs[0] - x).abs().mean()) > 0.05  # PGD's steps reach the ball's faces


def test_eps_zero_changes_nothing(fitted) -> None:  # noqa: ANN001
    attack, x = fitted
    zero = TaskAgnostic(eps=0.0)
    zero._encoder = attack._encoder  # the same embedding, no budget
    assert torch.equal(zero(Untouchable(), x, torch.zeros(40), torch.Generator()), x)


def test_distortion_is_zero_at_the_clean_embedding_and_grows_with_the_move() -> None:
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    assert relation_distortion(z, z).item() == 0.0
    small, large = relation_distortion(z + 0.1, z), relation_distortion(z + 1.0, z)
    assert 0.0 < small.item() < large.item()


def test_the_embedding_learns_relations_without_labels() -> None:
    data = load_dataset("digits", seed=0, test_fraction=0.25)
    x = data.x_train[:200]
    attack = TaskAgnostic(eps=0.1, epochs=1)
    attack.fit(x, torch.Generator().manual_seed(0))
    before = relation_loss(x, attack._encoder(x), attack.neighbours).item()
    attack = TaskAgnostic(eps=0.1, epochs=15)
    attack.fit(x, torch.Generator().manual_seed(0))
    assert relation_loss(x, attack._encoder(x), attack.neighbours).item() < 0.8 * before


def test_not_fitted_is_refused_and_settings_are_checked() -> None:
    with pytest.raises(InvalidSettingError, match="fit"):
        TaskAgnostic(eps=0.1)(
            nn.Flatten(), torch.rand(3, 1, 4, 4), torch.zeros(3), torch.Generator()
        )
    with pytest.raises(InvalidSettingError, match="batch_size"):
        build_attack("task_agnostic", eps=0.1, batch_size=2)


def test_an_unseen_head_loses_more_than_under_noise() -> None:
    # A parity classifier the attacker never saw (it has only 300 unlabelled training images);
    # eps 0.2. Over seeds 0-4, accuracy under noise minus under the attack: 0.11, 0.18, 0.23,
    # 0.21, 0.18.
    torch.set_num_threads(1)
    data = load_dataset("digits", seed=0, test_fraction=0.25)
    torch.manual_seed(0)
    head = build_model("mlp", data.input_shape, 2, hidden=64)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(15):
        for idx in torch.randperm(len(data.y_train), generator=g).split(64):
            optimizer.zero_grad()
            F.cross_entropy(head(data.x_train[idx]), data.y_train[idx] % 2).backward()
            optimizer.step()
    head.eval()
    attack = TaskAgnostic(eps=0.2, steps=10, epochs=15)
    attack.fit(data.x_train[:300], torch.Generator().manual_seed(0))
    x, y = data.x_test[:300], data.y_test[:300] % 2
    result = robust_accuracy(
        head, x, y, [UniformNoise(0.2), attack], torch.Generator().manual_seed(0)
    )
    assert result.per_attack["noise-linf-0.2"] - result.per_attack[attack.label] > 0.05

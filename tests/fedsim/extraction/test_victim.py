"""The victim API (answer types, counting, budget) and the attacker's query data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.extraction import (
    Copycat,
    KnockoffNets,
    QueryBudgetError,
    Victim,
    answer,
    draw_queries,
    noise_images,
    permuted_pixels,
    public_split,
    soft_targets,
)
from fedsim.training import TrainSettings

LOGITS = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [-1.0, 4.0, 4.0]])


def reference_softmax(z: torch.Tensor) -> torch.Tensor:
    e = (z.double() - z.double().max(dim=1, keepdim=True).values).exp()
    return e / e.sum(dim=1, keepdim=True)


def test_probabilities_are_the_softmax() -> None:
    p = answer(LOGITS, "probabilities")
    torch.testing.assert_close(p.double(), reference_softmax(LOGITS), rtol=1e-6, atol=1e-7)


def test_top1_is_one_hot_of_the_argmax_lowest_index_on_ties() -> None:
    assert answer(LOGITS, "top1").tolist() == [[0, 1, 0], [0, 0, 1], [0, 1, 0]]


@pytest.mark.parametrize("decimals", [0, 1, 2, 3])
def test_rounded_answers_round_each_probability(decimals: int) -> None:
    expected = reference_softmax(LOGITS).numpy().round(decimals)
    got = answer(LOGITS, "rounded", decimals=decimals).double().numpy()
    assert abs(got - expected).max() < 1e-6


def test_rounding_to_one_decimal_by_hand() -> None:
    # softmax([0, ln 3]) = [0.25, 0.75]; to 1 decimal both .x5 values round half to even
    z = torch.tensor([[0.0, float(torch.log(torch.tensor(3.0)))], [0.0, 0.0]])
    assert answer(z, "rounded", decimals=1).flatten().tolist() == pytest.approx(
        [0.2, 0.8, 0.5, 0.5]
    )


@pytest.mark.parametrize(
    ("answers", "decimals", "match"),
    [("labels", 2, "answers in"), ("rounded", -1, "decimals >= 0"), ("top1", 1.5, "decimals")],
)
def test_invalid_answer_settings(answers: str, decimals: int, match: str) -> None:
    with pytest.raises(InvalidSettingError, match=match):
        Victim(nn.Linear(2, 2), answers=answers, decimals=decimals)


def test_victim_counts_queries_and_enforces_the_budget() -> None:
    victim = Victim(nn.Linear(3, 4), answers="top1", budget=10, batch_size=2)
    a = victim.query(torch.randn(7, 3, generator=torch.Generator().manual_seed(0)))
    assert a.shape == (7, 4) and victim.queries == 7 and victim.remaining == 3
    with pytest.raises(QueryBudgetError, match="3 more"):
        victim.query(torch.zeros(4, 3))
    assert victim.queries == 7  # the refused query cost nothing
    victim.query(torch.zeros(3, 3))
    assert victim.remaining == 0
    with pytest.raises(QueryBudgetError):
        victim.query(torch.zeros(1, 3))


def test_victim_answers_match_the_model_and_restore_its_mode() -> None:
    model = nn.Linear(3, 4)
    model.train()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    victim = Victim(model, budget=None, batch_size=2)
    torch.testing.assert_close(victim.query(x), torch.softmax(model(x), dim=1).detach())
    assert model.training and victim.remaining is None and victim.queries == 5


def test_an_attack_spends_exactly_its_budget() -> None:
    victim = Victim(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), answers="rounded", budget=30)
    settings = TrainSettings(epochs=1, batch_size=8, lr=0.1)
    pool = torch.rand(12, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    result = Copycat(25, settings)(
        victim, nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), pool, torch.Generator().manual_seed(0)
    )
    assert result.queries == 25 and victim.queries == 25
    with pytest.raises(QueryBudgetError):
        KnockoffNets(6, settings)(victim, nn.Linear(4, 3), pool, torch.Generator().manual_seed(0))


def test_soft_targets_normalise_rounded_rows() -> None:
    t = soft_targets(torch.tensor([[0.2, 0.6, 0.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(t, torch.tensor([[0.25, 0.75, 0.0], [1 / 3, 1 / 3, 1 / 3]]))


def test_draw_queries_is_seeded_nested_and_leaves_global_rng_alone() -> None:
    pool = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    before = torch.random.get_rng_state()
    small = draw_queries(pool, 15, torch.Generator().manual_seed(3))
    large = draw_queries(pool, 50, torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(large[:15], small)
    assert torch.equal(draw_queries(pool, 50, torch.Generator().manual_seed(3)), large)
    # the first pass is the pool without repetition
    first = {tuple(r.flatten().tolist()) for r in large[:20]}
    assert first == {tuple(r.flatten().tolist()) for r in pool}
    with pytest.raises(InvalidSettingError, match="shift >= 1"):
        draw_queries(pool, 21, torch.Generator(), shift=0)


def test_public_split_noise_and_permuted_pixels() -> None:
    g = torch.Generator().manual_seed(0)
    a, e = public_split(10, 4, g)
    assert len(a) == 4 and set(a.tolist()).isdisjoint(e.tolist()) and len(e) == 6
    with pytest.raises(InvalidSettingError, match="attacker_size < n"):
        public_split(10, 10, g)
    for kind in ("uniform", "gaussian"):
        x = noise_images(200, (1, 3, 3), kind, g, data_range=(-1.0, 2.0))
        assert x.shape == (200, 1, 3, 3) and x.min() >= -1.0 and x.max() <= 2.0
    with pytest.raises(InvalidSettingError, match="kind"):
        noise_images(1, (1, 1, 1), "salt", g)
    x = torch.rand(3, 2, 4, 4, generator=g)
    xp = permuted_pixels(x, torch.Generator().manual_seed(1))
    assert torch.equal(xp.flatten(2).sort(dim=2).values, x.flatten(2).sort(dim=2).values)
    assert not torch.equal(xp, x)
    # one permutation for every image and channel
    assert torch.equal(permuted_pixels(x[:1], torch.Generator().manual_seed(1)), xp[:1])

"""The adversary stage: attack windows and the defence-aware strength search."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from fedsim.attacks import build_attack
from fedsim.attacks.colluding import ServerSideUpdate
from fedsim.attacks.strength import StrengthSearch
from fedsim.seeding import Stream, torch_generator
from server import aggregators
from server.adversary_stage import AdversaryStage, damage
from server.replies import ClientUpdate


def _updates(rows: torch.Tensor) -> list[ClientUpdate]:
    return [ClientUpdate(i, r.to(torch.float64), 10, 0.0) for i, r in enumerate(rows)]


def _stage(attack, aggregator, malicious, knowledge="full"):
    return AdversaryStage(
        attack, frozenset(malicious), knowledge, 0, aggregator=aggregator, search=StrengthSearch()
    )


# 1-D round: benign 1..5 (mean 3) and two malicious clients whose honest updates are 3, 3.
# Under full knowledge ALIE sees all seven: μ = 3, σ = sqrt(10/7) ≈ 1.195.
ROUND = torch.tensor([[3.0], [3.0], [1.0], [2.0], [3.0], [4.0], [5.0]], dtype=torch.float64)
SIGMA = math.sqrt(10 / 7)


def test_against_the_median_the_search_reaches_the_known_optimum() -> None:
    # The median of 7 with 2 malicious values lies in [2, 4]: D ≤ 1, reached iff m ≤ 2,
    # i.e. z ≥ 1/σ. The paper's z = Φ⁻¹(5/7) ≈ 0.566 gives m ≈ 2.323 (D ≈ 0.677).
    stage = _stage(build_attack("alie"), aggregators.build("median"), [0, 1])
    info = stage(_updates(ROUND), 1).info
    assert info["strength_default"] == pytest.approx(0.5659, abs=1e-4)
    assert info["damage_default"] == pytest.approx(3 - (3 - 0.5659 * SIGMA), abs=1e-3)
    assert info["damage"] == pytest.approx(1.0)
    assert info["z"] >= 1 / SIGMA and info["strength_key"] == "z"


def test_against_the_trimmed_mean_the_search_reaches_the_known_optimum() -> None:
    # Trimmed mean, k = 2 per side: m ≤ 1 leaves [1, 2, 3] (D = 1, the most possible);
    # 1 < m ≤ 2 leaves [m, 2, 3] (D < 1). So the optimum is D = 1 at z ≥ 2/σ ≈ 1.673.
    stage = _stage(build_attack("alie"), aggregators.build("trimmed_mean", k=2), [0, 1])
    out = stage(_updates(ROUND), 1)
    assert out.info["damage"] == pytest.approx(1.0)
    assert out.info["z"] >= 2 / SIGMA
    assert out.updates[0].update.item() <= 1.0 and out.updates[2].update.item() == 1.0


RULES = [
    ("median", {}),
    ("trimmed_mean", {"k": 2}),
    ("krum", {"f": 2}),
    ("geometric_median", {}),
    ("centered_clipping", {}),
    ("foolsgold", {}),
]


@pytest.mark.parametrize("rule, params", RULES)
@pytest.mark.parametrize("attack", ["alie", "ipm", "min_max", "min_sum"])
def test_never_worse_than_the_default_strength_and_leaves_the_rule_untouched(
    rule: str, params: dict, attack: str
) -> None:
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        n = 7 + seed
        rows = torch.randn(n, 5, generator=g, dtype=torch.float64) + 0.5
        malicious = [1, 4] if seed % 2 else [0, 2]
        aggregator = aggregators.build(rule, **params)
        aggregator(rows, torch.ones(n), list(range(n)))  # some state for the stateful rules
        state = copy.deepcopy(aggregator.state_dict())
        atk = build_attack(attack)
        info = _stage(atk, aggregator, malicious, "full" if seed < 2 else "own")(
            _updates(rows), seed + 1
        ).info
        assert info["damage"] >= info["damage_default"]
        assert _same(aggregator.state_dict(), state)
        # The default's damage, recomputed independently from the attack's ordinary round.
        if seed < 2:
            seen = rows
            crafted = atk(seen, n=n, f=2, generator=torch_generator(0, Stream.ATTACK, seed + 1))
            benign = rows[[i for i in range(n) if i not in malicious]]
            expected = damage(
                aggregator,
                benign,
                crafted.updates,
                malicious,
                torch.full((n,), 10.0),
                list(range(n)),
            )
            assert info["damage_default"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_a_randomised_rule_draws_the_same_numbers_with_and_without_the_search() -> None:
    rows = torch.randn(10, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plain, searched = aggregators.build("flame", seed=3), aggregators.build("flame", seed=3)
    _stage(build_attack("ipm"), searched, [0, 1])(_updates(rows), 1)
    a = plain(rows, torch.ones(10), list(range(10)))
    b = searched(rows, torch.ones(10), list(range(10)))
    assert torch.equal(a.update, b.update)


def test_outside_the_window_the_stage_changes_nothing() -> None:
    stage = AdversaryStage(
        build_attack("ipm"), frozenset({0}), "own", 0, active=lambda r: 2 <= r <= 3
    )
    updates = _updates(ROUND)
    assert stage(updates, 1).updates == updates and stage(updates, 1).info == {}
    assert stage(updates, 4).info == {}
    assert stage(updates, 2).updates[0].update.item() == pytest.approx(-0.3)


@pytest.mark.parametrize("attack", ["sign_flip", "gaussian", "scaling"])
@pytest.mark.parametrize("rule", ["median", "krum", "centered_clipping"])
def test_update_attacks_run_by_the_stage_never_do_less_than_their_default(
    attack: str, rule: str
) -> None:
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        rows = torch.randn(9, 4, generator=g, dtype=torch.float64) + 1.0
        aggregator = aggregators.build(rule, **({"f": 2} if rule == "krum" else {}))
        stage = _stage(ServerSideUpdate(build_attack(attack)), aggregator, [2, 5])
        out = stage(_updates(rows), seed + 1)
        info = out.info
        assert info["damage"] >= info["damage_default"] and info["strength_key"] in info
        if attack == "sign_flip":  # −τ·(own honest update), the others untouched
            assert torch.allclose(out.updates[2].update, -info["scale"] * rows[2])
        assert torch.equal(out.updates[0].update, rows[0])


def test_the_gaussian_noise_is_the_same_for_every_strength_in_a_round() -> None:
    tunable = ServerSideUpdate(build_attack("gaussian")).prepare(
        torch.zeros(2, 3, dtype=torch.float64), n=5, f=2, generator=torch.Generator()
    )
    assert torch.allclose(tunable.craft(2.0), 2.0 * tunable.craft(1.0))
    assert not torch.equal(tunable.craft(1.0)[0], tunable.craft(1.0)[1])

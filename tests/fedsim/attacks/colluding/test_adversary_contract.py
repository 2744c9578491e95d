import pytest
import torch

from fedsim.attacks import attack_names, build_attack
from fedsim.attacks.colluding.base import CraftedUpdates
from fedsim.distances import pairwise_sq_distances
from fedsim.errors import InvalidSettingError

COLLUDING = ["alie", "fang", "ipm", "mimic", "min_max", "min_sum"]
SETTINGS = {"fang": [{"target_rule": "krum"}, {"target_rule": "median"}]}


def _observed(seed=0, k=8, d=20):
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_all_colluding_attacks_are_registered():
    names = attack_names()
    assert all(name in names for name in COLLUDING)
    colluding = {n for n in names if build_attack(n, **_params(n)).stage == "colluding"}
    assert colluding == set(COLLUDING)


def _params(name):
    return {"num_classes": 10} if name == "label_flip" else {}


@pytest.mark.parametrize(
    "name, params",
    [(n, p) for n in COLLUDING for p in SETTINGS.get(n, [{}])],
)
def test_deterministic_given_the_seed_and_well_formed(name, params):
    attack = build_attack(name, **params)
    u = _observed()
    a = attack(u, n=11, f=3, generator=torch.Generator().manual_seed(7))
    b = attack(u, n=11, f=3, generator=torch.Generator().manual_seed(7))
    assert isinstance(a, CraftedUpdates)
    assert a.updates.shape == (3, 20) and a.updates.dtype == torch.float64
    assert torch.equal(a.updates, b.updates) and a.info == b.info
    assert torch.isfinite(a.updates).all()


@pytest.mark.parametrize("name", COLLUDING)
def test_observed_is_not_modified_and_float32_is_accepted(name):
    u = _observed().to(torch.float32)
    before = u.clone()
    out = build_attack(name)(u, n=11, f=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(u, before) and out.updates.dtype == torch.float64


@pytest.mark.parametrize(
    "observed, message",
    [
        (torch.zeros(3), r"\(k, d\) matrix"),
        (torch.zeros(0, 3), r"\(k, d\) matrix"),
        (torch.tensor([[0.0, float("inf")]]), "NaN/Inf"),
    ],
)
def test_bad_observed_updates_raise(observed, message):
    with pytest.raises(InvalidSettingError, match=message):
        build_attack("ipm")(observed, n=5, f=1, generator=torch.Generator())


def test_pairwise_sq_distances_are_exact_for_large_offsets():
    base = torch.full((3, 1000), 1e4, dtype=torch.float64)
    base[1, 0] += 1e-3
    base[2, 1] += 2e-3
    sq = pairwise_sq_distances(base)
    assert sq[0, 0] == 0.0 and sq[0, 1] == pytest.approx(1e-6, rel=1e-6)
    assert sq[1, 2] == pytest.approx(1e-6 + 4e-6, rel=1e-6)

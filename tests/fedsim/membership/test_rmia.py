import numpy as np
import pytest

from fedsim.errors import InvalidSettingError
from fedsim.membership import rmia_scores


def brute_force(tx, rx, tz, rz, gamma, a):
    def marginal(ref):
        mean = ref.mean(axis=0)
        return mean if a is None else 0.5 * ((1 + a) * mean + (1 - a))

    px, pz = marginal(rx), marginal(rz)
    scores = []
    for i in range(tx.size):
        lr = [(tx[i] / px[i]) / (tz[j] / pz[j]) for j in range(tz.size)]
        scores.append(np.mean([value >= gamma for value in lr]))
    return np.array(scores)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("a", [None, 0.3, 1.0])
def test_vectorised_equals_pairwise_definition(gamma, a):
    rng = np.random.default_rng(0)
    tx, rx = rng.uniform(0.01, 1, 40), rng.uniform(0.01, 1, (6, 40))
    tz, rz = rng.uniform(0.01, 1, 70), rng.uniform(0.01, 1, (6, 70))

    scores = rmia_scores(tx, rx, tz, rz, gamma=gamma, offline_a=a)

    np.testing.assert_array_equal(scores, brute_force(tx, rx, tz, rz, gamma, a))


def test_hand_computed_offline_correction():
    # Pr_out(x) = 0.4, a = 0.5: Pr(x) = (1.5 * 0.4 + 0.5) / 2 = 0.55, r(x) = 0.66 / 0.55 = 1.2
    # Pr_out(z) = [0.2, 0.6]: Pr(z) = [0.4, 0.7], r(z) = [0.4 / 0.4, 1.0 / 0.7] = [1.0, 1.43]
    # LR(x, z) = [1.2, 0.84]
    args = ([0.66], [[0.4]], [0.4, 1.0], [[0.2, 0.6]])

    assert rmia_scores(*args, offline_a=0.5).tolist() == [0.5]
    assert rmia_scores(*args, offline_a=0.5, gamma=0.8).tolist() == [1.0]
    assert rmia_scores(*args, offline_a=0.5, gamma=1.3).tolist() == [0.0]


def test_members_outscore_non_members_when_the_target_fits_them():
    rng = np.random.default_rng(1)
    base_x, base_z = rng.uniform(0.2, 0.6, 100), rng.uniform(0.2, 0.6, 200)
    rx, rz = base_x + rng.normal(0, 0.02, (8, 100)), base_z + rng.normal(0, 0.02, (8, 200))
    members = np.arange(100) < 50
    tx = np.clip(base_x + 0.3 * members, 0, 1)  # the target is confident on its members

    scores = rmia_scores(tx, np.clip(rx, 0, 1), base_z, np.clip(rz, 0, 1))

    assert scores[members].min() > scores[~members].max()


def test_zero_probabilities_are_floored():
    scores = rmia_scores([0.0, 0.5], [[0.5, 0.5]], [0.5], [[0.0]])
    assert np.all(np.isfinite(scores))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": 0.0}, "gamma > 0"),
        ({"offline_a": 1.5}, "offline_a <= 1"),
        ({"target_x": [1.5]}, r"probabilities in \[0, 1\]"),
        ({"reference_x": [[0.5, 0.5]]}, r"shape \(R >= 1, 1\)"),
        ({"reference_z": [[0.5], [0.5]]}, "same reference models"),
        ({"target_z": [], "reference_z": np.zeros((1, 0))}, "population sample"),
    ],
)
def test_invalid_inputs(kwargs, match):
    args = {"target_x": [0.5], "reference_x": [[0.5]], "target_z": [0.5], "reference_z": [[0.5]]}
    args.update(kwargs)
    with pytest.raises(InvalidSettingError, match=match):
        rmia_scores(**args)

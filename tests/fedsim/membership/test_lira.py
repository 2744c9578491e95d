import numpy as np
import pytest
from scipy.stats import norm

from fedsim.errors import InvalidSettingError
from fedsim.membership import lira_offline, lira_online, reference_masks, roc_auc


@pytest.fixture
def references():
    rng = np.random.default_rng(0)
    n, r = 6, 8
    mask = reference_masks(r, n, seed=1)
    ref = rng.normal(size=(r, n)) + 2.0 * mask  # in-models are confident
    target = rng.normal(size=n) + 1.0
    return target, ref, mask


def test_online_matches_per_example_gaussian_fit(references):
    target, ref, mask = references

    scores = lira_online(target, ref, mask)

    # Assert: a plain loop over examples, float64, ddof=0 stds
    for i in range(target.size):
        ins, outs = ref[mask[:, i], i], ref[~mask[:, i], i]
        expected = norm.logpdf(target[i], ins.mean(), ins.std()) - norm.logpdf(
            target[i], outs.mean(), outs.std()
        )
        assert scores[i] == pytest.approx(expected, rel=1e-12)


def test_online_global_variance_pools_within_example_deviations(references):
    target, ref, mask = references

    scores = lira_online(target, ref, mask, fix_variance=True)

    dev_in = np.concatenate([ref[mask[:, i], i] - ref[mask[:, i], i].mean() for i in range(6)])
    dev_out = np.concatenate([ref[~mask[:, i], i] - ref[~mask[:, i], i].mean() for i in range(6)])
    sd_in, sd_out = np.sqrt(np.mean(dev_in**2)), np.sqrt(np.mean(dev_out**2))
    for i in range(target.size):
        mu_in, mu_out = ref[mask[:, i], i].mean(), ref[~mask[:, i], i].mean()
        expected = norm.logpdf(target[i], mu_in, sd_in) - norm.logpdf(target[i], mu_out, sd_out)
        assert scores[i] == pytest.approx(expected, rel=1e-12)


def test_offline_is_the_one_sided_tail_of_the_out_fit(references):
    target, ref, mask = references

    scores = lira_offline(target, ref, mask)
    fixed = lira_offline(target, ref, mask, fix_variance=True)

    for i in range(target.size):
        outs = ref[~mask[:, i], i]
        z = (target[i] - outs.mean()) / outs.std()
        assert scores[i] == pytest.approx(-np.log(norm.sf(z)), rel=1e-10)
    # it ranks as the CDF of the out-Gaussian does (the paper's 1 - Pr[Z > phi])
    cdf = np.array(
        [
            norm.cdf(target[i], ref[~mask[:, i], i].mean(), ref[~mask[:, i], i].std())
            for i in range(target.size)
        ]
    )
    assert np.argsort(scores).tolist() == np.argsort(cdf).tolist()
    assert not np.allclose(scores, fixed)


def test_offline_stays_finite_far_in_the_tail():
    ref = np.array([[0.0], [2.0]])
    score = lira_offline([60.0], ref, [[False], [False]])  # 59 sigmas above the out-mean
    assert np.isfinite(score[0]) and score[0] > 1000


def test_synthetic_members_are_separated():
    # Prepare: phi ~ N(3, 1) for in-references and members, N(0, 1) otherwise
    rng = np.random.default_rng(3)
    n, r = 400, 16
    mask = reference_masks(r, n, seed=4)
    ref = rng.normal(size=(r, n)) + 3.0 * mask
    members = np.arange(n) < n // 2
    target = rng.normal(size=n) + 3.0 * members

    assert roc_auc(lira_online(target, ref, mask), members) > 0.95
    assert roc_auc(lira_offline(target, ref, mask, fix_variance=True), members) > 0.95


def test_too_few_references_name_the_fix():
    mask = np.array([[True, True], [False, False]])  # one in and one out per example
    ref = np.zeros((2, 2))

    with pytest.raises(InvalidSettingError, match="fix_variance=True"):
        lira_online([0.0, 0.0], ref, mask)
    assert np.all(np.isfinite(lira_online([0.0, 1.0], ref + mask, mask, fix_variance=True)))
    with pytest.raises(InvalidSettingError, match="out-reference"):
        lira_offline([0.0, 0.0], ref, np.ones((2, 2), bool), fix_variance=True)


def test_shape_mismatches():
    with pytest.raises(InvalidSettingError, match="equal shapes"):
        lira_online([0.0, 0.0], np.zeros((4, 2)), np.zeros((4, 3), bool))
    with pytest.raises(InvalidSettingError, match="at least one target"):
        lira_online(np.zeros(0), np.zeros((4, 0)), np.zeros((4, 0), bool), fix_variance=True)
    with pytest.raises(InvalidSettingError, match=r"shape \(R, 3\)"):
        lira_online([0.0, 0.0, 0.0], np.zeros((4, 2)), np.zeros((4, 2), bool))

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from fedsim.errors import InvalidSettingError
from fedsim.membership import (
    balanced_accuracy,
    membership_metrics,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)

SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
MEMBERS = [1, 1, 0, 1, 0, 0]


def test_roc_curve_hand_computed():
    curve = roc_curve(SCORES, MEMBERS)

    assert curve.thresholds.tolist() == [np.inf, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    assert curve.true_positives.tolist() == [0, 1, 2, 2, 3, 3, 3]
    assert curve.false_positives.tolist() == [0, 0, 0, 1, 1, 2, 3]
    assert curve.n_members == 3 and curve.n_non_members == 3
    assert roc_auc(SCORES, MEMBERS) == pytest.approx(8 / 9)  # 8 of 9 (member, non-member) pairs
    assert balanced_accuracy(SCORES, MEMBERS) == pytest.approx(5 / 6)  # TPR 2/3 at FPR 0
    assert tpr_at_fpr(SCORES, MEMBERS, 0.0) == pytest.approx(2 / 3)
    assert tpr_at_fpr(SCORES, MEMBERS, 1 / 3) == pytest.approx(1.0)


def test_ties_are_never_split():
    # Prepare: a member and a non-member tie at 2
    scores, members = [3.0, 2.0, 2.0, 1.0], [True, True, False, False]

    curve = roc_curve(scores, members)

    # Assert: one point for the tied group; TPR at FPR 0 reads the point before the tie
    assert curve.fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert curve.tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert tpr_at_fpr(scores, members, 0.0) == 0.5
    assert tpr_at_fpr(scores, members, 0.49) == 0.5  # no interpolation through the tie
    assert roc_auc(scores, members) == pytest.approx(0.875)  # the tied pair counts 1/2


def test_tpr_at_low_fpr_hand_computed():
    # Prepare: 1000 non-members scored 0..999; 10 members above all, 20 just below the top 4
    # non-members, 70 below everything
    non_members = np.arange(1000.0)
    members = np.r_[np.full(10, 2000.0), np.full(20, 995.5), np.full(70, -1.0)]
    scores = np.r_[members, non_members]
    labels = np.r_[np.ones(100, bool), np.zeros(1000, bool)]

    metrics = membership_metrics(scores, labels)

    # Assert: FPR <= 1% allows 10 false positives (30 members above them); 0.1% allows 1
    assert metrics.tpr_at_fpr_0_01 == pytest.approx(0.3)
    assert metrics.tpr_at_fpr_0_001 == pytest.approx(0.1)
    assert tpr_at_fpr(scores, labels, 0.01) == metrics.tpr_at_fpr_0_01
    assert metrics.n_members == 100 and metrics.n_non_members == 1000


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.4
    scores = rng.integers(0, 20, 300) + 3 * labels  # many ties, some signal

    curve = roc_curve(scores, labels)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(labels, scores, drop_intermediate=False)

    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    np.testing.assert_allclose(curve.fpr, sk_fpr)
    np.testing.assert_allclose(curve.tpr, sk_tpr)
    np.testing.assert_allclose(curve.thresholds[1:], sk_thr[1:])
    # the largest TPR at FPR <= 10 %, read off sklearn's points
    assert tpr_at_fpr(scores, labels, 0.1) == sk_tpr[sk_fpr <= 0.1].max()


def test_perfect_and_inverted_attacks():
    labels = np.r_[np.ones(5, bool), np.zeros(5, bool)]
    perfect = np.r_[np.arange(10.0, 15.0), np.arange(5.0)]

    good = membership_metrics(perfect, labels)
    bad = membership_metrics(-perfect, labels)

    assert (good.auc, good.tpr_at_fpr_0_001, good.balanced_accuracy) == (1.0, 1.0, 1.0)
    assert (bad.auc, bad.tpr_at_fpr_0_01, bad.balanced_accuracy) == (0.0, 0.0, 0.5)
    assert set(good.as_metrics()) == {
        "mia_auc",
        "mia_tpr_at_fpr_0.01",
        "mia_tpr_at_fpr_0.001",
        "mia_balanced_accuracy",
    }


def test_torch_inputs_are_accepted():
    torch = pytest.importorskip("torch")
    scores = torch.tensor(SCORES, requires_grad=True)
    assert roc_auc(scores, torch.tensor(MEMBERS).bool()) == pytest.approx(8 / 9)


@pytest.mark.parametrize(
    ("scores", "members", "match"),
    [
        ([1.0, 2.0], [1, 1], "at least one member and one non-member"),
        ([1.0, 2.0], [0, 0], "at least one member and one non-member"),
        ([1.0, 2.0, 3.0], [1, 0], "equal shapes"),
        ([1.0, np.nan], [1, 0], "finite scores"),
        ([1.0, 2.0], [2, 0], "booleans"),
        ([[1.0, 2.0]], [[1, 0]], "1 dimension"),
    ],
)
def test_invalid_inputs(scores, members, match):
    with pytest.raises(InvalidSettingError, match=match):
        roc_auc(scores, members)


@pytest.mark.parametrize("max_fpr", [-0.1, 1.5, True, "0.01"])
def test_invalid_max_fpr(max_fpr):
    with pytest.raises(InvalidSettingError, match="max_fpr in"):
        tpr_at_fpr(SCORES, MEMBERS, max_fpr)

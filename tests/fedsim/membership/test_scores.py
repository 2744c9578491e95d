import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedsim.errors import InvalidSettingError
from fedsim.membership import logit_confidence, loss_score, true_label_probability


@pytest.fixture
def logits_and_labels():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(50, 10, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 10, (50,), generator=generator)
    return logits, labels


def test_loss_score_is_minus_cross_entropy(logits_and_labels):
    logits, labels = logits_and_labels

    expected = -F.cross_entropy(logits, labels, reduction="none")

    np.testing.assert_allclose(loss_score(logits, labels), expected.numpy(), rtol=1e-12)


def test_logit_confidence_is_log_odds_of_true_label(logits_and_labels):
    logits, labels = logits_and_labels
    p = torch.softmax(logits, dim=1)[torch.arange(50), labels].numpy()

    np.testing.assert_allclose(logit_confidence(logits, labels), np.log(p / (1 - p)), rtol=1e-9)
    np.testing.assert_allclose(true_label_probability(logits, labels), p, rtol=1e-12)


def test_logit_confidence_hand_computed_and_stable():
    # p_y = e^2 / (e^2 + 2): log-odds = 2 - log 2; with z_y = 1000, p_y rounds to 1 in float64
    phi = logit_confidence(np.array([[2.0, 0.0, 0.0], [1000.0, 0.0, 0.0]]), np.array([0, 0]))

    assert phi[0] == pytest.approx(2 - math.log(2))
    assert phi[1] == pytest.approx(1000 - math.log(2))
    assert loss_score([[0.0, 0.0]], [1])[0] == pytest.approx(-math.log(2))


def test_accepts_tensors_that_require_grad(logits_and_labels):
    logits, labels = logits_and_labels
    scores = loss_score(logits.float().requires_grad_(True), labels)
    assert scores.dtype == np.float64 and scores.shape == (50,)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([0, 3]), r"labels in \[0, 3\)"),
        (np.array([0.0, 1.0]), "integer labels"),
        (np.array([0, 1, 2]), "one label per row"),
        (np.array([-1, 0]), r"labels in \[0, 3\)"),
    ],
)
def test_invalid_labels(labels, match):
    with pytest.raises(InvalidSettingError, match=match):
        loss_score(np.zeros((2, 3)), labels)


def test_lira_needs_two_classes():
    with pytest.raises(InvalidSettingError, match="at least 2 classes"):
        logit_confidence(np.zeros((2, 1)), np.array([0, 0]))

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.membership import (
    client_level_scores,
    example_gradients,
    gradient_norm_score,
    roc_auc,
    update_cosine_score,
)


def cosine(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))


def test_update_cosine_matches_a_plain_loop():
    generator = torch.Generator().manual_seed(0)
    updates = torch.randn(3, 7, generator=generator)
    grads = torch.randn(3, 5, 7, generator=generator)
    grads[1, 2] = 0.0  # a zero gradient has cosine 0

    scores = update_cosine_score(updates, grads)
    from_list = update_cosine_score(list(updates), grads)

    u, g = updates.double().numpy(), grads.double().numpy()
    expected = [np.mean([cosine(-g[t, i], u[t]) for t in range(3)]) for i in range(5)]
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    np.testing.assert_array_equal(scores, from_list)


def test_gradient_norm_score_hand_computed():
    grads = torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[6.0, 8.0], [1.0, 0.0]]])
    np.testing.assert_allclose(gradient_norm_score(grads), [-7.5, -0.5])


def test_client_level_scores_use_each_candidates_mean_gradient():
    generator = torch.Generator().manual_seed(1)
    updates = torch.randn(2, 4, generator=generator)
    a = torch.randn(2, 3, 4, generator=generator)
    b = torch.randn(2, 5, 4, generator=generator)

    scores = client_level_scores(updates, [a, b])

    expected = [
        update_cosine_score(updates, c.double().mean(dim=1, keepdim=True))[0] for c in (a, b)
    ]
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_example_gradients_match_autograd_one_by_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])

    grads = example_gradients(model, x, y)

    for i in range(6):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        flat = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(grads[i], flat)


def test_curious_server_separates_members_after_sgd_rounds():
    # Prepare: a client trains a linear model on 10 of 20 candidates, one full-batch SGD step
    # per round; the server sees the update and the global model each round
    torch.manual_seed(0)
    model = nn.Linear(30, 4).double()
    x = torch.randn(20, 30, dtype=torch.float64)
    y = torch.randint(0, 4, (20,))
    members = np.arange(20) < 10
    updates, grads = [], []
    for _ in range(3):
        grads.append(example_gradients(model, x, y))  # server: candidates at the global model
        before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        model.zero_grad()
        F.cross_entropy(model(x[:10]), y[:10]).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
        after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        updates.append(after - before)

    scores = update_cosine_score(updates, torch.stack(grads))

    # Assert: in 150 dimensions members' gradients make up the update; non-members' do not
    assert roc_auc(scores, members) == 1.0
    assert scores[members].min() > 0.1


@pytest.mark.parametrize(
    ("updates", "grads", "match"),
    [
        (torch.zeros(2, 3), torch.zeros(2, 4, 5), r"gradients of shape \(2, n, 3\)"),
        (torch.zeros(2, 3), torch.zeros(3, 4, 3), r"gradients of shape \(2, n, 3\)"),
        (torch.zeros(3), torch.zeros(1, 4, 3), r"\(T, d\) updates"),
        ([], torch.zeros(1, 4, 3), "at least one round"),
        (torch.zeros(1, 3), torch.zeros(4, 3), r"\(T, n, d\) gradients"),
        (torch.full((1, 3), float("nan")), torch.zeros(1, 4, 3), "finite updates"),
    ],
)
def test_invalid_shapes(updates, grads, match):
    with pytest.raises(InvalidSettingError, match=match):
        update_cosine_score(updates, grads)


def test_client_level_needs_candidates():
    with pytest.raises(InvalidSettingError, match="at least one candidate"):
        client_level_scores(torch.zeros(1, 3), [])

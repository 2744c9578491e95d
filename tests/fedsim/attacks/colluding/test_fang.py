import math

import numpy as np
import pytest
import torch

from fedsim.attacks.colluding.fang import Fang
from fedsim.errors import InvalidSettingError


def _krum(rows, f):
    """Independent Krum: argmin of the sum of the n-f-2 smallest squared distances."""
    n = len(rows)
    scores = []
    for i in range(n):
        d = sorted(float(np.sum((rows[i] - rows[j]) ** 2)) for j in range(n) if j != i)
        scores.append(sum(d[: n - f - 2]))
    return int(np.argmin(scores))


def test_median_variant_stays_on_the_wrong_side_per_coordinate():
    # columns: mean > 0 & w_min > 0 | mean > 0 & w_min < 0
    #          mean < 0 & w_max > 0 | mean < 0 & w_max < 0
    u = torch.tensor(
        [[1.0, -1.0, -3.0, -3.0], [2.0, 2.0, -2.0, -2.0], [3.0, 3.0, 1.0, -1.0]],
        dtype=torch.float64,
    )
    out = Fang("median")(u, n=60, f=50, generator=torch.Generator().manual_seed(0))
    m = out.updates
    assert m.shape == (50, 4)
    low = torch.tensor([0.5, -2.0, 1.0, -1.0], dtype=torch.float64)
    high = torch.tensor([1.0, -1.0, 2.0, -0.5], dtype=torch.float64)
    assert torch.all(m >= low) and torch.all(m <= high)
    assert torch.all(m.std(dim=0) > 0.05)  # drawn, not constant
    assert out.info == {"target_rule": "median", "b": 2.0}


def test_median_variant_pushes_the_coordinate_median_the_wrong_way():
    g = torch.Generator().manual_seed(1)
    benign = torch.randn(7, 30, generator=g, dtype=torch.float64) + 0.5 * torch.sign(
        torch.randn(30, generator=g, dtype=torch.float64)
    )
    out = Fang("trimmed_mean")(benign, n=10, f=3, generator=g)
    s = torch.sign(benign.mean(dim=0))
    before = benign.median(dim=0).values
    after = torch.cat([benign, out.updates]).quantile(0.5, dim=0)
    assert torch.all(s * (after - before) < 0)


def test_median_and_trimmed_mean_variants_agree_and_are_seeded():
    u = torch.randn(5, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = Fang("median")(u, n=8, f=3, generator=torch.Generator().manual_seed(3)).updates
    b = Fang("trimmed_mean")(u, n=8, f=3, generator=torch.Generator().manual_seed(3)).updates
    c = Fang("median")(u, n=8, f=3, generator=torch.Generator().manual_seed(4)).updates
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_krum_variant_makes_krum_pick_a_malicious_update():
    g = torch.Generator().manual_seed(0)
    k, f, d = 8, 3, 50
    benign = 0.1 + torch.randn(k, d, generator=g, dtype=torch.float64)
    out = Fang("krum")(benign, n=k + f, f=f, generator=g)
    lam = out.info["lambda"]
    assert out.info["selected"]
    s = torch.sign(benign.mean(dim=0))
    assert torch.equal(out.updates, (-lam * s).expand(f, -1))
    rows = np.concatenate([benign.numpy(), out.updates.numpy()])
    assert _krum(rows, f) >= k
    # lambda is the paper's upper bound halved a whole number of times
    halvings = math.log2(out.info["lambda_upper"] / lam)
    assert halvings == pytest.approx(round(halvings), abs=1e-9)


def test_krum_upper_bound_by_hand():
    benign = torch.tensor(
        [[1.0, -1.0], [-1.0, 1.5], [2.0, 1.0], [-0.5, -1.5], [0.5, 2.0]], dtype=torch.float64
    )
    n, f = 7, 2
    a = benign.numpy()
    dist = [[float(np.linalg.norm(x - y)) for y in a] for x in a]
    near = min(sum(sorted(r[:i] + r[i + 1 :])[: n - f - 2]) for i, r in enumerate(dist))
    largest = max(np.linalg.norm(a, axis=1))
    expected = near / ((n - 2 * f - 1) * math.sqrt(2)) + largest / math.sqrt(2)
    out = Fang("krum")(benign, n=n, f=f, generator=torch.Generator())
    assert out.info["lambda_upper"] == pytest.approx(expected, rel=1e-12)
    assert out.info["selected"]
    assert _krum(np.concatenate([a, out.updates.numpy()]), f) >= 5


def test_krum_variant_reports_failure_on_tight_clusters():
    benign = torch.tensor(
        [[1.0, 1.0], [1.01, 0.99], [0.99, 1.01], [1.0, 1.02], [1.02, 1.0]], dtype=torch.float64
    )
    out = Fang("krum", lambda_min=1e-3)(benign, n=7, f=2, generator=torch.Generator())
    assert not out.info["selected"] and out.info["lambda"] < 1e-3


def test_krum_variant_needs_krums_precondition():
    with pytest.raises(InvalidSettingError, match="n ≥ 2f\\+3"):
        Fang("krum")(torch.zeros(4, 2, dtype=torch.float64), n=6, f=2, generator=torch.Generator())


@pytest.mark.parametrize(
    "params, message",
    [
        ({"target_rule": "bulyan"}, "target_rule"),
        ({"b": 1.0}, "b > 1"),
        ({"lambda_min": 0}, "lambda_min"),
    ],
)
def test_invalid_settings(params, message):
    with pytest.raises(InvalidSettingError, match=message):
        Fang(**params)

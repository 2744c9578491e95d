"""Batched DP-SGD (nested vmap) against Opacus on the same inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer

from fedsim.models import build_model
from fedsim.params import flat_params, load_flat_params
from fedsim.privacy import train_dp_sgd
from fedsim.training import TrainSettings
from fedsim.vectorized import DPSettings, LocalTask, train_clients_vectorized
from fedsim.vectorized.plan import build_plan
from fedsim.vectorized.steps import clipped_grad_sum, stack_params


def data(sizes: list[int], seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))
        for n in sizes
    ]


def opacus_clipped_sum(
    model: torch.nn.Module, weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor, clip: float
) -> torch.Tensor:
    """Σ_i clip(g_i) as Opacus' DPOptimizer accumulates it (σ = 0), flattened."""
    load_flat_params(model, weights)
    gsm = GradSampleModule(model, loss_reduction="mean", strict=True)
    try:
        optimizer = DPOptimizer(
            torch.optim.SGD(model.parameters(), lr=1.0),
            noise_multiplier=0.0,
            max_grad_norm=clip,
            expected_batch_size=len(y),
            loss_reduction="mean",
        )
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(gsm(x), y).backward()
        optimizer.clip_and_accumulate()
        summed = torch.cat([p.summed_grad.detach().reshape(-1) for p in model.parameters()])
        norms = torch.stack(
            [p.grad_sample.reshape(len(y), -1).norm(dim=1) for p in model.parameters()], 1
        ).norm(dim=1)
    finally:
        gsm.to_standard_module()
        for p in model.parameters():
            p.grad = None
            if hasattr(p, "summed_grad"):
                del p.summed_grad
    return summed, norms


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_per_sample_clipped_sums_match_opacus() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10, width=8)
    sizes, width, clip = [6, 4, 1], 6, 11.5  # per-sample norms here are 9..13
    clients = data(sizes)
    start = flat_params(model)
    weights = torch.stack([start, start + 0.05, start - 0.05])  # every client its own params
    x = torch.zeros(3, width, 1, 8, 8)
    y = torch.zeros(3, width, dtype=torch.long)
    w = torch.zeros(3, width)
    for k, (xk, yk) in enumerate(clients):  # padding slots hold zeros and weight 0
        x[k, : len(yk)], y[k, : len(yk)], w[k, : len(yk)] = xk, yk, 1.0
    summed, losses = clipped_grad_sum(model, stack_params(model, weights), x, y, w, clip)
    flat = torch.cat([g.reshape(3, -1) for g in summed.values()], dim=1)
    clipped = unclipped = 0
    for k, (xk, yk) in enumerate(clients):
        expected, norms = opacus_clipped_sum(model, weights[k], xk, yk, clip)
        assert torch.allclose(flat[k], expected, atol=1e-6, rtol=1e-5), (
            (flat[k] - expected).abs().max()
        )
        reference = F.cross_entropy(model(xk), yk, reduction="none").detach()
        assert torch.allclose(losses[k, : len(yk)], reference, atol=1e-6)
        clipped += int((norms > clip).sum())
        unclipped += int((norms <= clip).sum())
    assert clipped > 0 and unclipped > 0  # both branches of the clip factor were exercised


@pytest.mark.parametrize(
    ("poisson", "sigma", "batch_size", "dtype"),
    [
        (True, 0.0, 4, torch.float32),
        (True, 1.3, 4, torch.float32),
        (False, 1.3, 4, torch.float32),
        (True, 0.7, 1, torch.float32),  # B = 1: many empty Poisson batches (noise-only steps)
        (True, 1.3, 4, torch.float64),  # no rounding noise: equal to ~1e-12
    ],
)
@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_dp_sgd_matches_opacus_including_its_noise(
    poisson: bool, sigma: float, batch_size: int, dtype: torch.dtype
) -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10, width=8).to(dtype)
    start = flat_params(model)
    atol = 1e-6 if dtype == torch.float32 else 1e-12
    settings = TrainSettings(
        epochs=2, batch_size=batch_size, lr=0.1, momentum=0.5, weight_decay=1e-3
    )
    dp = DPSettings(max_grad_norm=0.7, poisson_sampling=poisson)
    clients = [(x.to(dtype), y) for x, y in data([30, 17, 9])]
    tasks = [
        LocalTask(start, x, y, torch.Generator().manual_seed(10 + i), noise_multiplier=sigma)
        for i, (x, y) in enumerate(clients)
    ]
    outcomes = train_clients_vectorized(model, tasks, settings, dp=dp, chunk_size=2)
    for i, (x, y) in enumerate(clients):
        load_flat_params(model, start)
        result = train_dp_sgd(
            model,
            x,
            y,
            TrainSettings(2, batch_size, 0.1, 0.5, 1e-3),
            DPSettings(0.7, poisson),
            noise_multiplier=sigma,
            generator=torch.Generator().manual_seed(10 + i),
        )
        out = outcomes[i]
        expected = flat_params(model)
        assert out.weights.dtype == dtype
        assert torch.allclose(out.weights, expected, atol=atol, rtol=0), (
            (out.weights - expected).abs().max()
        )
        assert out.result.steps == result.steps and out.result.num_examples == len(y)
        if math.isnan(result.loss):
            assert math.isnan(out.result.loss)
        else:
            assert out.result.loss == pytest.approx(result.loss, rel=1e-5)


def test_noise_is_gaussian_per_client_and_reproducible() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10, width=8)
    shapes = [p.shape for p in model.parameters()]
    settings = TrainSettings(epochs=1, batch_size=5, lr=0.1)
    sigma, clip = 2.0, 0.5
    clients = data([100, 100])

    def plan(seed: int, sigma: float = sigma):  # noqa: ANN202
        tasks = [
            LocalTask(torch.zeros(1), x, y, torch.Generator().manual_seed(seed + i), sigma)
            for i, (x, y) in enumerate(clients)
        ]
        return build_plan(tasks, settings, dp=DPSettings(clip), param_shapes=shapes)

    noise = plan(0).noise
    assert noise is not None and noise.shape == (2, 20, sum(math.prod(s) for s in shapes))
    values = noise.reshape(2, -1).double()
    n = values.shape[1]
    for row in values:  # N(0, (σC)²): mean within 5 standard errors, std within 2%
        assert abs(float(row.mean())) < 5 * sigma * clip / math.sqrt(n)
        assert float(row.std()) == pytest.approx(sigma * clip, rel=0.02)
    assert abs(float(torch.corrcoef(values)[0, 1])) < 5 / math.sqrt(n)  # independent clients
    assert torch.equal(plan(0).noise, noise)  # the same seeds, the same noise
    assert not torch.equal(plan(1).noise, noise)
    assert plan(0, sigma=0.0).noise is None  # σ = 0: no draws at all, as in Opacus

"""Batched local SGD (fedsim.vectorized) against train_local, client by client."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.data.transforms import RandomCropFlip
from fedsim.errors import InvalidSettingError, RunError
from fedsim.models import MODELS, build_model
from fedsim.params import flat_params, load_flat_params
from fedsim.training import TrainSettings, train_local
from fedsim.vectorized import LocalTask, memory, train_clients_vectorized, unsupported_reason
from fedsim.vectorized.plan import build_plan

SETTINGS = TrainSettings(epochs=2, batch_size=16, lr=0.05, momentum=0.9, weight_decay=1e-3)


def client_data(sizes: list[int], shape: tuple[int, ...] = (1, 8, 8)) -> list[tuple]:
    g = torch.Generator().manual_seed(42)
    return [
        (torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g))
        for n in sizes
    ]


def alone(model: nn.Module, start: torch.Tensor, x, y, settings, seed: int, augment=None):  # noqa: ANN001, ANN201
    """What train_local makes of one client; also the generator's next draw afterwards."""
    load_flat_params(model, start)
    generator = torch.Generator().manual_seed(seed)
    result = train_local(model, x, y, settings, generator, augment)
    return flat_params(model), result, torch.rand(1, generator=generator)


@pytest.mark.parametrize("chunk_size", [1, 2, None])
def test_unequal_clients_match_train_local(chunk_size: int | None) -> None:
    # 37 and 150 leave short last batches, 5 is below one batch, 64 divides evenly
    sizes = [37, 150, 5, 64, 100]
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10, width=8)
    start = flat_params(model)
    data = client_data(sizes)
    tasks = [
        LocalTask(start, x, y, torch.Generator().manual_seed(i)) for i, (x, y) in enumerate(data)
    ]
    outcomes = train_clients_vectorized(model, tasks, SETTINGS, chunk_size=chunk_size)
    for i, (x, y) in enumerate(data):
        weights, result, next_draw = alone(model, start, x, y, SETTINGS, seed=i)
        out = outcomes[i]
        assert torch.allclose(out.weights, weights, atol=1e-6, rtol=0), (
            i,
            (out.weights - weights).abs().max(),
        )
        assert out.result.steps == result.steps == 2 * -(-sizes[i] // 16)
        assert out.result.num_examples == sizes[i]
        assert out.result.loss == pytest.approx(result.loss, rel=1e-5)
        assert torch.equal(torch.rand(1, generator=tasks[i].generator), next_draw)  # same draws
        assert not torch.equal(out.weights, start)


def test_in_float64_it_is_train_local_up_to_rounding() -> None:
    # float32 runs differ by ~1e-7 per step (another summation order), which a max-pool or
    # ReLU near-tie can occasionally turn into a visible difference; float64 shows the
    # computation itself is the same
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10, width=8).double()
    start = flat_params(model)
    data = [(x.double(), y) for x, y in client_data([37, 150, 5])]
    tasks = [
        LocalTask(start, x, y, torch.Generator().manual_seed(i)) for i, (x, y) in enumerate(data)
    ]
    outcomes = train_clients_vectorized(model, tasks, SETTINGS, chunk_size=2)
    for i, (x, y) in enumerate(data):
        weights, result, _ = alone(model, start, x, y, SETTINGS, seed=i)
        assert outcomes[i].weights.dtype == torch.float64
        assert torch.allclose(outcomes[i].weights, weights, atol=1e-12, rtol=0)


def test_different_start_weights_per_client() -> None:
    model = build_model("mlp", (1, 8, 8), 10, hidden=16)
    data = client_data([20, 20])
    starts = [flat_params(model), flat_params(model) + 0.1]
    tasks = [
        LocalTask(w, x, y, torch.Generator().manual_seed(7))
        for w, (x, y) in zip(starts, data, strict=True)
    ]
    outcomes = train_clients_vectorized(model, tasks, SETTINGS)
    for out, w, (x, y) in zip(outcomes, starts, data, strict=True):
        weights, _, _ = alone(model, w, x, y, SETTINGS, seed=7)
        assert torch.allclose(out.weights, weights, atol=1e-6, rtol=0)


def test_augmentation_is_drawn_like_train_local() -> None:
    augment = RandomCropFlip(padding=2, fill=(0.0, 0.5, 1.0))
    model = build_model("cnn", (3, 8, 8), 10, width=4, groups=2)
    start = flat_params(model)
    data = client_data([30, 45], shape=(3, 8, 8))
    tasks = [
        LocalTask(start, x, y, torch.Generator().manual_seed(i)) for i, (x, y) in enumerate(data)
    ]
    outcomes = train_clients_vectorized(model, tasks, SETTINGS, augment=augment)
    plain = train_clients_vectorized(model, tasks[:1], SETTINGS)
    for i, (x, y) in enumerate(data):
        weights, result, _ = alone(model, start, x, y, SETTINGS, seed=i, augment=augment)
        assert torch.allclose(outcomes[i].weights, weights, atol=1e-6, rtol=0)
        assert outcomes[i].result.loss == pytest.approx(result.loss, rel=1e-5)
    assert not torch.allclose(plain[0].weights, outcomes[0].weights, atol=1e-4)


MODEL_SHAPES = {"lenet5": (1, 12, 12)}  # lenet5 needs 10×10 or more


# char_lstm / char_transformer read character windows: tests/fedsim/models/test_text.py
@pytest.mark.parametrize("name", [m for m in MODELS.names() if not m.startswith("char_")])
def test_every_registered_model_trains_like_train_local(name: str) -> None:
    shape = MODEL_SHAPES.get(name, (1, 8, 8))
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    assert unsupported_reason(model) is None
    start = flat_params(model)
    settings = TrainSettings(epochs=1, batch_size=4, lr=0.05, momentum=0.9)
    data = client_data([7, 10], shape)
    tasks = [
        LocalTask(start, x, y, torch.Generator().manual_seed(i)) for i, (x, y) in enumerate(data)
    ]
    outcomes = train_clients_vectorized(model, tasks, settings)
    for i, (x, y) in enumerate(data):
        weights, result, _ = alone(model, start, x, y, settings, seed=i)
        assert torch.allclose(outcomes[i].weights, weights, atol=1e-5, rtol=1e-4), name
        assert outcomes[i].result.loss == pytest.approx(result.loss, rel=1e-4)


def test_the_plan_pads_masks_and_drops_finished_clients() -> None:
    data = client_data([40, 20, 5])
    settings = TrainSettings(epochs=1, batch_size=16, lr=0.1)
    tasks = [
        LocalTask(torch.zeros(1), x, y, torch.Generator().manual_seed(i))
        for i, (x, y) in enumerate(data)
    ]
    plan = build_plan(tasks, settings)
    assert plan.steps == [3, 2, 1]
    assert [plan.active(t) for t in range(3)] == [3, 2, 1]
    assert plan.weight.sum(dim=2).tolist() == [[16, 16, 8], [16, 4, 0], [5, 0, 0]]
    assert plan.widths == [16, 16, 8]
    for row, n in enumerate([40, 20, 5]):  # one epoch: every example exactly once
        used = plan.index[row][plan.weight[row] > 0]
        assert sorted(used.tolist()) == list(range(n))
    x, y, w = plan.batch(1)
    assert x.shape == (2, 16, 1, 8, 8) and y.shape == w.shape == (2, 16)
    assert torch.equal(x[1, :4], data[1][0][plan.index[1, 1, :4]])
    with pytest.raises(ValueError, match="longest first"):
        build_plan(tasks[::-1], settings)


class _Frozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)
        self.a.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


class _WithBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), "BatchNorm1d"),
        (nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)), "Dropout"),
        (_Frozen(), "frozen"),
        (_WithBuffer(), "buffer 'count'"),
    ],
)
def test_models_that_cannot_be_stacked_are_refused(model: nn.Module, fragment: str) -> None:
    reason = unsupported_reason(model)
    assert reason is not None and fragment in reason
    task = LocalTask(
        flat_params(model), torch.randn(4, 4), torch.zeros(4, dtype=torch.long), torch.Generator()
    )
    with pytest.raises(InvalidSettingError, match=fragment):
        train_clients_vectorized(model, [task], SETTINGS)


def test_nothing_to_train_and_bad_chunk_sizes() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert train_clients_vectorized(model, [], SETTINGS) == []
    ((x, y),) = client_data([8])
    task = LocalTask(flat_params(model), x, y, torch.Generator())
    with pytest.raises(InvalidSettingError, match="chunk_size"):
        train_clients_vectorized(model, [task], SETTINGS, chunk_size=0)


def test_chunk_size_follows_free_gpu_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_model("cnn", (1, 8, 8), 10)
    sample = torch.zeros(1, 1, 8, 8)
    args = {"num_inputs": 180, "steps": 24}
    cpu = memory.auto_chunk_size(
        model, sample, SETTINGS, dp=False, device=torch.device("cpu"), **args
    )
    assert cpu == memory.CPU_CHUNK_SIZE
    plain = memory.client_bytes(model, sample, SETTINGS, dp=False, **args)
    private = memory.client_bytes(model, sample, SETTINGS, dp=True, **args)
    params = sum(p.numel() for p in model.parameters())
    assert plain > 4 * 6 * params and private > plain + 4 * 2 * SETTINGS.batch_size * params
    cuda = torch.device("cuda")
    for free in (10**6, 10**9, 10**10):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device, free=free: (free, 2 * free))
        size = memory.auto_chunk_size(model, sample, SETTINGS, dp=False, device=cuda, **args)
        assert size == max(1, int(memory.MEMORY_FRACTION * free // plain))
    assert size > 1000  # 10 GB fit thousands of these small clients


def test_out_of_gpu_memory_halves_an_automatic_chunk_and_redraws_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import fedsim.vectorized.train as vt

    real = vt._train_chunk

    def small_gpu(model, tasks, *args):  # noqa: ANN001, ANN002, ANN202
        if len(tasks) > 2:
            for task in tasks:  # the failing chunk has drawn from the generators by now
                torch.randperm(10, generator=task.generator)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, tasks, *args)

    model = build_model("mlp", (1, 8, 8), 10, hidden=16)
    data = client_data([30, 25, 20, 15, 10])

    def tasks() -> list[LocalTask]:
        return [
            LocalTask(flat_params(model), x, y, torch.Generator().manual_seed(i))
            for i, (x, y) in enumerate(data)
        ]

    expected = train_clients_vectorized(model, tasks(), SETTINGS, chunk_size=2)
    monkeypatch.setattr(vt, "_train_chunk", small_gpu)
    got = train_clients_vectorized(model, tasks(), SETTINGS)  # automatic: 16 on the CPU
    assert "out of GPU memory with 5 clients per chunk: using 2" in caplog.text
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a.weights, b.weights) and a.result == b.result
    with pytest.raises(RunError, match="set vectorized.chunk_size lower"):
        train_clients_vectorized(model, tasks(), SETTINGS, chunk_size=4)

"""Hub datasets as fedsim sees them: normalisation, labels, partitions, writers, augmentation."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from fedsim.data import VISION_DATASETS, RandomCropFlip, federated_data, load_dataset
from fedsim.errors import InvalidSettingError
from fedsim.models import build_model
from fedsim.results import read_metrics
from fedsim.run.runner import run_scenario
from fedsim.scenario import DataConfig
from fedsim.training import TrainSettings, train_local
from tests.conftest import make_scenario
from tests.fedsim.data.hf_datasets import FEMNIST_COUNTS, FEMNIST_WRITERS, Built, build, export


@pytest.fixture(autouse=True)
def isolated_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", "http://127.0.0.1:9")


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Built, str]]:
    root = tmp_path_factory.mktemp("hub")
    out = {}
    for name in ("mnist", "fashion_mnist", "cifar10", "femnist"):
        b = build(name, seed=1)
        out[name] = (b, str(export(b, "arrow", root / name)))
    return out


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_standard_normalisation_is_exact(name: str, on_disk: dict) -> None:
    b, path = on_disk[name]
    data = load_dataset(name, seed=0, test_fraction=0.2, path=path)
    spec = VISION_DATASETS[name]
    assert (data.mean, data.std) == (spec.mean, spec.std)

    raw = torch.from_numpy(b.pixels["train"]).double() / 255.0  # independent float64 path
    raw = raw[:, None] if raw.ndim == 3 else raw.permute(0, 3, 1, 2)
    mean = torch.tensor(spec.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float64).view(1, -1, 1, 1)
    torch.testing.assert_close(data.x_train.double(), (raw - mean) / std, atol=1e-5, rtol=0)

    # every channel holds black and white pixels here: they map to the ends of data_range
    lo, hi = data.data_range
    ends = [((0 - m) / s, (1 - m) / s) for m, s in zip(spec.mean, spec.std, strict=True)]
    assert (lo, hi) == (min(e[0] for e in ends), max(e[1] for e in ends))
    for c, (black, white) in enumerate(ends):
        assert float(data.x_train[:, c].min()) == pytest.approx(black, abs=1e-6)
        assert float(data.x_train[:, c].max()) == pytest.approx(white, abs=1e-6)


def test_femnist_is_standardised_on_its_own_training_pool(on_disk: dict) -> None:
    _, path = on_disk["femnist"]
    data = load_dataset("femnist", seed=0, test_fraction=0.2, path=path)
    assert float(data.x_train.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(data.x_train.std(unbiased=False)) == pytest.approx(1.0, abs=1e-5)
    raw = load_dataset("femnist", seed=0, test_fraction=0.2, path=path, normalize=False)
    assert raw.mean is None and raw.data_range == (0.0, 1.0)
    assert data.mean == pytest.approx((float(raw.x_train.double().mean()),), abs=1e-7)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "femnist"])
def test_labels_are_the_stored_classes(name: str, on_disk: dict) -> None:
    b, path = on_disk[name]
    data = load_dataset(name, seed=0, test_fraction=0.2, path=path)
    stored = set(b.labels["train"].tolist()) | set(b.labels.get("test", np.array([])).tolist())
    loaded = set(data.y_train.tolist()) | set(data.y_test.tolist())
    assert loaded == stored == set(range(data.num_classes))
    assert data.num_classes == (62 if name == "femnist" else 10)


def test_partitions_of_a_hub_dataset_cover_the_pool(on_disk: dict) -> None:
    _, path = on_disk["mnist"]
    for partition in ("iid", "dirichlet", "shards"):
        config = DataConfig(dataset="mnist", path=path, partition=partition, num_clients=7)
        fed = federated_data(config, seed=3)
        assert len(fed.partitions) == 7
        joined = np.sort(np.concatenate(fed.partitions))
        assert np.array_equal(joined, np.arange(len(fed.dataset.y_train)))
        x, y = fed.client(2)
        assert x.shape[1:] == (1, 28, 28) and len(x) == len(y) == len(fed.partitions[2])


def seeded_writers(seed: int, k: int) -> list[str]:
    """Independent re-derivation: the first k of a seeded permutation of the sorted ids."""
    names = sorted(FEMNIST_WRITERS)
    return [names[i] for i in np.random.default_rng(seed).permutation(len(names))[:k]]


def test_natural_partition_is_one_client_per_seeded_writer(on_disk: dict) -> None:
    b, path = on_disk["femnist"]
    fed = federated_data(
        DataConfig(dataset="femnist", path=path, partition="natural", num_clients=5), seed=4
    )
    data = fed.dataset
    chosen = seeded_writers(4, 5)
    counts = dict(zip(FEMNIST_WRITERS, FEMNIST_COUNTS, strict=True))

    assert len(fed.partitions) == 5
    assert np.array_equal(np.sort(np.concatenate(fed.partitions)), np.arange(len(data.y_train)))
    for client, writer in enumerate(chosen):
        n = counts[writer]
        assert len(fed.partitions[client]) == n - round(0.2 * n)  # LEAF-style per-writer split
        assert set(data.train_groups[fed.partitions[client]].tolist()) == {client}
        # the client's samples are exactly that writer's (minus its held-out ones)
        raw = b.pixels["train"][b.writers == writer]
        mine = (data.x_train[fed.partitions[client]] * data.std[0] + data.mean[0]) * 255
        mine = mine.round().to(torch.uint8).numpy()[:, 0]
        raw_set = {p.tobytes() for p in raw}
        assert all(p.tobytes() in raw_set for p in mine)
    assert len(data.y_test) == sum(round(0.2 * counts[w]) for w in chosen)


def test_natural_partition_with_more_writers_loaded_than_clients(on_disk: dict) -> None:
    _, path = on_disk["femnist"]
    config = DataConfig(
        dataset="femnist", path=path, partition="natural", num_clients=3, params={"writers": 8}
    )
    fed = federated_data(config, seed=0)
    counts = dict(zip(FEMNIST_WRITERS, FEMNIST_COUNTS, strict=True))
    chosen = seeded_writers(0, 8)
    assert [len(p) for p in fed.partitions] == [
        counts[w] - round(0.2 * counts[w]) for w in chosen[:3]
    ]
    assert int(fed.dataset.train_groups.max()) == 7  # eight writers loaded, five unused


def test_natural_partition_errors_are_clear(on_disk: dict) -> None:
    _, femnist = on_disk["femnist"]
    _, mnist = on_disk["mnist"]
    with pytest.raises(InvalidSettingError, match="'mnist' has none, use iid, dirichlet or shards"):
        federated_data(DataConfig(dataset="mnist", path=mnist, partition="natural"), seed=0)
    with pytest.raises(InvalidSettingError, match="only 12 writers"):
        federated_data(
            DataConfig(dataset="femnist", path=femnist, partition="natural", num_clients=13), seed=0
        )
    with pytest.raises(InvalidSettingError, match="needs a dataset with writers"):
        load_dataset("mnist", seed=0, test_fraction=0.2, path=mnist, writers=3)


def test_writer_choice_follows_the_seed(on_disk: dict) -> None:
    _, path = on_disk["femnist"]
    sizes = {}
    for seed in (0, 0, 1):
        data = load_dataset("femnist", seed=seed, test_fraction=0.2, path=path, writers=4)
        sizes.setdefault(seed, []).append(len(data.y_train) + len(data.y_test))
    counts = dict(zip(FEMNIST_WRITERS, FEMNIST_COUNTS, strict=True))
    assert sizes[0] == [sum(counts[w] for w in seeded_writers(0, 4))] * 2
    assert sizes[1] == [sum(counts[w] for w in seeded_writers(1, 4))]


def test_augmentation_defaults_and_switch(on_disk: dict) -> None:
    cifar = load_dataset("cifar10", seed=0, test_fraction=0.2, path=on_disk["cifar10"][1])
    assert isinstance(cifar.augment, RandomCropFlip)
    spec = VISION_DATASETS["cifar10"]
    assert cifar.augment.fill == pytest.approx(
        [-m / s for m, s in zip(spec.mean, spec.std, strict=True)]
    )
    off = load_dataset(
        "cifar10", seed=0, test_fraction=0.2, path=on_disk["cifar10"][1], augment=False
    )
    assert off.augment is None
    assert (
        load_dataset("mnist", seed=0, test_fraction=0.2, path=on_disk["mnist"][1]).augment is None
    )


def test_random_crop_flip_outputs_are_windows_of_the_padded_image() -> None:
    x = torch.randn(16, 3, 6, 5)
    aug = RandomCropFlip(padding=2, flip=True, fill=(-1.0, -2.0, -3.0))
    out = aug(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    fill = torch.tensor([-1.0, -2.0, -3.0]).view(3, 1, 1)
    flipped = 0
    for b in range(16):
        padded = fill.expand(3, 10, 9).clone()
        padded[:, 2:8, 2:7] = x[b]
        windows = [
            (padded[:, i : i + 6, j : j + 5], mirror)
            for i in range(5)
            for j in range(5)
            for mirror in (False, True)
        ]
        matches = [m for w, m in windows if torch.equal(out[b], w.flip(-1) if m else w)]
        assert matches, b
        flipped += matches[0]
    assert 0 < flipped < 16  # both outcomes of the coin occur
    again = aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.equal(out, aug(x, torch.Generator().manual_seed(1)))


def test_no_padding_no_flip_is_identity_and_flip_only_mirrors() -> None:
    x = torch.randn(8, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(RandomCropFlip(padding=0, flip=False)(x, g), x)
    out = RandomCropFlip(padding=0, flip=True)(x, g)
    for b in range(8):
        assert torch.equal(out[b], x[b]) or torch.equal(out[b], x[b].flip(-1))
    with pytest.raises(InvalidSettingError, match="padding ≥ 0"):
        RandomCropFlip(padding=-1)


def test_local_training_applies_the_augmentation_deterministically(on_disk: dict) -> None:
    data = load_dataset("cifar10", seed=0, test_fraction=0.2, path=on_disk["cifar10"][1])
    x, y = data.x_train[:64], data.y_train[:64]
    settings = TrainSettings(epochs=1, batch_size=16, lr=0.05)

    def trained(augment: RandomCropFlip | None) -> torch.Tensor:
        torch.manual_seed(0)
        model = build_model("cnn", data.input_shape, 10, width=4)
        train_local(model, x, y, settings, torch.Generator().manual_seed(7), augment=augment)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    with_aug, again, without = trained(data.augment), trained(data.augment), trained(None)
    assert torch.equal(with_aug, again)
    assert not torch.equal(with_aug, without)


def test_inline_run_on_femnist_writers(on_disk: dict, tmp_path: Path) -> None:
    scenario = make_scenario(
        **{
            "data": {
                "dataset": "femnist",
                "path": on_disk["femnist"][1],
                "partition": "natural",
                "num_clients": 4,
            },
            "model.params": {"width": 4},
            "clients.per_round": 4,
        }
    )
    run_dir, summary = run_scenario(scenario, tmp_path / "run", show_progress=False)
    assert summary["rounds"] == 2 and 0.0 <= summary["final_accuracy"] <= 1.0
    assert (run_dir / "metrics.jsonl").read_text().count("\n") == 2


def test_clients_train_with_the_dataset_augmentation(on_disk: dict, tmp_path: Path) -> None:
    losses = {}
    for augment in (True, False):
        scenario = make_scenario(
            **{
                "data": {
                    "dataset": "cifar10",
                    "path": on_disk["cifar10"][1],
                    "num_clients": 3,
                    "params": {"augment": augment},
                },
                "clients.per_round": 3,
                "rounds": 1,
                "model.params": {"width": 4},
            }
        )
        run_dir, _ = run_scenario(scenario, tmp_path / str(augment), show_progress=False)
        losses[augment] = read_metrics(run_dir)[0]["loss"]
    assert losses[True] != losses[False]

"""Finding Hub datasets: every data.path format, the offline cache, and fast, clear failures."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from fedsim.cli import main
from fedsim.data import VISION_DATASETS, available_offline, load_dataset
from fedsim.data.hub import read_labels
from fedsim.errors import InvalidSettingError, ScenarioError
from fedsim.run.runner import preflight
from fedsim.scenario import parse_scenario
from tests.fedsim.data.hf_datasets import Built, build, export

NAMES = ["mnist", "fashion_mnist", "cifar10", "femnist"]
FORMATS = ["arrow", "parquet", "imagefolder"]


@pytest.fixture(autouse=True)
def isolated_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache and a Hub endpoint that refuses at once: no test goes online."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    return cache


@pytest.fixture(scope="module")
def built() -> dict[str, Built]:
    return {name: build(name) for name in NAMES}


def sample_keys(x: torch.Tensor, y: torch.Tensor) -> list[tuple[int, str]]:
    """Order-free identity of each sample: (label, digest of its uint8 pixels)."""
    pixels = (x * 255).round().to(torch.uint8).numpy()
    return sorted(
        (int(label), hashlib.sha1(p.tobytes()).hexdigest())
        for p, label in zip(pixels, y.tolist(), strict=True)
    )


def raw_keys(b: Built, split: str) -> list[tuple[int, str]]:
    pixels = b.pixels[split]
    chw = pixels[:, None] if pixels.ndim == 3 else pixels.transpose(0, 3, 1, 2)
    return sorted(
        (int(label), hashlib.sha1(np.ascontiguousarray(p).tobytes()).hexdigest())
        for p, label in zip(chw, b.labels[split], strict=True)
    )


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", NAMES)
def test_every_format_yields_exactly_the_stored_samples(
    name: str, fmt: str, built: dict[str, Built], tmp_path: Path
) -> None:
    path = export(built[name], fmt, tmp_path / name)
    data = load_dataset(name, seed=0, test_fraction=0.2, path=str(path), normalize=False)

    spec = VISION_DATASETS[name]
    assert data.input_shape == spec.input_shape and data.num_classes == spec.num_classes
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0
    if name == "femnist":  # no test split on the Hub: held out from train, nothing lost
        got = sample_keys(
            torch.cat([data.x_train, data.x_test]), torch.cat([data.y_train, data.y_test])
        )
        assert got == raw_keys(built[name], "train")
    else:
        assert sample_keys(data.x_train, data.y_train) == raw_keys(built[name], "train")
        assert sample_keys(data.x_test, data.y_test) == raw_keys(built[name], "test")


def test_arrow_and_parquet_keep_row_order(built: dict[str, Built], tmp_path: Path) -> None:
    b = built["cifar10"]
    for fmt in ("arrow", "parquet"):
        path = export(b, fmt, tmp_path / fmt)
        data = load_dataset("cifar10", seed=0, test_fraction=0.2, path=str(path), normalize=False)
        expected = torch.from_numpy(b.pixels["train"]).permute(0, 3, 1, 2).float() / 255
        assert torch.equal(data.x_train, expected)
        assert data.y_train.tolist() == b.labels["train"].tolist()


def test_a_single_parquet_file_is_split_by_class(built: dict[str, Built], tmp_path: Path) -> None:
    file = tmp_path / "mnist-train.parquet"
    built["mnist"].splits["train"].to_parquet(str(file))
    data = load_dataset("mnist", seed=0, test_fraction=0.25, path=str(file), normalize=False)

    counts = np.bincount(built["mnist"].labels["train"], minlength=10)
    assert len(data.y_test) == sum(round(0.25 * c) for c in counts)
    assert sample_keys(
        torch.cat([data.x_train, data.x_test]), torch.cat([data.y_train, data.y_test])
    ) == raw_keys(built["mnist"], "train")


def test_the_local_hub_cache_is_read_offline(
    built: dict[str, Built], tmp_path: Path, isolated_hub: Path
) -> None:
    # A cache entry laid out as `datasets` stores ylecun/mnist: <cache>/ylecun___mnist/<config>/...
    source = export(built["mnist"], "parquet", tmp_path / "src" / "mnist")
    datasets.load_dataset(str(source))
    shutil.move(isolated_hub / "mnist", isolated_hub / "ylecun___mnist")
    assert available_offline("mnist") and not available_offline("cifar10")

    data = load_dataset("mnist", seed=0, test_fraction=0.2, normalize=False)  # endpoint refuses

    assert sample_keys(data.x_train, data.y_train) == raw_keys(built["mnist"], "train")
    assert sample_keys(data.x_test, data.y_test) == raw_keys(built["mnist"], "test")


def test_missing_path_says_how_to_provide_the_data(tmp_path: Path) -> None:
    with pytest.raises(InvalidSettingError, match="does not exist") as info:
        load_dataset("cifar10", seed=0, test_fraction=0.2, path=str(tmp_path / "nope"))
    message = str(info.value)
    assert "load_dataset('uoft-cs/cifar10').save_to_disk('data/cifar10')" in message
    assert "data.path: data/cifar10" in message and "HF_DATASETS_OFFLINE=1" in message


def test_unreadable_or_wrong_data_is_a_clear_error(built: dict[str, Built], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidSettingError, match="could not be read as a dataset"):
        load_dataset("mnist", seed=0, test_fraction=0.2, path=str(tmp_path / "empty"))
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not images")
    with pytest.raises(
        InvalidSettingError, match=r"reads its images from a column named image;.*\['text'\]"
    ):
        load_dataset("mnist", seed=0, test_fraction=0.2, path=str(tmp_path / "text"))
    cifar = export(built["cifar10"], "arrow", tmp_path / "cifar10")
    with pytest.raises(InvalidSettingError, match="reads its images from a column named image"):
        load_dataset("mnist", seed=0, test_fraction=0.2, path=str(cifar))
    with pytest.raises(
        InvalidSettingError, match=r"\(1, 28, 28\), but the data read has \(1, 32, 32\)"
    ):
        load_dataset("femnist", seed=0, test_fraction=0.2, path=str(_renamed(cifar, tmp_path)))


def _renamed(cifar: Path, tmp_path: Path) -> Path:
    """The CIFAR copy with FEMNIST's column names (image, character)."""
    splits = datasets.load_from_disk(str(cifar))
    splits = splits.rename_columns({"img": "image", "label": "character"})
    splits.save_to_disk(str(tmp_path / "renamed"))
    return tmp_path / "renamed"


def test_not_cached_and_offline_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(InvalidSettingError, match="offline mode is on") as info:
        load_dataset("mnist", seed=0, test_fraction=0.2)
    assert time.perf_counter() - start < 2.0
    assert "save_to_disk('data/mnist')" in str(info.value)


def test_not_cached_and_hub_unreachable_fails_fast_without_retries() -> None:
    # datasets itself would retry a dead endpoint for ~25 s; the probe answers in milliseconds
    start = time.perf_counter()
    with pytest.raises(InvalidSettingError, match="the Hub cannot be reached") as info:
        load_dataset("femnist", seed=0, test_fraction=0.2)
    assert time.perf_counter() - start < 6.0  # at most the probe's timeout
    assert "flwrlabs/femnist" in str(info.value) and "data.path" in str(info.value)


def test_a_scenario_without_its_data_is_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {"name": "m", "rounds": 1, "runtime": "inline", "data": {"dataset": "mnist"}}
    with pytest.raises(ScenarioError, match="save_to_disk"):
        preflight(parse_scenario(raw))

    file = tmp_path / "mnist.yaml"
    file.write_text(
        f"name: m\nrounds: 1\nruntime: inline\ndata: {{dataset: mnist, path: {tmp_path / 'x'}}}\n"
    )
    start = time.perf_counter()
    assert main(["run", str(file), "--out", str(tmp_path / "run")]) == 2
    assert time.perf_counter() - start < 10
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_integer_folder_names_are_the_labels() -> None:
    # an image folder numbers classes in sorted name order: "0", "1", "10", "2"
    feature = datasets.ClassLabel(names=["0", "1", "10", "2"])
    table = datasets.Dataset.from_dict(
        {"label": [0, 1, 2, 3]}, features=datasets.Features({"label": feature})
    )
    assert read_labels(table, "label").tolist() == [0, 1, 10, 2]

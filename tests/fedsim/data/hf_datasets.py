"""Small on-disk copies of the Hub datasets, with the Hub's schema, for the dataset tests.

Each :func:`build` returns the ``datasets.DatasetDict`` and the raw ``uint8`` pixels and labels
it holds, so tests can check what fedsim loads against known values. :func:`export` writes it
in one of the formats ``data.path`` accepts.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

FASHION_NAMES = [
    "T - shirt / top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
FEMNIST_NAMES = (
    [str(d) for d in range(10)] + [chr(c) for c in range(65, 91)] + [chr(c) for c in range(97, 123)]
)
# writer w has 20 + 3·w samples: 12 writers, 438 samples
FEMNIST_WRITERS = [f"f{w:04d}_{(7 * w) % 50:02d}" for w in range(12)]
FEMNIST_COUNTS = [20 + 3 * w for w in range(12)]


@dataclass
class Built:
    """A dataset with the Hub's schema and the raw values in it."""

    splits: datasets.DatasetDict
    pixels: dict[str, np.ndarray]  # split -> uint8 (N, H, W) or (N, H, W, 3)
    labels: dict[str, np.ndarray]  # split -> int64 (N,)
    writers: np.ndarray | None = None  # writer id of each train row (femnist)


def build(name: str, seed: int = 0) -> Built:
    """A few hundred samples of ``name`` (labels cycle through every class)."""
    rng = np.random.default_rng(seed)
    if name == "femnist":
        return _femnist(rng)
    shape, image_col, names = {
        "mnist": ((28, 28), "image", [str(d) for d in range(10)]),
        "fashion_mnist": ((28, 28), "image", FASHION_NAMES),
        "cifar10": ((32, 32, 3), "img", CIFAR_NAMES),
    }[name]
    features = datasets.Features(
        {image_col: datasets.Image(), "label": datasets.ClassLabel(names=names)}
    )
    splits, pixels, labels = {}, {}, {}
    for split, n in (("train", 300), ("test", 80)):
        px = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        y = (np.arange(n) * 7 + (split == "test")) % 10
        rows = {image_col: [Image.fromarray(p) for p in px], "label": y.tolist()}
        splits[split] = datasets.Dataset.from_dict(rows, features=features)
        pixels[split], labels[split] = px, y.astype(np.int64)
    return Built(datasets.DatasetDict(splits), pixels, labels)


def _femnist(rng: np.random.Generator) -> Built:
    writers = np.repeat(FEMNIST_WRITERS, FEMNIST_COUNTS)
    n = len(writers)
    px = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = np.arange(n) % 62
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "writer_id": datasets.Value("string"),
            "hsf_id": datasets.Value("int64"),
            "character": datasets.ClassLabel(names=FEMNIST_NAMES),
        }
    )
    rows = {
        "image": [Image.fromarray(p) for p in px],
        "writer_id": writers.tolist(),
        "hsf_id": [int(w[-1]) % 8 for w in writers],
        "character": y.tolist(),
    }
    train = datasets.Dataset.from_dict(rows, features=features)
    return Built(
        datasets.DatasetDict({"train": train}),
        {"train": px},
        {"train": y.astype(np.int64)},
        writers,
    )


def export(built: Built, fmt: str, root: Path) -> Path:
    """Write ``built`` as ``arrow`` (save_to_disk), ``parquet`` or ``imagefolder``; return it."""
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "arrow":
        built.splits.save_to_disk(str(root))
    elif fmt == "parquet":
        (root / "data").mkdir()
        for split, table in built.splits.items():
            table.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    elif fmt == "imagefolder":
        for split, px in built.pixels.items():
            _image_folder(root / split, px, built.labels[split], built.writers)
    else:
        raise ValueError(fmt)
    return root


def _image_folder(
    folder: Path, pixels: np.ndarray, labels: np.ndarray, writers: np.ndarray | None
) -> None:
    """Class sub-folders named by the integer label; FEMNIST's columns in metadata.csv."""
    rows = []
    for i, (p, y) in enumerate(zip(pixels, labels, strict=True)):
        name = f"{y}/{i:05d}.png"
        (folder / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(p).save(folder / name)
        if writers is not None:
            rows.append({"file_name": name, "writer_id": writers[i], "character": int(y)})
    if rows:
        with open(folder / "metadata.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

"""Reading Hugging Face datasets without ever hanging: a local directory, the cache, the Hub.

:func:`open_dataset` finds a dataset in this order:

1. ``data.path``, when given: a ``save_to_disk`` directory (``datasets.load_from_disk``), a
   parquet file, or a directory of parquet / arrow files or an image folder
   (``datasets.load_dataset(directory)``; splits are inferred from file names such as
   ``train-*.parquet`` or sub-folders ``train/``, ``test/``).
2. The local Hugging Face cache (``HF_DATASETS_CACHE``), read in offline mode.
3. The Hub, only when online: a 5-second probe of the Hub endpoint comes first, so a machine
   without network fails in well under a second instead of retrying for half a minute.

Whatever fails becomes an :class:`~fedsim.errors.InvalidSettingError` that says how to make the
dataset available offline (the runner's preflight turns it into exit code 2).
:func:`decode_images` and :func:`read_labels` turn columns into ``uint8`` / ``int64`` arrays.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fedsim.errors import InvalidSettingError

if TYPE_CHECKING:
    import datasets

__all__ = [
    "column_values",
    "decode_images",
    "in_cache",
    "is_available",
    "open_dataset",
    "read_labels",
]

PROBE_TIMEOUT_S = 5.0


def open_dataset(name: str, hub_id: str, path: str | None = None) -> dict[str, datasets.Dataset]:
    """The splits (``{"train": datasets.Dataset, ...}``) of a dataset, without hanging.

    Parameters
    ----------
    name : str
        The fedsim dataset name (for messages), e.g. ``"mnist"``.
    hub_id : str
        Its Hugging Face Hub id, e.g. ``"ylecun/mnist"``.
    path : str, optional
        A local copy (``data.path``); when given, neither the cache nor the Hub is consulted.

    Raises
    ------
    InvalidSettingError
        The path is missing or unreadable, or the dataset is neither cached nor reachable.
    """
    import datasets

    if path is not None:
        return _open_path(name, hub_id, Path(path).expanduser())
    if in_cache(hub_id):
        try:
            with _quiet(), _offline():
                return dict(datasets.load_dataset(hub_id))
        except Exception as e:  # a broken or partial cache entry
            raise InvalidSettingError(
                f"dataset {name!r}: the cached copy of {hub_id!r} in "
                f"{datasets.config.HF_DATASETS_CACHE} could not be read ({e}); "
                f"{_how_to_provide(name, hub_id)}"
            ) from e
    if datasets.config.HF_HUB_OFFLINE:
        raise InvalidSettingError(
            f"dataset {name!r} ({hub_id!r}) is not in the local Hugging Face cache "
            f"({datasets.config.HF_DATASETS_CACHE}) and offline mode is on "
            f"(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE); {_how_to_provide(name, hub_id)}"
        )
    reason = _unreachable(hub_id)
    if reason is not None:
        raise InvalidSettingError(
            f"dataset {name!r} ({hub_id!r}) is not in the local Hugging Face cache "
            f"({datasets.config.HF_DATASETS_CACHE}) and the Hub cannot be reached ({reason}); "
            f"{_how_to_provide(name, hub_id)}"
        )
    try:
        with _quiet():
            return dict(datasets.load_dataset(hub_id))
    except Exception as e:
        raise InvalidSettingError(
            f"dataset {name!r}: downloading {hub_id!r} failed ({e}); "
            f"{_how_to_provide(name, hub_id)}"
        ) from e


def in_cache(hub_id: str) -> bool:
    """Whether ``hub_id`` has been prepared in the local Hugging Face datasets cache.

    Mirrors where ``datasets`` looks when offline:
    ``<HF_DATASETS_CACHE>/<namespace>___<name>/<config>/<version>/<hash>/``.
    """
    import datasets
    from datasets.naming import camelcase_to_snakecase

    *namespace, dataset = hub_id.split("/")
    folder = "___".join([*namespace, camelcase_to_snakecase(dataset)])
    root = os.path.join(os.path.expanduser(str(datasets.config.HF_DATASETS_CACHE)), folder)
    return any(os.path.isdir(p) for p in glob.glob(os.path.join(root, "*", "*", "*")))


def is_available(hub_id: str, path: str | None = None) -> bool:
    """Whether the dataset can be read without network: ``path`` exists, or it is cached."""
    if path is not None:
        return Path(path).expanduser().exists()
    return in_cache(hub_id)


def decode_images(split: datasets.Dataset, column: str, mode: str) -> np.ndarray:
    """Decode the image column of ``split`` into one ``uint8`` array ``(N, C, H, W)``.

    The encoded bytes (or file paths, for an image folder) are read straight from the Arrow
    table and decoded with PIL, skipping the per-row formatting of ``datasets``.

    Parameters
    ----------
    split : datasets.Dataset
        The split (row selections are respected).
    column : str
        An image column (``datasets.Image``: structs of ``bytes`` and ``path``).
    mode : str
        PIL mode every image is converted to: ``"L"`` (one channel) or ``"RGB"`` (three).

    Raises
    ------
    InvalidSettingError
        The column is empty or its images do not all have the same size.
    """
    import pyarrow as pa
    from PIL import Image

    cells = split.with_format("arrow")[column]
    if isinstance(cells, pa.ChunkedArray):
        cells = cells.combine_chunks()
    contents, paths = cells.field("bytes").to_pylist(), cells.field("path").to_pylist()
    arrays = []
    for content, path in zip(contents, paths, strict=True):
        with Image.open(io.BytesIO(content) if content is not None else path) as image:
            arrays.append(np.asarray(image.convert(mode), dtype=np.uint8))
    if not arrays:
        raise InvalidSettingError(f"the image column {column!r} is empty")
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise InvalidSettingError(f"images of different sizes cannot be stacked: {sorted(sizes)}")
    stacked = np.stack(arrays)
    return stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)


def read_labels(split: datasets.Dataset, column: str) -> np.ndarray:
    """The ``int64`` labels of ``column``.

    An image folder names classes after its sub-folders and numbers them in sorted order, so
    folders ``0, 1, 10, 11, ..., 2`` would scramble integer labels; when every class name is an
    integer, the class name is taken as the label.
    """
    from datasets import ClassLabel

    labels = np.array(column_values(split, column), dtype=np.int64)  # a writable copy
    feature = split.features[column]
    if isinstance(feature, ClassLabel) and all(n.isdigit() for n in feature.names):
        by_name = np.array([int(n) for n in feature.names], dtype=np.int64)
        labels = by_name[labels]
    return labels


def column_values(split: datasets.Dataset, column: str) -> np.ndarray:
    """The values of a plain column as a NumPy array, read from Arrow in one go."""
    values = split.with_format("arrow")[column]
    return np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)


def _open_path(name: str, hub_id: str, path: Path) -> dict[str, datasets.Dataset]:
    import datasets

    if not path.exists():
        raise InvalidSettingError(
            f"data.path {str(path)!r} does not exist; {_how_to_provide(name, hub_id)}"
        )
    try:
        with _quiet(), _offline():
            if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
                loaded = datasets.load_from_disk(str(path))
            elif path.is_file():
                loaded = datasets.load_dataset(path.suffix.lstrip("."), data_files=str(path))
            else:
                loaded = datasets.load_dataset(str(path))
    except Exception as e:
        raise InvalidSettingError(
            f"data.path {str(path)!r} could not be read as a dataset (a save_to_disk "
            f"directory, parquet / arrow files or an image folder): {e}"
        ) from e
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    return dict(loaded)


def _how_to_provide(name: str, hub_id: str) -> str:
    return (
        f"to use {name!r} offline, run on a machine with network "
        f'`python -c "from datasets import load_dataset; '
        f"load_dataset('{hub_id}').save_to_disk('data/{name}')\"`, copy data/{name} here and "
        f"set data.path: data/{name} (or copy the Hugging Face cache and set HF_DATASETS_OFFLINE=1)"
    )


def _unreachable(hub_id: str) -> str | None:
    """``None`` when the Hub answers within the probe timeout, else the reason it did not."""
    import datasets

    url = f"{datasets.config.HF_ENDPOINT}/api/datasets/{hub_id}"
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None  # the server answered (e.g. 401 for a gated dataset)
    except (urllib.error.URLError, OSError, ValueError) as e:
        return f"{datasets.config.HF_ENDPOINT}: {getattr(e, 'reason', e)}"


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Make ``datasets`` read only local files (no Hub requests, no retries) for a while."""
    import datasets

    previous = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = previous


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence ``datasets``' progress bars and info logs, then restore them."""
    import datasets

    bars_were_off = datasets.are_progress_bars_disabled()
    verbosity = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if not bars_were_off:
            datasets.enable_progress_bars()

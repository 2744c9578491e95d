"""Every random draw comes from a generator keyed by (scenario seed, purpose, round, client).

Nothing reads global RNG state or depends on arrival order, so the same scenario and seed give
the same numbers on every runtime.
"""

from __future__ import annotations

from enum import IntEnum, unique

import numpy as np
import torch

__all__ = ["Stream", "derive_seed", "numpy_rng", "torch_generator"]


@unique
class Stream(IntEnum):
    """The purpose of a draw; keeps independent streams apart.

    ``@unique``: two purposes given one number would silently share their draws, so that is
    an error at import.
    """

    INIT = 1  # initial global model weights
    SAMPLE = 2  # which clients a round samples
    TRAIN = 3  # a client's local shuffling
    MALICIOUS = 4  # which clients are malicious (once per run)
    ATTACK = 5  # an attack's own draws
    DEFENSE = 6  # randomised aggregation rules
    PRIVACY = 7  # DP noise
    FAULTS = 8  # dropouts, crashes
    NODE_IDS = 9  # the inline runtime's node ids
    INVERSION = 10  # a gradient-inversion probe's dummy inputs
    MEMBERSHIP = 11  # membership inference: targets, reference federations
    AUDIT = 12  # a privacy audit's canaries: which, where, inserted or not
    CRFL = 13  # CRFL's noise on the global model, per round
    # model theft (issue #23), numbered apart from other probes' streams
    EXTRACTION = 23  # an extraction attacker's query pool, queries, surrogate and its training
    WATERMARK = 24  # WAFFLE's trigger set (once per run), embedding and removal draws
    THEFT_DATA = 25  # which part of the held-out set a model thief holds
    ROBUSTNESS = 20  # the robustness probe: evaluated subset, attacks' draws, transfer surrogates
    CLASS_INFERENCE = 34  # the GAN class-inference attacker's generator, per global model
    SECAGG = 26  # secure aggregation: the neighbour graph, each client's quantization rounding
    PERSONAL = 30  # personalized FL: each client's own test split, a personal model's shuffles
    MEMORIZATION = 32  # secret-sharer canaries in text: their secrets and owners (issue #32)


def derive_seed(seed: int, stream: Stream, *key: int) -> int:
    """A 63-bit seed from the scenario seed, a stream and further integers (round, client)."""
    state = np.random.SeedSequence([int(seed), int(stream), *[int(k) for k in key]])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def torch_generator(
    seed: int, stream: Stream, *key: int, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A torch generator seeded by :func:`derive_seed`."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, stream, *key))
    return generator


def numpy_rng(seed: int, stream: Stream, *key: int) -> np.random.Generator:
    """A NumPy generator seeded by :func:`derive_seed`."""
    return np.random.default_rng(derive_seed(seed, stream, *key))

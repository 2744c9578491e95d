"""Per-client record-level privacy ledger for DP-SGD across federated rounds.

A client's privacy loss composes over *every* DP-SGD step of *every* round it took part in.
A fresh Opacus ``PrivacyEngine`` per round resets its accountant, so reporting that
accountant's ε as the total is a known mistake. :class:`PrivacyLedger` keeps the whole
history instead, in Opacus' accountant format, and converts it to ε with Opacus' own
accountants. It serialises to plain lists so it can live in a Flower node's state between
rounds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

from opacus.accountants import create_accountant

from fedsim.errors import InvalidSettingError

__all__ = ["ACCOUNTANTS", "AccountantName", "PrivacyLedger", "epsilon_from_history"]

AccountantName = Literal["rdp", "prv"]
ACCOUNTANTS: tuple[str, ...] = ("prv", "rdp")

HistoryEntry = tuple[float, float, int]


def _check_delta(delta: float) -> None:
    if not 0.0 < delta < 1.0:
        raise InvalidSettingError(f"privacy accounting needs 0 < delta < 1, got delta={delta!r}")


def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise InvalidSettingError(
            f"unknown accountant {accountant!r}; known: {', '.join(ACCOUNTANTS)}"
        )


def _check_entry(noise_multiplier: float, sample_rate: float, steps: int) -> None:
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0.0):
        raise InvalidSettingError(
            f"noise_multiplier must be finite and >= 0, got {noise_multiplier!r}"
        )
    if not 0.0 < sample_rate <= 1.0:
        raise InvalidSettingError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise InvalidSettingError(f"steps must be a non-negative integer, got {steps!r}")


def epsilon_from_history(
    history: Sequence[HistoryEntry], delta: float, accountant: AccountantName = "rdp"
) -> float:
    """ε of a composed history of Poisson-subsampled Gaussian steps, by Opacus' accountant.

    Parameters
    ----------
    history : sequence of (float, float, int)
        ``(noise_multiplier σ, sample_rate q, num_steps)`` entries, Opacus' accountant
        ``history`` format.
    delta : float
        Target δ, in (0, 1).
    accountant : {"rdp", "prv"}
        Opacus' RDP accountant (Mironov 2017; tight composition, loose conversion) or PRV
        accountant (Gopi et al. 2021; numerical composition, an upper bound on ε).

    Returns
    -------
    float
        ε such that the history is (ε, δ)-DP; ``0.0`` for an empty history, ``inf`` if any
        step used σ = 0.

    Raises
    ------
    InvalidSettingError
        ``delta`` outside (0, 1) or an unknown ``accountant``.
    """
    _check_delta(delta)
    _check_accountant(accountant)
    entries = [(float(s), float(q), int(k)) for s, q, k in history if int(k) > 0]
    if not entries:
        return 0.0
    if any(s == 0.0 for s, _, _ in entries):
        return math.inf
    acc = create_accountant(mechanism=accountant)
    acc.history = entries
    with warnings.catch_warnings():
        # At extreme σ the RDP optimum sits at an end of Opacus' orders: ε is then a loose
        # (valid) upper bound. Opacus warns on every call; the bound is what we report.
        warnings.filterwarnings("ignore", message="Optimal order is the (largest|smallest) alpha")
        return float(acc.get_epsilon(delta=delta))


class PrivacyLedger:
    r"""History of one client's DP-SGD steps, composed into a record-level ε.

    Each entry ``(σ, q, k)`` stands for ``k`` steps of the Poisson-subsampled Gaussian
    mechanism with noise multiplier σ (noise std σC on a sum of per-sample gradients clipped
    to C) and sample rate q (batch size / local dataset size). Privacy loss composes over
    all entries; a round the client skips adds no entry, so its ε does not grow.
    Consecutive entries with equal (σ, q) are merged, exactly as Opacus' accountants do when
    stepped one step at a time, so ε equals theirs.

    Parameters
    ----------
    history : sequence of (float, float, int), optional
        Initial entries (e.g. an accountant's ``history``).

    Examples
    --------
    >>> ledger = PrivacyLedger()
    >>> ledger.epsilon(1e-5)
    0.0
    >>> ledger.record(1.1, 0.1, 20)
    >>> ledger.record(1.1, 0.1, 20)          # a second round with the same settings
    >>> ledger.history, ledger.steps
    ([(1.1, 0.1, 40)], 40)
    >>> PrivacyLedger.from_list(ledger.to_list()).history == ledger.history
    True
    >>> 0.0 < ledger.epsilon(1e-5) < 10.0
    True

    References
    ----------
    Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar, Zhang. Deep Learning with Differential
    Privacy. ACM CCS 2016.
    Mironov. Rényi Differential Privacy. IEEE CSF 2017.
    Gopi, Lee, Wutschitz. Numerical Composition of Differential Privacy. NeurIPS 2021.
    """

    def __init__(self, history: Sequence[HistoryEntry] = ()) -> None:
        self._history: list[HistoryEntry] = []
        for sigma, q, k in history:
            self.record(sigma, q, k)

    @property
    def history(self) -> list[HistoryEntry]:
        """A copy of the ``(σ, q, steps)`` entries, oldest first."""
        return list(self._history)

    @property
    def steps(self) -> int:
        """Total number of recorded DP-SGD steps."""
        return sum(k for _, _, k in self._history)

    def __len__(self) -> int:
        return len(self._history)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PrivacyLedger):
            return NotImplemented
        return self._history == other._history

    def __repr__(self) -> str:
        return f"PrivacyLedger({self._history!r})"

    def record(self, noise_multiplier: float, sample_rate: float, steps: int) -> None:
        """Add ``steps`` DP-SGD steps taken with ``noise_multiplier`` and ``sample_rate``.

        Parameters
        ----------
        noise_multiplier : float
            σ ≥ 0 (σ = 0 makes ε infinite).
        sample_rate : float
            q in (0, 1].
        steps : int
            Number of steps ≥ 0; ``0`` records nothing.

        Raises
        ------
        InvalidSettingError
            A value out of range.
        """
        _check_entry(noise_multiplier, sample_rate, steps)
        steps = int(steps)
        if steps == 0:
            return
        entry = (float(noise_multiplier), float(sample_rate))
        if self._history and self._history[-1][:2] == entry:
            self._history[-1] = (*entry, self._history[-1][2] + steps)
        else:
            self._history.append((*entry, steps))

    def epsilon(self, delta: float, accountant: AccountantName = "rdp") -> float:
        """Cumulative ε at ``delta`` over every recorded step (``0.0`` if none).

        See :func:`epsilon_from_history` for the parameters and errors.
        """
        return epsilon_from_history(self._history, delta, accountant)

    def to_list(self) -> list[float]:
        """Flat list ``[σ₁, q₁, k₁, σ₂, q₂, k₂, …]`` of floats (e.g. for a Flower MetricRecord)."""
        return [float(v) for entry in self._history for v in entry]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> PrivacyLedger:
        """Rebuild a ledger from :meth:`to_list` output.

        Raises
        ------
        InvalidSettingError
            The list length is not a multiple of 3 or an entry is out of range.
        """
        values = list(values)
        if len(values) % 3:
            raise InvalidSettingError(
                f"a privacy ledger list holds (sigma, q, steps) triples; got {len(values)} values"
            )
        triples = [
            (float(values[i]), float(values[i + 1]), _as_steps(values[i + 2]))
            for i in range(0, len(values), 3)
        ]
        return cls(triples)

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        """``{"noise_multiplier": [...], "sample_rate": [...], "steps": [...]}``."""
        return {
            "noise_multiplier": [s for s, _, _ in self._history],
            "sample_rate": [q for _, q, _ in self._history],
            "steps": [k for _, _, k in self._history],
        }

    @classmethod
    def from_dict(cls, values: dict[str, Sequence[float]]) -> PrivacyLedger:
        """Rebuild a ledger from :meth:`to_dict` output."""
        try:
            sigmas, rates, steps = (
                list(values[key]) for key in ("noise_multiplier", "sample_rate", "steps")
            )
        except KeyError as e:
            raise InvalidSettingError(f"privacy ledger dict lacks key {e.args[0]!r}") from e
        if not len(sigmas) == len(rates) == len(steps):
            raise InvalidSettingError("privacy ledger dict lists differ in length")
        entries = zip(sigmas, rates, steps, strict=True)
        return cls([(float(s), float(q), _as_steps(k)) for s, q, k in entries])


def _as_steps(value: float) -> int:
    if float(value) != int(value):
        raise InvalidSettingError(f"steps must be an integer, got {value!r}")
    return int(value)

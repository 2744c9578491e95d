"""A scenario's local (record-level) DP: what one round of DP-SGD costs a client, and its ε so far.

Both sides of a run use this module, so they agree on every number:

- a client looks up the σ it trains with and the ``(σ, q, steps)`` entry it adds to its
  :class:`~fedsim.privacy.ledger.PrivacyLedger` (:func:`local_dp_round`);
- the server keeps the ledgers the clients report (:class:`ClientEpsilons`), records the
  per-client and maximum ε of each round, and predicts the ε a round *would* reach before it
  runs it (for ``privacy.budget``).

With ``target_epsilon`` the noise is calibrated for the whole run: σ is the smallest multiplier
with ε(σ, q, R·K) ≤ target, where R is the number of rounds and K the client's DP-SGD steps per
round — a client sampled in every round ends exactly at the target, since the server's
sampling of clients gives no amplification against the server itself.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fedsim.privacy.dp_sgd import calibrate_noise, local_steps
from fedsim.privacy.ledger import AccountantName, PrivacyLedger
from fedsim.scenario import Scenario

__all__ = ["ClientEpsilons", "LocalDPRound", "local_dp_round"]


@dataclass(frozen=True)
class LocalDPRound:
    """One round of a client's DP-SGD: noise multiplier σ, sample rate q = B/N, steps K."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def entry(self) -> tuple[float, float, int]:
        """The ledger entry ``(σ, q, K)`` (Opacus' accountant history format)."""
        return (self.noise_multiplier, self.sample_rate, self.steps)


def local_dp_round(scenario: Scenario, num_examples: int) -> LocalDPRound:
    """The DP-SGD settings of one round for a client with ``num_examples`` examples.

    Parameters
    ----------
    scenario : Scenario
        A scenario with a ``privacy.local_dp`` block; its clients' batch size B and local
        epochs E give K = E·⌊N/B⌋ steps at q = B/N, and its rounds R calibrate
        ``target_epsilon``.
    num_examples : int
        N, the client's local dataset size.

    Raises
    ------
    InvalidSettingError
        B > N, or a target ε no σ ≤ 10⁶ reaches.

    Examples
    --------
    >>> from fedsim.scenario import parse_scenario
    >>> scenario = parse_scenario({"name": "s", "rounds": 5,
    ...     "clients": {"batch_size": 10, "local_epochs": 2},
    ...     "privacy": {"local_dp": {"noise_multiplier": 1.1}}})
    >>> local_dp_round(scenario, 100)
    LocalDPRound(noise_multiplier=1.1, sample_rate=0.1, steps=20)
    """
    local, clients = scenario.privacy.local_dp, scenario.clients
    if local is None:
        raise ValueError("the scenario has no privacy.local_dp block")
    steps = local_steps(num_examples, clients.batch_size, clients.local_epochs)
    sample_rate = clients.batch_size / num_examples
    if local.noise_multiplier is not None:
        sigma = float(local.noise_multiplier)
    else:
        assert local.target_epsilon is not None  # the schema requires one of the two
        sigma = _calibrated_noise(
            local.target_epsilon,
            local.delta,
            sample_rate,
            steps * scenario.rounds,
            local.accountant,
        )
    return LocalDPRound(sigma, sample_rate, steps)


@functools.lru_cache(maxsize=4096)
def _calibrated_noise(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: AccountantName
) -> float:
    return calibrate_noise(target_epsilon, delta, sample_rate, steps, accountant)


class ClientEpsilons:
    """The server's view of every honest client's record-level ε, from their reported ledgers.

    Parameters
    ----------
    delta : float
        δ of the guarantee.
    accountant : {"rdp", "prv"}
        The accountant the clients use.

    Examples
    --------
    >>> view = ClientEpsilons(delta=1e-5)
    >>> view.report(3, history=[1.0, 0.1, 10], epsilon=0.5)
    >>> view.epsilons, view.maximum()
    ({3: 0.5}, 0.5)
    >>> view.predict(3, (1.0, 0.1, 10)) > view.predict(4, (1.0, 0.1, 10)) > 0
    True
    """

    def __init__(self, delta: float, accountant: AccountantName = "rdp") -> None:
        self.delta = delta
        self.accountant = accountant
        self.epsilons: dict[int, float] = {}
        self._ledgers: dict[int, PrivacyLedger] = {}

    def report(self, client_id: int, history: Sequence[float], epsilon: float) -> None:
        """Record a client's cumulative ledger (flat ``σ, q, K`` triples) and its ε."""
        self._ledgers[client_id] = PrivacyLedger.from_list(history)
        self.epsilons[client_id] = float(epsilon)

    def state_dict(self) -> dict[str, Any]:
        """Every reported ledger (flat triples) and ε, by client id."""
        return {
            "ledgers": {c: ledger.to_list() for c, ledger in self._ledgers.items()},
            "epsilons": dict(self.epsilons),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._ledgers = {int(c): PrivacyLedger.from_list(h) for c, h in state["ledgers"].items()}
        self.epsilons = {int(c): float(e) for c, e in state["epsilons"].items()}

    def maximum(self) -> float | None:
        """The largest ε over every client that has trained so far (``None`` before any)."""
        return max(self.epsilons.values(), default=None)

    def predict(self, client_id: int, entry: tuple[float, float, int]) -> float:
        """ε the client would have after one more round costing ``entry``."""
        ledger = PrivacyLedger(self._ledgers.get(client_id, PrivacyLedger()).history)
        ledger.record(*entry)
        return ledger.epsilon(self.delta, self.accountant)

    def predict_max(self, rounds: Iterable[tuple[int, tuple[float, float, int]]]) -> float:
        """Largest ε after one more round, over ``(client_id, entry)`` pairs (0 if none)."""
        return max((self.predict(c, e) for c, e in rounds), default=0.0)

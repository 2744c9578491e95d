"""Seeded client faults: which sampled clients drop out, crash or straggle in a round.

Each (round, client) pair gets three independent uniform draws from the ``FAULTS`` stream, so
the server (which withholds a dropped client's message: it is sampled but never replies) and
the client (which raises, or sleeps before replying) agree on the same outcome on every
runtime, and a fault never shifts any other random draw of the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsim.scenario import FaultsConfig
from fedsim.seeding import Stream, numpy_rng

__all__ = ["ClientFaults", "client_faults"]


@dataclass(frozen=True)
class ClientFaults:
    """What goes wrong for one client in one round."""

    dropout: bool = False
    crash: bool = False
    straggler: bool = False


def client_faults(
    faults: FaultsConfig, seed: int, server_round: int, client_id: int
) -> ClientFaults:
    """The seeded faults of ``client_id`` in ``server_round``.

    Examples
    --------
    >>> from fedsim.scenario import FaultsConfig
    >>> client_faults(FaultsConfig(), seed=0, server_round=1, client_id=3)
    ClientFaults(dropout=False, crash=False, straggler=False)
    >>> client_faults(FaultsConfig(crash=1.0), seed=0, server_round=1, client_id=3).crash
    True
    """
    if not (faults.dropout or faults.crash or faults.straggler):
        return ClientFaults()
    u_drop, u_crash, u_slow = numpy_rng(seed, Stream.FAULTS, server_round, client_id).random(3)
    return ClientFaults(
        dropout=bool(u_drop < faults.dropout),
        crash=bool(u_crash < faults.crash),
        straggler=bool(u_slow < faults.straggler),
    )

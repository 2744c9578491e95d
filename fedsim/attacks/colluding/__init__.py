"""Colluding attacks: the malicious clients' updates crafted together from the round's replies.

Importing this package registers every colluding attack (stage ``"colluding"``) in
:data:`fedsim.attacks.ATTACKS`; build them with :func:`fedsim.attacks.build_attack` and call
``attack(observed, n=n, f=f, generator=g)`` to get a :class:`CraftedUpdates`.
"""

from __future__ import annotations

from fedsim.attacks.colluding.alie import ALIE
from fedsim.attacks.colluding.base import ColludingAttack, CraftedUpdates
from fedsim.attacks.colluding.fang import Fang
from fedsim.attacks.colluding.ipm import IPM
from fedsim.attacks.colluding.mimic import Mimic
from fedsim.attacks.colluding.min_max import MinMax
from fedsim.attacks.colluding.min_sum import MinSum
from fedsim.attacks.colluding.server_side import ServerSideUpdate

__all__ = [
    "ALIE",
    "IPM",
    "ColludingAttack",
    "CraftedUpdates",
    "Fang",
    "Mimic",
    "MinMax",
    "MinSum",
    "ServerSideUpdate",
]

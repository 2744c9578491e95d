"""The server-side adversary: colluding attacks that craft the malicious clients' updates.

Importing this package registers every colluding attack (stage ``"colluding"``) in
:data:`fedsim.attacks.ATTACKS`; build them with :func:`fedsim.attacks.build_attack` and call
``attack(observed, n=n, f=f, generator=g)`` to get a :class:`CraftedUpdates`.
"""

from __future__ import annotations

from server.adversary.alie import ALIE
from server.adversary.base import ColludingAttack, CraftedUpdates
from server.adversary.fang import Fang
from server.adversary.ipm import IPM
from server.adversary.mimic import Mimic
from server.adversary.min_max import MinMax
from server.adversary.min_sum import MinSum

__all__ = ["ALIE", "IPM", "ColludingAttack", "CraftedUpdates", "Fang", "Mimic", "MinMax", "MinSum"]

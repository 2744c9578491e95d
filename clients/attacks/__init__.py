"""Client-side attacks: data poisoning (stage ``"data"``) and update poisoning (``"update"``).

Importing this package registers every client-side attack in :data:`fedsim.attacks.ATTACKS`;
build them with :func:`fedsim.attacks.build_attack`.
"""

from __future__ import annotations

from clients.attacks.backdoor import Backdoor, BadNets, backdoor_asr
from clients.attacks.base import ClientAttack, DataPoisoning, UpdateAttack
from clients.attacks.dba import DBA
from clients.attacks.gaussian import Gaussian
from clients.attacks.label_flip import LabelFlip
from clients.attacks.scaling import Scaling
from clients.attacks.sign_flip import SignFlip

__all__ = [
    "Backdoor",
    "BadNets",
    "ClientAttack",
    "DBA",
    "DataPoisoning",
    "Gaussian",
    "LabelFlip",
    "Scaling",
    "SignFlip",
    "UpdateAttack",
    "backdoor_asr",
]

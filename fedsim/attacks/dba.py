"""DBA: a distributed backdoor whose trigger is split across the attackers."""

from __future__ import annotations

from functools import partialmethod

from fedsim.attacks.backdoor import Backdoor
from fedsim.attacks.registry import ATTACKS

__all__ = ["DBA"]


@ATTACKS.register("dba")
class DBA(Backdoor):
    r"""Distributed backdoor attack: each attacker trains with one piece of a global trigger.

    The global trigger, an ``h × w`` rectangle (default ``2 × 4``), is split into
    ``num_pieces`` local pieces :math:`P_0, \dots, P_{K-1}` (default :math:`K = 4`, i.e. four
    ``1 × 2`` quarters): its pixels are listed row by row and cut into :math:`K` contiguous,
    near-equal chunks. The pieces are disjoint and their union is the global trigger. Attacker
    :math:`i` (its ``attacker_index``) stamps :math:`P_{i \bmod K}` on a random
    ``poison_fraction`` of its samples and relabels them to ``target``; the attack success
    rate is measured with the *global* trigger (:meth:`stamp`). Boosting and Neurotoxin are
    applied to the update as for :class:`~fedsim.attacks.backdoor.BadNets`:
    :math:`\tilde\Delta = \gamma (M \odot \Delta)`; see
    :class:`~fedsim.attacks.backdoor.Backdoor` for every symbol and setting.

    Parameters
    ----------
    target, trigger_size, trigger_position, trigger_value, poison_fraction, boost, neurotoxin
        As in :class:`~fedsim.attacks.backdoor.Backdoor` (``trigger_size`` is the global
        trigger's, default ``[2, 4]``).
    num_pieces : int
        :math:`K`, between 1 and the number of trigger pixels.

    Examples
    --------
    >>> import torch
    >>> attack = DBA(trigger_size=[2, 4], num_pieces=4, trigger_position=[0, 0], trigger_value=1.0)
    >>> attack.trigger_mask(2, 5, piece=1).int().tolist()
    [[0, 0, 1, 1, 0], [0, 0, 0, 0, 0]]
    >>> attack.trigger_mask(2, 5).int().tolist()
    [[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]]
    >>> x, y = torch.zeros(1, 1, 2, 5), torch.tensor([3])
    >>> xp, yp = attack.poison(x, y, attacker_index=6, num_attackers=8,
    ...                        generator=torch.Generator().manual_seed(0))
    >>> xp[0, 0].tolist(), yp.tolist()  # attacker 6 stamps piece 6 mod 4 = 2
    ([[0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0, 0.0]], [0])

    References
    ----------
    Xie, Huang, Chen, Li. DBA: Distributed Backdoor Attacks against Federated Learning.
    ICLR 2020.
    """

    name = "dba"

    # Backdoor's settings, validation and signature (which the registry checks), with DBA's
    # defaults: a 2 × 4 global trigger in four pieces.
    __init__ = partialmethod(Backdoor.__init__, trigger_size=(2, 4), num_pieces=4)

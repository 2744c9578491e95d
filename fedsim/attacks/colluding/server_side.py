"""A client's update attack run by the server-side adversary, so its strength can be searched."""

from __future__ import annotations

import torch

from fedsim.attacks.colluding.base import ColludingAttack, CraftedUpdates
from fedsim.attacks.local import UpdateAttack
from fedsim.attacks.strength import Tunable
from fedsim.errors import InvalidSettingError

__all__ = ["ServerSideUpdate"]


class ServerSideUpdate(ColludingAttack):
    r"""Apply an update attack to the malicious clients' honest updates in the adversary stage.

    With ``strength: optimal`` a client-side update attack (sign flip, Gaussian, scaling)
    cannot search its strength on the client, which sees neither the others' updates nor the
    server's rule. The malicious clients then train and reply honestly, and this adapter,
    run by the stage on their own honest updates :math:`\Delta_1, \dots, \Delta_f`, sends

    .. math:: m_i(\tau) = A_\tau(\Delta_i)

    where :math:`A_\tau` is the attack with its strength setting (``strength_key``) set to
    τ: :math:`-\tau\Delta_i` (sign flip), :math:`\tau\,\xi_i` with
    :math:`\xi_i \sim \mathcal N(0, I)` (Gaussian; the same ξ for every τ of a round, drawn from
    the round's attack generator) or :math:`\tau\Delta_i` (scaling). It only takes the
    malicious clients' own rows (``own_rows_only``), whatever ``attack.knowledge`` says.

    Parameters
    ----------
    base : UpdateAttack
        The client-side attack; it must name a ``strength_key``.

    Raises
    ------
    InvalidSettingError
        ``base`` has no strength setting.

    Examples
    --------
    >>> from fedsim.attacks import SignFlip
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0]], dtype=torch.float64)
    >>> tunable = ServerSideUpdate(SignFlip()).prepare(u, n=5, f=2)
    >>> tunable.key, tunable.default, tunable.craft(2.0).tolist()
    ('scale', 1.0, [[-2.0, -0.0, -4.0], [-6.0, -0.0, -4.0]])
    """

    own_rows_only = True

    def __init__(self, base: UpdateAttack) -> None:
        if not isinstance(base, UpdateAttack) or base.strength_key is None:
            raise InvalidSettingError(
                f"the adversary stage can only run update attacks with a strength, got {base!r}"
            )
        self.base = base
        self.name = base.name
        self.strength_bounds = base.strength_bounds

    def tunable(
        self,
        observed: torch.Tensor,
        *,
        n: int,
        f: int,
        generator: torch.Generator | None = None,
    ) -> Tunable:
        """The round with the base attack's strength free (``observed``: the f own rows)."""
        if observed.shape[0] != f:
            raise InvalidSettingError(
                f"{self.name} run by the adversary stage needs the {f} malicious updates, got "
                f"{observed.shape[0]} rows"
            )
        state = (generator or torch.Generator().manual_seed(0)).get_state()
        key = str(self.base.strength_key)

        def craft(tau: float) -> torch.Tensor:
            attack, draws = self.base.with_strength(tau), torch.Generator()
            draws.set_state(state)  # common random numbers: the same noise for every τ
            return torch.stack(
                [attack.transform_update(row, generator=draws) for row in observed]
            ).to(torch.float64)

        return Tunable(
            key=key,
            default=float(getattr(self.base, key)),
            craft=craft,
            info=lambda tau: {key: tau},
        )

    def craft(
        self, observed: torch.Tensor, *, n: int, f: int, generator: torch.Generator
    ) -> CraftedUpdates:
        """Apply the base attack at its own strength to each of the f own rows."""
        tunable = self.tunable(observed, n=n, f=f, generator=generator)
        return CraftedUpdates(tunable.craft(tunable.default), tunable.info(tunable.default))

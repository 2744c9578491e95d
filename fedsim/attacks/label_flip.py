"""Label flipping: train on relabelled data."""

from __future__ import annotations

import torch

from fedsim.attacks.local import DataPoisoning, check_data
from fedsim.attacks.registry import ATTACKS
from fedsim.errors import InvalidSettingError
from fedsim.validation import is_integer, require_int

__all__ = ["LabelFlip"]


@ATTACKS.register("label_flip")
class LabelFlip(DataPoisoning):
    r"""Relabel the client's samples and train honestly on them.

    Untargeted (``source`` and ``target`` both ``None``): every label is mirrored,

    .. math:: y \mapsto C - 1 - y,

    with :math:`C` the number of classes. Targeted: only samples with :math:`y = s`
    (``source``) are relabelled to :math:`t` (``target``); all others keep their label.
    The inputs ``x`` are returned unchanged (as a copy).

    Parameters
    ----------
    num_classes : int
        :math:`C`, taken from the dataset (the framework passes it), at least 2.
    source, target : int or None
        The targeted flip :math:`s \to t`; give both or neither, with
        :math:`0 \le s, t < C` and :math:`s \ne t`.

    Raises
    ------
    InvalidSettingError
        An invalid setting, or labels outside :math:`[0, C)` at :meth:`poison` time.

    Examples
    --------
    >>> x, y = torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 2, 9])
    >>> g = torch.Generator().manual_seed(0)
    >>> LabelFlip(10).poison(x, y, attacker_index=0, num_attackers=1, generator=g)[1].tolist()
    [9, 8, 7, 0]
    >>> LabelFlip(10, source=1, target=7).poison(
    ...     x, y, attacker_index=0, num_attackers=1, generator=g)[1].tolist()
    [0, 7, 2, 9]

    References
    ----------
    Biggio, Nelson, Laskov. Poisoning Attacks against Support Vector Machines. ICML 2012.
    Tolpegin, Truex, Gursoy, Liu. Data Poisoning Attacks Against Federated Learning Systems.
    ESORICS 2020.
    """

    name = "label_flip"

    def __init__(
        self, num_classes: int, source: int | None = None, target: int | None = None
    ) -> None:
        require_int("label_flip", "num_classes", num_classes, minimum=2)
        if (source is None) != (target is None):
            raise InvalidSettingError(
                f"label_flip needs both source and target (targeted) or neither (untargeted), "
                f"got source={source!r}, target={target!r}"
            )
        for key, value in (("source", source), ("target", target)):
            if value is not None and not (is_integer(value) and 0 <= value < num_classes):
                raise InvalidSettingError(
                    f"label_flip needs {key} to be a class in [0, {num_classes}), got {value!r}"
                )
        if source is not None and source == target:
            raise InvalidSettingError(
                f"label_flip needs source ≠ target, got source=target={source}"
            )
        self.num_classes = num_classes
        self.source = source
        self.target = target

    def poison(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        attacker_index: int,
        num_attackers: int,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x.clone(), flipped labels)``; see the class docstring."""
        check_data(x, y, self.name)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise InvalidSettingError(
                f"label_flip: labels must lie in [0, {self.num_classes}), "
                f"got range [{int(y.min())}, {int(y.max())}]"
            )
        if self.source is None:
            flipped = self.num_classes - 1 - y
        else:
            flipped = torch.where(y == self.source, torch.full_like(y, self.target), y)
        return x.clone(), flipped.clone()

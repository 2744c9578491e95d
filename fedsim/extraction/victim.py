r"""The victim's prediction API: what an extraction attacker gets back for its queries.

A black-box attacker (threat model ``query``) sends images and receives, per image, one row of
an ``(n, C)`` matrix whose form the *owner* chooses (:data:`ANSWER_TYPES`):

- ``probabilities``: the softmax :math:`p = \mathrm{softmax}(z)` of the logits :math:`z`;
- ``top1``: the one-hot vector :math:`e_{\arg\max_c z_c}` (a label-only API);
- ``rounded``: :math:`\mathrm{round}(p, k)`, each probability rounded to :math:`k` decimals,
  the simple output-perturbation defence of Tramèr et al. (USENIX Security 2016) that
  Orekondy et al. evaluate against Knockoff Nets.

The answer is always an ``(n, C)`` float matrix, whatever the type, so an attack's code does
not branch on it (a return type never depends on a mode flag).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from fedsim.errors import FedsimError, InvalidSettingError
from fedsim.training import single_thread
from fedsim.validation import require_int

__all__ = ["ANSWER_TYPES", "AnswerType", "QueryBudgetError", "Victim", "answer"]

AnswerType = Literal["probabilities", "top1", "rounded"]
ANSWER_TYPES: tuple[str, ...] = ("probabilities", "rounded", "top1")
"""The answer types a :class:`Victim` supports."""


class QueryBudgetError(FedsimError):
    """A query would exceed the victim's query budget (nothing of it was answered)."""


def answer(logits: torch.Tensor, answers: str, decimals: int = 2) -> torch.Tensor:
    r"""Turn logits into what the victim's API returns.

    With :math:`p = \mathrm{softmax}(z)` row by row: ``probabilities`` returns :math:`p`,
    ``top1`` the one-hot :math:`e_{\arg\max_c z_c}` (ties: the lowest class index), and
    ``rounded`` :math:`\mathrm{round}(p, k)` with :math:`k` = ``decimals`` (rows then need not
    sum to exactly 1, and may be all zero for :math:`k = 0`).

    Parameters
    ----------
    logits : Tensor
        :math:`z`, shape ``(n, C)``.
    answers : {"probabilities", "top1", "rounded"}
        The answer type.
    decimals : int
        :math:`k \ge 0`, used by ``rounded`` only.

    Returns
    -------
    Tensor
        ``(n, C)`` float32 answers.

    Raises
    ------
    InvalidSettingError
        An unknown answer type, negative ``decimals`` or logits that are not ``(n, C)``.

    Examples
    --------
    >>> z = torch.tensor([[2.0, 1.0, 0.0]])
    >>> answer(z, "top1").tolist()
    [[1.0, 0.0, 0.0]]
    >>> answer(z, "rounded", decimals=1).tolist()
    [[0.699999988079071, 0.20000000298023224, 0.10000000149011612]]

    References
    ----------
    Orekondy, Schiele, Fritz. Knockoff Nets: Stealing Functionality of Black-Box Models.
    CVPR 2019. Tramèr, Zhang, Juels, Reiter, Ristenpart. Stealing Machine Learning Models via
    Prediction APIs. USENIX Security 2016.
    """
    _check_answers(answers, decimals)
    if logits.dim() != 2:
        raise InvalidSettingError(
            f"answer needs logits of shape (n, C), got shape {tuple(logits.shape)}"
        )
    logits = logits.detach().float()
    if answers == "top1":
        return nn.functional.one_hot(logits.argmax(dim=1), logits.shape[1]).float()
    probs = torch.softmax(logits, dim=1)
    if answers == "rounded":
        return torch.round(probs, decimals=decimals)
    return probs


def _check_answers(answers: str, decimals: int) -> None:
    if answers not in ANSWER_TYPES:
        raise InvalidSettingError(
            f"extraction needs answers in {list(ANSWER_TYPES)}, got {answers!r}"
        )
    require_int("extraction", "decimals", decimals, minimum=0)


class Victim:
    r"""A model behind a prediction API: answers queries, counts them, enforces a budget.

    Each call to :meth:`query` with :math:`n` images costs :math:`n` queries; a call that would
    take the count past ``budget`` raises :class:`QueryBudgetError` and answers nothing. The
    model is evaluated in ``eval`` mode without gradients, in batches of ``batch_size``, on the
    CPU's single thread (like fedsim's evaluation).

    Parameters
    ----------
    model : nn.Module
        The victim (e.g. the federation's global model).
    answers : {"probabilities", "top1", "rounded"}
        What the API returns (see :func:`answer`).
    decimals : int
        :math:`k` of ``rounded`` answers.
    budget : int or None
        The most queries the API answers in total (``None``: no limit).
    batch_size : int
        Images per forward pass.

    Raises
    ------
    InvalidSettingError
        An invalid setting.

    Examples
    --------
    >>> victim = Victim(nn.Linear(4, 3), answers="top1", budget=5)
    >>> victim.query(torch.zeros(2, 4)).sum(dim=1).tolist(), victim.queries, victim.remaining
    ([1.0, 1.0], 2, 3)
    >>> victim.query(torch.zeros(4, 4))
    Traceback (most recent call last):
    ...
    fedsim.extraction.victim.QueryBudgetError: query of 4 images exceeds the victim's budget: ...

    References
    ----------
    Tramèr, Zhang, Juels, Reiter, Ristenpart. Stealing Machine Learning Models via Prediction
    APIs. USENIX Security 2016.
    """

    def __init__(
        self,
        model: nn.Module,
        answers: str = "probabilities",
        decimals: int = 2,
        budget: int | None = None,
        batch_size: int = 1024,
    ) -> None:
        _check_answers(answers, decimals)
        if budget is not None:
            require_int("extraction", "budget", budget, minimum=1)
        require_int("extraction", "batch_size", batch_size, minimum=1)
        self.model = model
        self.answers = answers
        self.decimals = decimals
        self.budget = budget
        self.batch_size = batch_size
        self.queries = 0

    @property
    def remaining(self) -> int | None:
        """Queries left in the budget (``None`` without a budget)."""
        return None if self.budget is None else self.budget - self.queries

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Answer the images ``x`` (``(n, C, H, W)``): an ``(n, num_classes)`` CPU matrix."""
        n = len(x)
        if self.budget is not None and self.queries + n > self.budget:
            raise QueryBudgetError(
                f"query of {n} images exceeds the victim's budget: {self.queries} of "
                f"{self.budget} used; query at most {self.budget - self.queries} more"
            )
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        with single_thread(device), torch.no_grad():
            starts = range(0, n, self.batch_size) if n else [0]
            logits = torch.cat(
                [self.model(x[s : s + self.batch_size].to(device)).cpu() for s in starts]
            )
        self.model.train(was_training)
        self.queries += n
        return answer(logits, self.answers, self.decimals)

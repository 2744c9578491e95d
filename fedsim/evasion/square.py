r"""Square Attack: score-based random search in the ℓ∞ ball (Andriushchenko et al., ECCV 2020).

"Square Attack: a query-efficient black-box adversarial attack via random search". It needs
no gradient, only the model's scores, so it attacks whatever model it is handed as a black
box: against a purified model f(P(x)) (:class:`~fedsim.evasion.Purified`) it attacks the
purifier and the classifier together, including a randomized purifier's draws.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion.base import EvasionAttack, check_eps
from fedsim.evasion.registry import EVASION_ATTACKS
from fedsim.validation import require_int, require_real

__all__ = ["Square", "margin", "square_fraction"]

logger = logging.getLogger(__name__)

# The paper's schedule of p, stated for 10,000 iterations (their Appendix): halve p after
# iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000, rescaled to the budget.
_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init: float, iteration: int, iterations: int) -> float:
    r"""The share p of the image a square covers at ``iteration`` (of ``iterations``).

    :math:`p = p_{\text{init}} / 2^k` with k the number of the paper's thresholds
    (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000 iterations, rescaled to
    ``iterations``) that ``iteration`` has passed.

    Examples
    --------
    >>> [square_fraction(0.8, i, 1000) for i in (0, 1, 5, 100, 999)]
    [0.8, 0.8, 0.4, 0.05, 0.0015625]
    """
    scaled = int(iteration / max(iterations, 1) * 10_000)
    halvings = sum(1 for threshold in _SCHEDULE if scaled > threshold)
    return p_init / 2**halvings


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The untargeted margin loss :math:`z_y - \max_{k \ne y} z_k` per sample.

    Negative iff the sample is misclassified (up to ties); the attack minimises it.

    Examples
    --------
    >>> margin(torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]]), torch.tensor([0, 0])).tolist()
    [1.0, -3.0]
    """
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, y.view(-1, 1), float("-inf"))
    return true - others.max(dim=1).values


@EVASION_ATTACKS.register("square")
class Square(EvasionAttack):
    r"""The ℓ∞ Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020), Algorithm 1.

    Minimises the margin loss :math:`L(x') = z_y(x') - \max_{k \ne y} z_k(x')` (:func:`margin`)
    over :math:`B_\infty(x, \varepsilon) \cap [0, 1]^d` by random search, with only the
    model's outputs:

    1. start from vertical stripes :math:`x^0 = \Pi(x + \varepsilon\, s)`, one sign
       :math:`s \in \{-1, 1\}` per channel and column;
    2. at iteration i draw, per sample, a square window of side
       :math:`h = \mathrm{round}(\sqrt{p_i\, H W})` (:func:`square_fraction`: p halves on the
       paper's schedule) at a uniform position and one sign per channel, set the perturbation
       :math:`\delta = x^i - x` on the window to :math:`\pm\varepsilon`, and keep
       :math:`x^{i+1} = \Pi(x + \delta)` if it lowers L (else :math:`x^{i+1} = x^i`);
    3. stop, per sample, at the first misclassification, or when the budget is spent.

    Π clips to [0, 1]; every iterate is a vertex-like point of the ε-ball, so the output is in
    the ball by construction. Each model evaluation of a perturbed sample is one query; the
    budget ``queries`` includes the stripe start (so ``queries − 1`` iterations, ART's
    ``max_iter``). Samples the model already misclassifies spend no query. After a call,
    :attr:`last_queries` holds each sample's queries; :attr:`mean_queries` is the mean over
    every sample attacked (correctly classified at the start) since :meth:`reset_queries`.

    Departs from ART's ``SquareAttack`` (1.20.1) as the paper's code does: one window position
    and sign per sample (ART draws one for the whole batch), windows anywhere in the image
    (ART never touches the last row and column), one query per iteration (ART evaluates the
    current point again each iteration).

    Parameters
    ----------
    eps : float
        ℓ∞ radius ε ≥ 0.
    queries : int
        Queries per sample, ≥ 1 (the paper: 10,000; DESIGN: 1,000).
    p_init : float
        Initial share of the image a square covers, 0 < p ≤ 1 (ART's default 0.8; the paper
        tunes 0.05 on ImageNet, 0.3 on MNIST).
    norm : {"linf"}
        Only ℓ∞ (the ℓ2 variant's windows are not implemented).

    Raises
    ------
    InvalidSettingError
        On an invalid ``eps``, ``queries < 1``, ``p_init`` outside (0, 1] or another norm.

    Examples
    --------
    >>> lin = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> _ = lin[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
    >>> _ = lin[1].bias.data.copy_(torch.tensor([-1.5, 0.0]))
    >>> x, y = torch.full((1, 1, 2, 2), 0.45), torch.tensor([0])  # logit margin 4·0.45 − 1.5
    >>> attack = Square(eps=0.1, queries=50)
    >>> x_adv = attack(lin, x, y, torch.Generator().manual_seed(0))
    >>> [round(v, 4) for v in x_adv.flatten().tolist()], lin(x_adv).argmax().item()  # all at −ε
    ([0.35, 0.35, 0.35, 0.35], 1)
    >>> attack.label, 1 <= attack.last_queries.item() <= 50
    ('square-linf-0.1', True)
    """

    name = "square"
    query_only = True

    def __init__(
        self, eps: float, queries: int = 1000, p_init: float = 0.8, norm: str = "linf"
    ) -> None:
        self.eps = check_eps(self.name, eps)
        self.queries = require_int(self.name, "queries", queries, minimum=1)
        self.p_init = require_real(self.name, "p_init", p_init, low=0.0, high=1.0, low_open=True)
        if norm != "linf":
            raise InvalidSettingError(f"{self.name} runs in norm 'linf' only, got {norm!r}")
        self.norm = "linf"
        self.last_queries = torch.zeros(0, dtype=torch.int64)
        self.reset_queries()

    def reset_queries(self) -> None:
        """Restart the count behind :attr:`mean_queries`."""
        self._spent, self._attacked = 0, 0

    @property
    def mean_queries(self) -> float:
        """Mean queries per attacked sample since :meth:`reset_queries` (NaN if none)."""
        return self._spent / self._attacked if self._attacked else math.nan

    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Random search from the stripe start, one query per live sample and iteration."""
        n = len(x)
        self.last_queries = torch.zeros(n, dtype=torch.int64)
        if n == 0 or self.eps == 0.0:
            return x.clone()
        if x.dim() != 4:
            raise InvalidSettingError(
                f"{self.label} needs images of shape (B, C, H, W), got {tuple(x.shape)}"
            )
        _, channels, height, width = x.shape
        with torch.no_grad():
            best = self._search(model, x, y, generator, channels, height, width)
        self._spent += int(self.last_queries.sum())
        self._attacked += int((self.last_queries > 0).sum())
        return best

    def _search(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        channels: int,
        height: int,
        width: int,
    ) -> torch.Tensor:
        """Algorithm 1 on the batch; fills :attr:`last_queries`."""
        n = len(x)
        live = model(x).argmax(dim=1) == y  # already misclassified: no query
        stripes = self._signs((n, channels, 1, width), generator, x)
        best = torch.where(_rows(live), (x + self.eps * stripes).clamp(0.0, 1.0), x)
        loss = torch.full((n,), float("inf"), device=x.device, dtype=x.dtype)
        self._query(model, x, y, best, loss, live)
        for iteration in range(1, self.queries):
            idx = live.nonzero().squeeze(1)
            if not len(idx):
                break
            p = square_fraction(self.p_init, iteration, self.queries)
            side = min(max(round(math.sqrt(p * height * width)), 1), height, width)
            x_i, best_i = x[idx], best[idx]
            window = self._windows(len(idx), side, height, width, generator, x)
            signs = self._signs((len(idx), channels, 1, 1), generator, x)
            delta = torch.where(window, self.eps * signs, best_i - x_i)
            candidate = (x_i + delta).clamp(0.0, 1.0)
            logits = model(candidate)
            self.last_queries[idx.cpu()] += 1
            new_loss = margin(logits, y[idx])
            fooled = logits.argmax(dim=1) != y[idx]
            take = (new_loss < loss[idx]) | fooled
            best[idx] = torch.where(_rows(take), candidate, best_i)
            loss[idx] = torch.where(take, new_loss, loss[idx])
            live[idx] = ~fooled
        return best

    def _query(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        points: torch.Tensor,
        loss: torch.Tensor,
        live: torch.Tensor,
    ) -> None:
        """Evaluate the live samples' ``points`` once: their loss, and who is still robust."""
        idx = live.nonzero().squeeze(1)
        if not len(idx):
            return
        logits = model(points[idx])
        self.last_queries[idx.cpu()] += 1
        loss[idx] = margin(logits, y[idx])
        live[idx] = logits.argmax(dim=1) == y[idx]

    @staticmethod
    def _signs(
        shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor
    ) -> torch.Tensor:
        """Uniform ±1 of ``shape``, on ``like``'s device and dtype."""
        bits = torch.randint(0, 2, shape, generator=generator, device=generator.device)
        return (2 * bits - 1).to(like.device, like.dtype)

    @staticmethod
    def _windows(
        count: int,
        side: int,
        height: int,
        width: int,
        generator: torch.Generator,
        like: torch.Tensor,
    ) -> torch.Tensor:
        """``(count, 1, H, W)`` masks of one ``side × side`` square each, uniform positions."""
        device = generator.device
        top = torch.randint(0, height - side + 1, (count,), generator=generator, device=device)
        left = torch.randint(0, width - side + 1, (count,), generator=generator, device=device)
        rows = torch.arange(height, device=device).view(1, height, 1)
        cols = torch.arange(width, device=device).view(1, 1, width)
        top, left = top.view(-1, 1, 1), left.view(-1, 1, 1)
        inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        return inside.unsqueeze(1).to(like.device)


def _rows(mask: torch.Tensor) -> torch.Tensor:
    """A per-sample bool ``(B,)`` as ``(B, 1, 1, 1)`` for ``torch.where`` on images."""
    return mask.view(-1, 1, 1, 1)

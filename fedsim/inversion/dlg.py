"""DLG: Deep Leakage from Gradients (Zhu et al., NeurIPS 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.inversion.base import InversionAttack, parameter_gradients
from fedsim.inversion.registry import INVERSION_ATTACKS
from fedsim.validation import require_int

__all__ = ["DLG", "squared_distance"]


def squared_distance(
    grads: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]
) -> torch.Tensor:
    r"""Squared L2 distance :math:`\sum_l \lVert g'_l - g_l \rVert^2` summed over parameters."""
    return sum(((g - t) ** 2).sum() for g, t in zip(grads, targets, strict=True))  # type: ignore[return-value]


@INVERSION_ATTACKS.register("dlg")
class DLG(InversionAttack):
    r"""Reconstruct inputs and labels by matching gradients with L-BFGS.

    Solves

    .. math:: x'^*, z'^* = \arg\min_{x', z'} \sum_l \big\lVert
        \nabla_{W_l} \ell\big(f(x'), \mathrm{softmax}(z')\big) - \nabla_{W_l} \ell(f(x), y)
        \big\rVert^2

    where :math:`W_l` are the model's parameters, :math:`\ell` the mean cross-entropy with soft
    labels, :math:`x` the client's batch with labels :math:`y` (only their gradient is seen),
    :math:`x'` the dummy input and :math:`z'` dummy label logits. The labels returned are
    :math:`\arg\max z'`. Given known labels, only :math:`x'` is optimised. Both start from
    :math:`\mathcal N(0, I)`; the optimiser is L-BFGS with a strong-Wolfe line search, and the
    best point it evaluated is kept. The attack needs a twice-differentiable model (e.g.
    ``lenet_sigmoid``) and works best for one sample.

    Parameters
    ----------
    iterations : int
        L-BFGS iterations per restart.
    restarts : int
        Independent trials; the one with the lowest gradient distance is kept.
    lr : float
        L-BFGS step length (the line search starts from it).
    history_size : int
        L-BFGS memory.
    seed : int
        Seed of the dummy initialisation.

    Raises
    ------
    InvalidSettingError
        A setting is out of range (e.g. ``iterations=0``).

    Examples
    --------
    >>> import torch
    >>> from fedsim.models import build_model
    >>> from fedsim.inversion.updates import model_gradients
    >>> _ = torch.manual_seed(0)
    >>> model = build_model("lenet_sigmoid", (1, 8, 8), 10)
    >>> x, y = torch.rand(1, 1, 8, 8), torch.tensor([3])
    >>> rec = DLG(iterations=100)(model, model_gradients(model, x, y), input_shape=(1, 8, 8),
    ...                           num_classes=10)
    >>> rec.labels.tolist(), bool(((rec.x - x) ** 2).mean() < 1e-3)
    ([3], True)

    References
    ----------
    Zhu, Liu, Han. Deep Leakage from Gradients. NeurIPS 2019.
    """

    name = "dlg"
    recovers_labels = False

    def __init__(
        self,
        iterations: int = 300,
        restarts: int = 1,
        lr: float = 1.0,
        history_size: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__(iterations=iterations, restarts=restarts, lr=lr, seed=seed)
        self.history_size = require_int(self.name, "history_size", history_size, minimum=1)

    def distance(
        self, grads: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Squared L2 distance between dummy and target gradients."""
        return squared_distance(grads, targets)

    def optimise(
        self,
        model: nn.Module,
        params: Sequence[torch.Tensor],
        targets: Sequence[torch.Tensor],
        x0: torch.Tensor,
        logits0: torch.Tensor,
        labels: torch.Tensor | None,
        data_range: tuple[float, float],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run L-BFGS from ``x0`` (and ``logits0`` unless ``labels`` are fixed)."""
        x = x0.clone().requires_grad_(True)
        variables = [x]
        if labels is None:
            logits = logits0.clone().requires_grad_(True)
            variables.append(logits)
        else:
            fixed = F.one_hot(labels, logits0.shape[1]).to(x0.dtype)

        def soft_labels() -> torch.Tensor:
            return logits.softmax(dim=1) if labels is None else fixed

        optimiser = torch.optim.LBFGS(
            variables,
            lr=self.lr,
            max_iter=self.iterations,
            history_size=self.history_size,
            line_search_fn="strong_wolfe",
        )
        best = [float("inf"), x0, soft_labels().detach()]

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            soft = soft_labels()
            grads = parameter_gradients(model, params, x, soft, create_graph=True)
            loss = self.distance(grads, targets)
            value = float(loss.detach())
            if value < best[0]:  # False for NaN
                best[:] = [value, x.detach().clone(), soft.detach().clone()]
            loss.backward(inputs=variables)
            return loss

        optimiser.step(closure)
        return best[1], best[2]

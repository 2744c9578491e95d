"""Inverting Gradients: cosine gradient matching with a TV prior (Geiping et al., NeurIPS 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.inversion.base import InversionAttack
from fedsim.inversion.registry import INVERSION_ATTACKS
from fedsim.validation import require_real

__all__ = ["InvertingGradients", "cosine_distance", "total_variation"]


def cosine_distance(grads: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    r"""One minus the cosine similarity of the concatenated gradient vectors.

    .. math:: 1 - \frac{\langle g', g \rangle}{\lVert g' \rVert \, \lVert g \rVert}

    with :math:`g'` and :math:`g` all parameters' gradients flattened into one vector each. It
    lies in [0, 2] and ignores the gradients' scale.

    Examples
    --------
    >>> import torch
    >>> float(cosine_distance([torch.tensor([1.0, 0.0])], [torch.tensor([2.0, 0.0])]))
    0.0
    >>> float(cosine_distance([torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 3.0])]))
    1.0
    """
    dot = sum((g * t).sum() for g, t in zip(grads, targets, strict=True))
    norm_g = torch.sqrt(sum((g * g).sum() for g in grads))
    norm_t = torch.sqrt(sum((t * t).sum() for t in targets))
    return 1 - dot / (norm_g * norm_t).clamp_min(torch.finfo(norm_g.dtype).tiny)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    r"""Anisotropic total variation: mean absolute difference of neighbouring pixels.

    .. math:: \mathrm{TV}(x) = \operatorname{mean} |x_{:,:,i,j+1} - x_{:,:,i,j}|
        + \operatorname{mean} |x_{:,:,i+1,j} - x_{:,:,i,j}|

    for a batch ``x`` of shape ``(B, C, H, W)``.

    Examples
    --------
    >>> import torch
    >>> float(total_variation(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])))
    1.0
    """
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean() if x.shape[-1] > 1 else x.new_zeros(())
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() if x.shape[-2] > 1 else x.new_zeros(())
    return dx + dy


@INVERSION_ATTACKS.register("inverting_gradients")
class InvertingGradients(InversionAttack):
    r"""Reconstruct inputs by cosine gradient matching with a total-variation prior.

    Solves

    .. math:: x'^* = \arg\min_{x' \in [lo, hi]^n} \Big(1 - \frac{\langle \nabla_W \ell(f(x'), y),
        \nabla_W \ell(f(x), y) \rangle}{\lVert \nabla_W \ell(f(x'), y) \rVert \,
        \lVert \nabla_W \ell(f(x), y) \rVert}\Big) + \alpha\, \mathrm{TV}(x')

    where :math:`\nabla_W \ell` is the gradient of the mean cross-entropy with respect to all
    parameters (flattened), :math:`x` the client's batch (only its gradient is seen), :math:`y`
    its labels (given, or recovered as in iDLG), :math:`\alpha` = ``tv_weight`` and TV the
    :func:`total_variation`. The optimiser is Adam on the *sign* of the gradient, projecting onto
    the box :math:`[lo, hi]` (``data_range``) after every step, with the step size divided by
    10 at 3/8, 5/8 and 7/8 of the iterations (``lr_decay``). Each restart keeps its iterate of
    lowest objective; across restarts the lowest gradient loss (the cosine term) wins.

    Parameters
    ----------
    iterations : int
        Adam steps per restart.
    restarts : int
        Independent trials.
    lr : float
        Adam step size (in data units, since the steps are signed).
    tv_weight : float
        Weight :math:`\alpha \ge 0` of the TV prior.
    lr_decay : bool
        Whether to use the step schedule above (else a constant ``lr``).
    seed : int
        Seed of the dummy initialisation.

    Raises
    ------
    InvalidSettingError
        A setting is out of range (e.g. ``tv_weight=-1``).

    Examples
    --------
    >>> import torch
    >>> from fedsim.models import build_model
    >>> from fedsim.inversion.updates import model_gradients
    >>> _ = torch.manual_seed(0)
    >>> model = build_model("lenet_sigmoid", (1, 8, 8), 10)
    >>> x, y = torch.rand(1, 1, 8, 8), torch.tensor([1])
    >>> rec = InvertingGradients(iterations=50)(model, model_gradients(model, x, y),
    ...                                         input_shape=(1, 8, 8), num_classes=10)
    >>> rec.labels.tolist(), bool(rec.x.min() >= 0 and rec.x.max() <= 1)
    ([1], True)

    References
    ----------
    Geiping, Bauermeister, Dröge, Moeller. Inverting Gradients - How easy is it to break privacy
    in federated learning? NeurIPS 2020.
    """

    name = "inverting_gradients"

    def __init__(
        self,
        iterations: int = 1000,
        restarts: int = 1,
        lr: float = 0.1,
        tv_weight: float = 1e-4,
        lr_decay: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(iterations=iterations, restarts=restarts, lr=lr, seed=seed)
        self.tv_weight = require_real(self.name, "tv_weight", tv_weight, low=0)
        if not isinstance(lr_decay, bool):
            raise InvalidSettingError(f"{self.name} needs lr_decay true or false, got {lr_decay!r}")
        self.lr_decay = lr_decay

    def distance(
        self, grads: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """One minus the cosine similarity of dummy and target gradients."""
        return cosine_distance(grads, targets)

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
        """Run signed Adam with box projection from ``x0`` clamped into the box."""
        lo, hi = data_range
        soft = F.one_hot(labels, logits0.shape[1]).to(x0.dtype)  # labels are always resolved
        x = x0.clamp(lo, hi).requires_grad_(True)
        optimiser = torch.optim.Adam([x], lr=self.lr)
        n = self.iterations
        milestones = sorted({int(n * 3 / 8), int(n * 5 / 8), int(n * 7 / 8)} - {0})
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            optimiser, milestones=milestones if self.lr_decay else [], gamma=0.1
        )
        best = (float("inf"), x.detach().clone())
        for _ in range(n):
            optimiser.zero_grad()
            grads = self.dummy_gradients(model, params, x, soft, create_graph=True)
            objective = self.distance(grads, targets) + self.tv_weight * total_variation(x)
            value = float(objective.detach())
            if value < best[0]:  # False for NaN
                best = (value, x.detach().clone())
            objective.backward(inputs=[x])
            x.grad.sign_()
            optimiser.step()
            schedule.step()
            with torch.no_grad():
                x.clamp_(lo, hi)
        return best[1], soft

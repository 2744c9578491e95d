r"""Trap weights (Boenisch et al., "When the Curious Abandon Honesty", EuroS&P 2023).

Parameters only, no architecture change: the server redraws the first linear layer's rows so
that each is activated by few inputs. Each row :math:`w_i` is drawn i.i.d. from
:math:`\mathcal N(0, 1/d)`, then its positive entries are multiplied by ``scale``
:math:`s \in (0, 1]`; the bias is 0. For non-negative inputs (pixels),
:math:`w_i^\top x = s \sum_{w_{ij} > 0} w_{ij} x_j - \sum_{w_{ij} < 0} |w_{ij}| x_j` is
negative for most :math:`x` once :math:`s < 1`, so a row's ReLU fires for few images, and a
row fired by exactly one image :math:`x` gives it back:

.. math:: \hat x_i = \nabla_{w_i} / \nabla_{b_i} = x

(:func:`~fedsim.inversion.crafted.read_rows`). Unlike the imprint block, the rows are not
bins of equal mass: how many images come back depends on ``scale``, the width and the data
(measured in ``docs/secure-aggregation.md``). Exact, like imprint, for one local SGD step.

When a linear layer follows, the rows are divided by ``gain`` and that layer's columns
multiplied by it: by the ReLU's positive homogeneity the model computes the same function,
and the first layer's gradients are ``gain`` times larger (above secure aggregation's
quantization step ``2c/Q``; the ratios do not change).

The draws come from a ``torch.Generator`` seeded with ``seed``.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.inversion.crafted import CraftedModelAttack, first_linear, read_rows
from fedsim.inversion.registry import INVERSION_ATTACKS
from fedsim.validation import require_int, require_real

__all__ = ["TrapWeightsAttack"]


@INVERSION_ATTACKS.register("trap_weights")
class TrapWeightsAttack(CraftedModelAttack):
    """Boenisch et al.'s trap weights in the first linear layer.

    Parameters
    ----------
    scale : float
        ``s`` in (0, 1]: the factor on each row's positive weights (smaller: fewer images
        activate a row).
    seed : int
        Seed of the rows' draw (≥ 0).
    gain : float
        Factor moved from the rows into the next linear layer's columns (> 0; see above).

    Examples
    --------
    Two images, each firing its own row, come back from the mean-loss gradient:

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 3))
    >>> attack = TrapWeightsAttack(scale=0.5, seed=0)
    >>> attack.craft(model, torch.rand(10, 4))
    >>> x = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    >>> loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    >>> grads = torch.autograd.grad(loss, list(model.parameters()))
    >>> out = attack(model, grads, input_shape=(1, 1, 4))
    >>> [any(torch.allclose(c.flatten(), xi, atol=1e-5) for c in out.x) for xi in x]
    [True, True]
    """

    name = "trap_weights"

    def __init__(self, scale: float = 0.9, seed: int = 0, gain: float = 10.0) -> None:
        self.scale = require_real(self.name, "scale", scale, low=0, high=1, low_open=True)
        self.seed = require_int(self.name, "seed", seed, minimum=0)
        self.gain = require_real(self.name, "gain", gain, low=0, low_open=True)

    def craft(self, model: nn.Module, public: torch.Tensor) -> None:
        """Redraw the first linear layer's rows as trap weights, biases 0, in place."""
        d = public.reshape(len(public), -1).shape[1]
        _, first, following = first_linear(model, d)
        generator = torch.Generator().manual_seed(self.seed)
        rows = torch.randn(first.weight.shape, generator=generator, dtype=torch.float64)
        rows = rows / d**0.5
        rows = torch.where(rows > 0, rows * self.scale, rows)
        gain = self.gain if following is not None else 1.0
        with torch.no_grad():
            first.weight.copy_((rows / gain).to(first.weight.dtype))
            first.bias.zero_()
            if following is not None:
                following.weight.mul_(gain)

    def read(self, grad_w: torch.Tensor, grad_b: torch.Tensor) -> torch.Tensor:
        """One candidate per row that fired: ∇w_i / ∇b_i."""
        return read_rows(grad_w, grad_b)

r"""Imprint (Fowl et al., "Robbing the Fed", ICLR 2022): k brightness bins in the first layer.

The server turns the first ``k`` units of the model's first linear layer into an *imprint
block*: every row measures the same statistic :math:`s(x) = v^\top x` (brightness,
:math:`v = \mathbf 1 / d`: the mean pixel value), with thresholds
:math:`c_1 < c_2 < \dots < c_k` (:math:`c_1` below every public input, :math:`c_{i}` the
:math:`(i-1)/k` quantile of :math:`s` over the server's public pool for :math:`i \ge 2`):

.. math:: h_i(x) = \mathrm{ReLU}(v^\top x - c_i), \qquad i = 1, \dots, k,

(scaled by :math:`a > 0`, which changes no ratio below), and the next linear layer reads
every imprint unit through the same column :math:`u`, so
:math:`\delta_i(x) = \partial L / \partial h_i = \delta(x)` for every active unit. An image
with :math:`c_i \le s(x) < c_{i+1}` activates units :math:`1..i`, so bin :math:`i`'s
difference of consecutive rows isolates it:

.. math:: \hat x_i = \frac{\nabla_{w_i} - \nabla_{w_{i+1}}}{\nabla_{b_i} - \nabla_{b_{i+1}}}
          = \frac{\sum_{x \in \text{bin } i} \delta(x)\, x}{\sum_{x \in \text{bin } i} \delta(x)}

(:math:`\nabla_{w_{k+1}} = 0`), which is the image itself when it is alone in its bin.
Because the bins have equal mass under the public pool's distribution, an image among
:math:`n` drawn from it is alone with probability :math:`(1 - 1/k)^{n-1}`: the expected
share recovered (:func:`expected_recovered`). Only sums of gradients are read, so the attack
works on the sum secure aggregation reveals, with :math:`n` the images of every client in it.

Exact for one local gradient step of plain SGD without weight decay; after a step the rows
move and the bins blur (``docs/secure-aggregation.md`` gives the measured share).
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.inversion.crafted import CraftedModelAttack, first_linear, read_rows
from fedsim.inversion.registry import INVERSION_ATTACKS
from fedsim.validation import require_int, require_real

__all__ = ["ImprintAttack", "bin_of", "brightness", "expected_recovered"]


def expected_recovered(bins: int, images: int) -> float:
    """Expected share of ``images`` alone in one of ``bins`` equal-mass bins: (1 − 1/k)^(n−1).

    Examples
    --------
    >>> round(expected_recovered(64, 32), 4)  # the 0.61 of Fowl et al. at k = 64, n = 32
    0.6137
    >>> expected_recovered(8, 1)
    1.0
    """
    k = require_int("imprint", "bins", bins, minimum=1)
    n = require_int("imprint", "images", images, minimum=1)
    return (1.0 - 1.0 / k) ** (n - 1)


def brightness(x: torch.Tensor) -> torch.Tensor:
    r"""The imprint statistic :math:`s(x) = v^\top x` with :math:`v = \mathbf 1/d`.

    Each input's mean value, float64 ``(n,)``.
    """
    return x.reshape(len(x), -1).to(torch.float64).mean(dim=1)


def bin_of(x: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Each input's bin ``i - 1`` (``c_i ≤ s(x) < c_{i+1}``; −1 below :math:`c_1`).

    Examples
    --------
    >>> import torch
    >>> bin_of(torch.tensor([[0.05], [0.2], [0.9]]), torch.tensor([0.0, 0.1, 0.5])).tolist()
    [0, 1, 2]
    """
    return torch.bucketize(brightness(x), thresholds.to(torch.float64), right=True) - 1


@INVERSION_ATTACKS.register("imprint")
class ImprintAttack(CraftedModelAttack):
    r"""The imprint block of Fowl et al. (ICLR 2022), crafted into the first linear layer.

    Parameters
    ----------
    bins : int
        ``k``, the imprint rows (≥ 2, at most the first layer's width).
    gain : float
        ``‖u‖``, the norm of the shared read-out column (the next layer's first column,
        rescaled). The imprint rows are scaled by :math:`a = 1/(k\,\|u\|)` (so the
        block adds at most the statistic's range to the next layer), which leaves the
        ratios unchanged and makes the rows' gradients ``‖u‖`` times larger: well above
        secure aggregation's quantization step (``2c/Q``).

    Examples
    --------
    Three images in three bins of a tiny MLP: the mean-loss gradient gives each back.

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    >>> attack = ImprintAttack(bins=3)
    >>> attack.craft(model, torch.rand(300, 4))
    >>> x = torch.tensor([[0.1, 0.1, 0.2, 0.1], [0.5, 0.4, 0.5, 0.5], [0.9, 0.8, 0.9, 1.0]])
    >>> loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2]))
    >>> grads = torch.autograd.grad(loss, list(model.parameters()))
    >>> out = attack(model, grads, input_shape=(1, 2, 2))
    >>> torch.allclose(out.x.reshape(3, 4), x, atol=1e-5)
    True
    """

    name = "imprint"

    def __init__(self, bins: int = 64, gain: float = 10.0) -> None:
        self.bins = require_int(self.name, "bins", bins, minimum=2)
        self.gain = require_real(self.name, "gain", gain, low=0, low_open=True)

    def craft(self, model: nn.Module, public: torch.Tensor) -> None:
        """Write the imprint rows, their thresholds and the shared read-out column in place.

        Raises
        ------
        InvalidSettingError
            The model has no first linear layer followed by a linear layer, its width is below
            ``bins``, or ``public`` holds fewer than ``bins`` inputs.
        """
        flat = public.reshape(len(public), -1).to(torch.float64)
        _, first, following = first_linear(model, flat.shape[1])
        if following is None:
            raise InvalidSettingError(
                "imprint needs a linear layer after the first one (it reads the imprint units "
                "through one shared column), e.g. mlp"
            )
        if first.out_features < self.bins:
            raise InvalidSettingError(
                f"imprint needs bins ≤ the first layer's width {first.out_features}, "
                f"got bins={self.bins}"
            )
        if len(flat) < self.bins:
            raise InvalidSettingError(
                f"imprint needs at least bins={self.bins} public inputs for its quantiles, "
                f"got {len(flat)}"
            )
        thresholds = self.thresholds(flat)
        k, d = self.bins, flat.shape[1]
        column = following.weight[:, 0].detach().to(torch.float64)
        column = column * (self.gain / float(column.norm()) if float(column.norm()) else 0.0)
        if not float(column.norm()):
            column = torch.full_like(column, self.gain / column.numel() ** 0.5)
        a = 1.0 / (k * self.gain)  # Σ_i h_i·u stays below the statistic's range
        with torch.no_grad():
            first.weight[:k] = torch.full((k, d), a / d, dtype=first.weight.dtype)
            first.bias[:k] = (-a * thresholds).to(first.bias.dtype)
            following.weight[:, :k] = column.to(following.weight.dtype).unsqueeze(1).expand(-1, k)

    def thresholds(self, public: torch.Tensor) -> torch.Tensor:
        r"""The thresholds :math:`c_1 < \dots < c_k`, float64 ``(k,)``.

        :math:`c_1` lies below every public input; then the ``1/k … (k−1)/k`` quantiles of
        the public inputs' brightness.
        """
        stat = brightness(public)
        levels = torch.arange(1, self.bins, dtype=torch.float64) / self.bins
        cuts = torch.quantile(stat, levels)
        width = float(stat.max() - stat.min()) or 1.0
        lowest = stat.min() - width / self.bins  # below every public input: bin 1 takes all
        return torch.cat([lowest.reshape(1), cuts])

    def read(self, grad_w: torch.Tensor, grad_b: torch.Tensor) -> torch.Tensor:
        """Bin ``i``'s candidate from consecutive rows' differences (see the module)."""
        w, b = grad_w[: self.bins].to(torch.float64), grad_b[: self.bins].to(torch.float64)
        next_w = torch.cat([w[1:], torch.zeros_like(w[:1])])
        next_b = torch.cat([b[1:], torch.zeros_like(b[:1])])
        return read_rows(w - next_w, b - next_b)

r"""Shared plumbing of the malicious server's crafted-model attacks (imprint, trap weights).

A *crafted-model* attack does not optimise anything: the server changes the parameters of the
model it sends so that the first fully connected layer's gradient *is* the data. For a linear
unit :math:`h_i = \mathrm{ReLU}(w_i^\top x + b_i)` on the flattened input, the gradient of a
loss summed over the images :math:`x_1, \dots, x_n` behind an update is

.. math:: \nabla_{w_i} = \sum_{j:\, w_i^\top x_j + b_i > 0} \delta_{ij}\, x_j, \qquad
          \nabla_{b_i} = \sum_{j:\, w_i^\top x_j + b_i > 0} \delta_{ij},

with :math:`\delta_{ij} = \partial L / \partial h_i` at image :math:`j`. When exactly one image
activates the unit, :math:`\nabla_{w_i} / \nabla_{b_i} = x_j` whatever :math:`\delta_{ij}` is
(:func:`read_rows`). The ratio is invariant to any common scale, so it reads a client's update
Δ = −η·∇ (one local SGD step) and FedAvg's weighted mean of several clients' updates, which is
what secure aggregation reveals, just as well as a gradient.

:class:`CraftedModelAttack` is the interface the inversion probe uses: :meth:`craft` changes a
model in place from the server's public examples, :meth:`__call__` reads a
:class:`~fedsim.inversion.base.Reconstruction` out of an update of the crafted model. Both work
on a model whose first parameterised layer is an ``nn.Linear`` on the flattened input
(:func:`first_linear`; fedsim's ``mlp``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from fedsim.components import Describable
from fedsim.errors import InvalidSettingError
from fedsim.inversion.base import Reconstruction

__all__ = ["CraftedModelAttack", "best_psnr", "first_linear", "read_rows", "recovered_share"]

RECOVERED_DB = 30.0
"""PSNR (dB) at which an image counts as recovered (``inversion_recovered``)."""


def first_linear(model: nn.Module, input_dim: int) -> tuple[int, nn.Linear, nn.Linear | None]:
    """The first parameterised layer, an ``nn.Linear`` on the flattened input, and the next one.

    Returns ``(index, first, following)``: the index of the first layer's weight in
    ``model.parameters()`` order (its bias follows it), the layer, and the next parameterised
    layer when it is an ``nn.Linear`` fed by the first (else ``None``).

    Raises
    ------
    InvalidSettingError
        The model's first parameterised layer is not a linear layer with a bias on
        ``input_dim`` inputs (a convolution, say).
    """
    layers = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    first = layers[0] if layers else None
    if not (
        isinstance(first, nn.Linear) and first.in_features == input_dim and first.bias is not None
    ):
        raise InvalidSettingError(
            f"a crafted-model attack needs a model whose first layer is a linear layer with a "
            f"bias on the {input_dim} flattened inputs (e.g. mlp), got "
            f"{type(first).__name__ if first is not None else 'no parameters'}"
        )
    following = layers[1] if len(layers) > 1 else None
    if not (isinstance(following, nn.Linear) and following.in_features == first.out_features):
        following = None
    ids = [id(p) for p in model.parameters()]
    return ids.index(id(first.weight)), first, following


def read_rows(grad_w: torch.Tensor, grad_b: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    r"""Candidate inputs :math:`\hat x_i = \nabla_{w_i} / \nabla_{b_i}` of the rows that fired.

    A row whose :math:`|\nabla_{b_i}|` is at most ``tol`` times the largest (no image, or
    images whose contributions cancel) gives no candidate.

    Parameters
    ----------
    grad_w : torch.Tensor
        ``(k, d)`` weight gradients (or updates) of ``k`` rows.
    grad_b : torch.Tensor
        ``(k,)`` bias gradients of the same rows.
    tol : float
        Relative threshold on :math:`|\nabla_{b_i}|`.

    Returns
    -------
    torch.Tensor
        ``(m, d)`` float64 candidates, ``m ≤ k``, in row order.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.5, 1.0], [0.25, 0.0]])
    >>> read_rows(torch.stack([-2 * x[0], torch.zeros(2)]), torch.tensor([-2.0, 0.0]))
    tensor([[0.5000, 1.0000]], dtype=torch.float64)
    """
    w, b = grad_w.to(torch.float64), grad_b.to(torch.float64)
    scale = float(b.abs().max()) if b.numel() else 0.0
    if not math.isfinite(scale) or scale == 0.0:
        return w.new_zeros((0, w.shape[1]))
    keep = b.abs() > tol * scale
    out = w[keep] / b[keep].unsqueeze(1)
    return out[torch.isfinite(out).all(dim=1)]


def best_psnr(
    originals: torch.Tensor, candidates: torch.Tensor, data_range: tuple[float, float]
) -> torch.Tensor:
    r"""For each original, the PSNR (dB) of the candidate closest to it.

    :math:`\max_c 10 \log_{10} R^2 / \mathrm{MSE}(c, x)` with :math:`R` the width of
    ``data_range``; ``-inf`` for every original when there is no candidate.

    Examples
    --------
    >>> import torch
    >>> out = best_psnr(torch.zeros(2, 4), torch.full((1, 4), 0.1), (0.0, 1.0))
    >>> [round(v, 6) for v in out.tolist()]
    [20.0, 20.0]
    """
    x = originals.reshape(len(originals), -1).to(torch.float64)
    if len(candidates) == 0:
        return torch.full((len(x),), -math.inf, dtype=torch.float64)
    c = candidates.reshape(len(candidates), -1).to(torch.float64)
    mse = torch.cdist(x, c).pow(2).div(x.shape[1]).min(dim=1).values
    span = float(data_range[1] - data_range[0])
    return 10 * torch.log10(span**2 / mse)


def recovered_share(
    originals: torch.Tensor,
    candidates: torch.Tensor,
    data_range: tuple[float, float],
    threshold_db: float = RECOVERED_DB,
) -> float:
    """Share of ``originals`` some candidate reproduces at PSNR ≥ ``threshold_db``.

    Examples
    --------
    >>> import torch
    >>> recovered_share(torch.eye(4), torch.eye(4)[:3] + 1e-3, (0.0, 1.0))
    0.75
    """
    if len(originals) == 0:
        raise InvalidSettingError("recovered_share needs at least one original")
    return float((best_psnr(originals, candidates, data_range) >= threshold_db).double().mean())


class CraftedModelAttack(Describable):
    """Base class of the attacks that craft the model the server sends.

    Subclasses implement :meth:`craft` (change the model in place) and :meth:`read` (the
    candidates of the crafted rows). :meth:`__call__` has the call shape of every inversion
    attack (:class:`~fedsim.inversion.base.InversionAttack`), so the probe calls both alike;
    ``num_classes``, ``batch_size`` and ``label`` are not needed (labels come back as −1).
    """

    name: ClassVar[str] = "crafted-model attack"
    #: The probe sends :meth:`craft`'s model to the clients before it reads their updates.
    crafts_model: ClassVar[bool] = True

    def craft(self, model: nn.Module, public: torch.Tensor) -> None:
        """Craft ``model``'s parameters in place from the server's ``public`` inputs."""
        raise NotImplementedError

    def read(self, grad_w: torch.Tensor, grad_b: torch.Tensor) -> torch.Tensor:
        """``(m, d)`` candidates from the first layer's weight and bias gradients."""
        raise NotImplementedError

    def __call__(
        self,
        model: nn.Module,
        target_grads: Sequence[torch.Tensor],
        *,
        input_shape: tuple[int, int, int],
        num_classes: int = 0,
        batch_size: int = 1,
        data_range: tuple[float, float] = (0.0, 1.0),
        label: torch.Tensor | None = None,
    ) -> Reconstruction:
        """Read the inputs behind ``target_grads`` (a gradient or update of the crafted model).

        Returns
        -------
        Reconstruction
            ``x``: the candidates ``(m, C, H, W)`` clamped to ``data_range`` (``m`` may be 0),
            ``labels``: −1 each, ``grad_loss``: 0.
        """
        index, _, _ = first_linear(model, math.prod(input_shape))
        grads = list(target_grads)
        candidates = self.read(grads[index].detach().cpu(), grads[index + 1].detach().cpu())
        lo, hi = data_range
        x = candidates.reshape(-1, *input_shape).clamp(lo, hi).to(torch.float32)
        return Reconstruction(x=x, labels=torch.full((len(x),), -1), grad_loss=0.0)

r"""Models as functions of [0, 1] pixels: attacks perturb images before normalisation.

``digits`` and ``synthetic`` are stored in [0, 1] (``Dataset.mean is None``); the real image
datasets are standardised per channel when loaded (:mod:`fedsim.data.vision`), so a model
trained on them expects :math:`(x - \mu_c)/\sigma_c`. An ε-ball is meaningful in pixel space
only, so every attack here takes a model of pixels: wrap a model of normalised inputs with
:func:`model_in_pixel_space`, and map a normalised test set back with :func:`to_pixel_space`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedsim.errors import InvalidSettingError

__all__ = ["PixelSpaceModel", "model_in_pixel_space", "to_pixel_space"]


class PixelSpaceModel(nn.Module):
    r"""``model`` composed with the dataset's normalisation: :math:`x \mapsto f((x - \mu)/\sigma)`.

    ``mean`` and ``std`` are non-persistent buffers (they move with ``.to(device)`` and are not
    part of the ``state_dict``); ``model``'s parameters are shared, not copied.

    Parameters
    ----------
    model : nn.Module
        Maps normalised inputs ``(B, C, H, W)`` to logits.
    mean, std : sequence of float
        The per-channel statistics the dataset was standardised with.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not mean or min(std) <= 0:
            raise InvalidSettingError(
                "model_in_pixel_space needs one mean and one std > 0 per channel, "
                f"got mean={tuple(mean)}, std={tuple(std)}"
            )
        self.model = model
        shape = (1, len(mean), 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of pixel-space inputs ``x`` in [0, 1]."""
        return self.model((x - self.mean) / self.std)


def model_in_pixel_space(
    model: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None
) -> nn.Module:
    r"""A model of [0, 1] pixels: ``model`` itself when the data is not normalised.

    Parameters
    ----------
    model : nn.Module
        The trained model, taking inputs as the dataset stores them.
    mean, std : sequence of float or None
        ``Dataset.mean`` / ``Dataset.std``; ``None`` means the data already is in [0, 1].

    Returns
    -------
    nn.Module
        :math:`x \mapsto f((x - \mu)/\sigma)`, or ``model`` when ``mean`` is ``None``.

    Examples
    --------
    >>> lin = nn.Linear(1, 1, bias=False)
    >>> _ = lin.weight.data.fill_(1.0)
    >>> wrapped = model_in_pixel_space(nn.Sequential(nn.Flatten(), lin), [0.5], [0.25])
    >>> wrapped(torch.ones(1, 1, 1, 1)).item()  # (1 - 0.5) / 0.25
    2.0
    >>> model_in_pixel_space(lin, None, None) is lin
    True
    """
    if mean is None or std is None:
        return model
    return PixelSpaceModel(model, mean, std)


def to_pixel_space(
    x: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None
) -> torch.Tensor:
    r"""Undo the dataset's normalisation: :math:`x \sigma_c + \mu_c`, clipped to [0, 1].

    Examples
    --------
    >>> to_pixel_space(torch.tensor([[[[-2.0, 2.0]]]]), [0.5], [0.25]).tolist()
    [[[[0.0, 1.0]]]]
    """
    if mean is None or std is None:
        return x
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x * s + m).clamp(0.0, 1.0)

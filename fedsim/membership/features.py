r"""Image features a property-inference scenario can name (``property: {feature: <name>}``).

A feature is a per-example statistic :math:`f(x)` of the pixels; an example **has** the
feature when the statistic is above the dataset's median,

.. math::
    h(x) = [\,f(x) > \operatorname{median}_{x' \in D_\text{train}} f(x')\,],

so about half of the whole training pool has it, whatever the dataset. A data set holds the
property when at least ``min_fraction`` of its examples have the feature
(:func:`fedsim.membership.property.holds_share`); with an IID split every client's share is
near 1/2, so the property only tells clients apart where their shares vary (a split by the
feature, or ``min_fraction`` near a share some clients exceed and others do not).

Registered features (:data:`FEATURES`):

- ``bright``: :math:`f(x) = \frac{1}{P}\sum_p x_p`, the mean pixel intensity over all
  :math:`P` pixels and channels (the image has more ink / light than the median image);
- ``contrast``: :math:`f(x) = \sqrt{\frac{1}{P}\sum_p (x_p - \bar{x})^2}`, the pixels'
  standard deviation (a sharper, higher-contrast image than the median one).

Both are the kind of data feature uncorrelated with the task's label that Melis, Song,
De Cristofaro, Shmatikov (IEEE S&P 2019) infer from updates.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fedsim.registry import Registry

__all__ = ["FEATURES", "ImageFeature"]

FEATURES: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("image feature")


@FEATURES.register("bright")
def brightness(x: torch.Tensor) -> torch.Tensor:
    """``(n,)`` each image's mean pixel intensity.

    Examples
    --------
    >>> brightness(torch.tensor([[[0.0, 1.0]], [[1.0, 1.0]]]))
    tensor([0.5000, 1.0000], dtype=torch.float64)
    """
    return x.reshape(len(x), -1).to(torch.float64).mean(dim=1)


@FEATURES.register("contrast")
def contrast(x: torch.Tensor) -> torch.Tensor:
    """``(n,)`` each image's pixel standard deviation (population, over pixels and channels).

    Examples
    --------
    >>> contrast(torch.tensor([[[0.0, 1.0]], [[1.0, 1.0]]]))
    tensor([0.5000, 0.0000], dtype=torch.float64)
    """
    return x.reshape(len(x), -1).to(torch.float64).std(dim=1, correction=0)


class ImageFeature:
    """A named feature, thresholded at its median over a reference pool (the training set).

    Parameters
    ----------
    name : str
        A :data:`FEATURES` name (unknown: :class:`~fedsim.errors.UnknownNameError` listing
        the known ones).
    reference : Tensor
        ``(n, ...)`` images whose median statistic is the threshold.

    Examples
    --------
    >>> pool = torch.arange(5.0).reshape(5, 1, 1)  # brightness 0, 1, 2, 3, 4: median 2
    >>> feature = ImageFeature("bright", pool)
    >>> feature.threshold, feature.has(pool).tolist()
    (2.0, [False, False, False, True, True])
    """

    def __init__(self, name: str, reference: torch.Tensor) -> None:
        self.name = name
        self.statistic = FEATURES.get(name)
        self.threshold = float(torch.nan_to_num(self.statistic(reference)).median())

    def has(self, x: torch.Tensor) -> torch.Tensor:
        """``(n,)`` bool: which images have the feature (statistic above the threshold)."""
        return torch.nan_to_num(self.statistic(x)) > self.threshold

r"""An independent judge of generated images: whether a fake is recognisable as its class.

A generator trained against the global model may only find inputs that *fool that model*
(adversarial patterns) rather than images of the class. The judge tells them apart: a
classifier of another family (an RBF support-vector machine on raw pixels, not a network, so
a network's adversarial directions transfer poorly to it) trained on labelled real images
the attacker never had (the server's held-out set). The attack's *fidelity* is the share of
fakes the judge assigns to the target class :math:`c`:

.. math:: \text{fidelity} = \frac{1}{k}\sum_{i=1}^{k} \mathbb{1}[J(x_i) = c],

with :math:`x_1..x_k` the fakes and :math:`J` the judge. Chance for images the judge reads
as random classes is about :math:`1/K` for :math:`K` classes.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.svm import SVC

from fedsim.errors import InvalidSettingError

__all__ = ["ReferenceJudge"]


class ReferenceJudge:
    """An RBF SVM on flattened pixels in [0, 1] (scikit-learn's ``SVC``, ``gamma='scale'``).

    Parameters
    ----------
    images : torch.Tensor
        ``(n, C, H, W)`` real images in [0, 1] to train on.
    labels : torch.Tensor
        ``(n,)`` their classes; at least two distinct.

    Raises
    ------
    InvalidSettingError
        Shapes that do not match, or a single class.

    Examples
    --------
    >>> x = torch.cat([torch.zeros(5, 1, 2, 2), torch.ones(5, 1, 2, 2)])
    >>> judge = ReferenceJudge(x, torch.tensor([0] * 5 + [1] * 5))
    >>> judge.predict(torch.full((2, 1, 2, 2), 0.9)).tolist()
    [1, 1]
    >>> judge.fidelity(torch.full((4, 1, 2, 2), 0.1), target_class=1)
    0.0
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
            raise InvalidSettingError(
                f"the judge needs images (n, C, H, W) and n labels, got {tuple(images.shape)} "
                f"and {tuple(labels.shape)}"
            )
        if len(torch.unique(labels)) < 2:
            raise InvalidSettingError("the judge needs real images of at least two classes")
        self.svm = SVC(kernel="rbf", gamma="scale")
        self.svm.fit(_features(images), labels.cpu().numpy())

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The judge's class for each image ``(k, C, H, W)`` in [0, 1]."""
        return torch.from_numpy(self.svm.predict(_features(images)).astype(np.int64))

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """The judge's accuracy on labelled real images (how far its verdicts can be trusted)."""
        return float((self.predict(images) == labels.cpu()).double().mean())

    def fidelity(self, images: torch.Tensor, target_class: int) -> float:
        """Share of ``images`` the judge assigns to ``target_class`` (see the module)."""
        return float((self.predict(images) == target_class).double().mean())


def _features(images: torch.Tensor) -> np.ndarray:
    return images.detach().to("cpu", torch.float64).flatten(1).clamp(0, 1).numpy()

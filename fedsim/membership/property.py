r"""Property inference from updates (Melis, Song, De Cristofaro, Shmatikov, IEEE S&P 2019).

Does an update come from data that holds a property (examples of class c, or of a named image
feature, :mod:`fedsim.membership.features`, in at least a share of the data)? The attacker
(a curious server reading each client's update, or a client reading the global model's change)
computes updates of its own from the same global model on auxiliary data **with** and
**without** the property (:func:`shadow_mixtures` draws their class mixes,
:func:`shadow_shares` their shares of a feature), and trains a binary classifier on them; each
observed update is then scored by that classifier:

.. math::
    \phi(\Delta) = \frac{\Delta_L}{\lVert \Delta_L \rVert_2}, \qquad
    s(\Delta) = \Pr[\text{property} \mid \phi(\Delta)] = \sigma(w^\top \phi(\Delta) + b)

where :math:`\Delta_L` are the update's coordinates of the model's output layer (its weights and
bias: the layer whose change most directly reflects the labels seen, Melis et al.'s "aggregated
features" in place of the whole update) and (w, b) a logistic regression fitted to the shadow
updates' features (sklearn, L2-regularised, on standardised features). Normalising each update
to unit norm makes the score read the update's direction, not its size, which differs between
the attacker's shadows and the observed updates (other data sizes, clipping, DP noise,
averaging).

The attack is scored by the AUC of :math:`s` against the ground truth (which observed updates
came from data holding the property), :func:`property_auc`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fedsim.errors import InvalidSettingError
from fedsim.membership.roc import roc_auc

__all__ = [
    "PropertyClassifier",
    "holds_property",
    "holds_share",
    "property_auc",
    "shadow_mixtures",
    "shadow_shares",
    "update_features",
]

RULE = "property inference"


def update_features(updates: torch.Tensor, coordinates: slice) -> np.ndarray:
    r"""``(n, k)`` features :math:`\Delta_L / \lVert\Delta_L\rVert` of an ``(n, d)`` update matrix.

    ``coordinates`` picks :math:`\Delta_L` (the output layer's slice of the flat update); a zero
    (or non-finite) row gives zeros.

    Examples
    --------
    >>> update_features(torch.tensor([[9.0, 3.0, 4.0], [1.0, 0.0, 0.0]]), slice(1, 3))
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
    part = torch.nan_to_num(updates[:, coordinates].to(torch.float64), posinf=0.0, neginf=0.0)
    norms = part.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, part / norms.clamp(min=1e-300), 0.0).numpy()


def holds_share(has: torch.Tensor, min_fraction: float) -> bool:
    """Whether a data set holds the property: at least ``min_fraction`` of its examples have it.

    ``has`` is the ``(n,)`` bool of which examples have it (a class, a named feature); an empty
    data set holds nothing.

    Examples
    --------
    >>> holds_share(torch.tensor([True, False, True]), 0.6), holds_share(torch.tensor([True]), 1.0)
    (True, True)
    >>> holds_share(torch.tensor([True, False, False]), 0.5)
    False
    """
    if not len(has):
        return False
    return float(has.double().mean()) >= min_fraction


def holds_property(labels: torch.Tensor, target: int, min_fraction: float) -> bool:
    """Whether a data set holds the property: at least ``min_fraction`` of it is class ``target``.

    Examples
    --------
    >>> holds_property(torch.tensor([7, 1, 2, 7]), 7, 0.5)
    True
    >>> holds_property(torch.tensor([1, 2]), 7, 0.05)
    False
    """
    return holds_share(labels == target, min_fraction)


def shadow_mixtures(
    num_classes: int,
    target: int,
    count: int,
    min_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``(2·count, C)`` class mixes of the attacker's shadow data sets, and which hold the property.

    Each mix draws class proportions from a flat Dirichlet(1) (the attacker does not know how
    the clients' data are split); the first ``count`` ("with") then give class ``target`` a
    share drawn uniformly from [``min_fraction``, 1], the last ``count`` ("without") give it 0,
    and the other classes share the rest in their drawn proportions.

    Examples
    --------
    >>> mixes, has = shadow_mixtures(3, 0, 2, 0.1, np.random.default_rng(0))
    >>> mixes.shape, np.allclose(mixes.sum(axis=1), 1), has.tolist(), bool(mixes[2:, 0].max() == 0)
    ((4, 3), True, [True, True, False, False], True)
    """
    if not 0 <= target < num_classes:
        raise InvalidSettingError(f"{RULE}: class {target} is not one of 0..{num_classes - 1}")
    if count < 1:
        raise InvalidSettingError(f"{RULE} needs at least 1 shadow update per side, got {count}")
    if num_classes < 2:
        raise InvalidSettingError(f"{RULE} needs at least 2 classes, got {num_classes}")
    mixes = rng.dirichlet(np.ones(num_classes), size=2 * count)
    mixes[:, target] = 0.0
    mixes /= mixes.sum(axis=1, keepdims=True)
    share = np.concatenate([rng.uniform(min_fraction, 1.0, size=count), np.zeros(count)])
    mixes *= (1.0 - share)[:, None]
    mixes[:, target] = share
    return mixes, np.arange(2 * count) < count


def shadow_shares(
    count: int, min_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(2·count,)`` shares of examples with a feature in the shadow data sets, and which hold it.

    For a named feature (:mod:`fedsim.membership.features`) in place of a class: the first
    ``count`` ("with") draw their share uniformly from [``min_fraction``, 1], the last
    ``count`` ("without") from [0, ``min_fraction``) — just short of holding it, as a client's
    share under an uneven split may be.

    Examples
    --------
    >>> shares, has = shadow_shares(2, 0.6, np.random.default_rng(0))
    >>> bool(shares[:2].min() >= 0.6 > shares[2:].max()), has.tolist()
    (True, [True, True, False, False])
    """
    if count < 1:
        raise InvalidSettingError(f"{RULE} needs at least 1 shadow update per side, got {count}")
    if not 0 < min_fraction <= 1:
        raise InvalidSettingError(f"{RULE}: min_fraction must be in (0, 1], got {min_fraction}")
    shares = np.concatenate(
        [rng.uniform(min_fraction, 1.0, size=count), rng.uniform(0.0, min_fraction, size=count)]
    )
    return shares, np.arange(2 * count) < count


@dataclass
class PropertyClassifier:
    """The attacker's classifier: logistic regression on the updates' output-layer features.

    Parameters
    ----------
    coordinates : slice
        The output layer's coordinates in the flat update.
    regularization : float
        sklearn's ``C`` (inverse L2 strength), > 0.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> shadow = torch.from_numpy(rng.normal(size=(40, 3)))
    >>> shadow[:20, 2] += 3.0  # the property pushes coordinate 2 up
    >>> has = np.arange(40) < 20
    >>> clf = PropertyClassifier(slice(0, 3)).fit(shadow, has)
    >>> seen = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, -3.0]], dtype=torch.float64)
    >>> bool(clf.score(seen)[0] > 0.5 > clf.score(seen)[1])
    True
    """

    coordinates: slice
    regularization: float = 1.0

    def __post_init__(self) -> None:
        if not self.regularization > 0:
            raise InvalidSettingError(
                f"{RULE}: regularization must be > 0, got {self.regularization}"
            )
        self._model = make_pipeline(
            StandardScaler(), LogisticRegression(C=self.regularization, max_iter=1000)
        )

    def fit(self, updates: torch.Tensor, has_property: np.ndarray) -> PropertyClassifier:
        """Fit to the shadow updates ``(n, d)`` and whether each one's data held the property."""
        labels = np.asarray(has_property, dtype=bool)
        if labels.all() or not labels.any():
            raise InvalidSettingError(f"{RULE} needs shadow updates with and without the property")
        self._model.fit(update_features(updates, self.coordinates), labels)
        return self

    def score(self, updates: torch.Tensor) -> np.ndarray:
        """``(n,)`` each update's probability of coming from data with the property."""
        return self._model.predict_proba(update_features(updates, self.coordinates))[:, 1]


def property_auc(scores: np.ndarray, has_property: np.ndarray) -> float | None:
    """AUC of the scores against the truth; ``None`` unless both outcomes occur.

    Examples
    --------
    >>> property_auc(np.array([0.9, 0.2, 0.6]), np.array([True, False, False]))
    1.0
    >>> property_auc(np.array([0.9, 0.2]), np.array([True, True])) is None
    True
    """
    truth = np.asarray(has_property, dtype=bool)
    if truth.all() or not truth.any():
        return None
    return float(roc_auc(np.asarray(scores, dtype=np.float64), truth))

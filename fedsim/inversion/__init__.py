"""Gradient-inversion attacks of a curious server: DLG, iDLG and Inverting Gradients.

``build_inversion(name, **params)`` returns a callable attack; call it as
``attack(model, target_grads, input_shape=..., num_classes=..., batch_size=...,
data_range=..., label=...)`` to get a :class:`Reconstruction`. Turn a client's update into
target gradients with :func:`update_as_gradient` (after :func:`unflatten_like` for a flat
update), score the result with :func:`reconstruction_metrics`, and draw it with
:func:`save_reconstruction_grid`.
"""

from __future__ import annotations

from typing import Any

from fedsim.inversion import (  # noqa: F401  (register the attacks)
    dlg,
    fedavg_inversion,
    idlg,
    imprint,
    inverting_gradients,
    trap_weights,
)
from fedsim.inversion.base import InversionAttack, Reconstruction
from fedsim.inversion.labels import last_layer_weight_grad, recover_label, recover_labels
from fedsim.inversion.metrics import (
    label_accuracy,
    match_reconstructions,
    mse,
    psnr,
    reconstruction_metrics,
    ssim,
)
from fedsim.inversion.plot import save_reconstruction_grid
from fedsim.inversion.registry import INVERSION_ATTACKS
from fedsim.inversion.updates import model_gradients, unflatten_like, update_as_gradient

__all__ = [
    "INVERSION_ATTACKS",
    "InversionAttack",
    "Reconstruction",
    "build_inversion",
    "label_accuracy",
    "last_layer_weight_grad",
    "match_reconstructions",
    "model_gradients",
    "mse",
    "psnr",
    "reconstruction_metrics",
    "recover_label",
    "recover_labels",
    "save_reconstruction_grid",
    "ssim",
    "unflatten_like",
    "update_as_gradient",
]


def build_inversion(name: str, **params: Any) -> InversionAttack:
    """Build the inversion attack registered as ``name`` with validated ``params``.

    Raises
    ------
    UnknownNameError
        ``name`` is not registered (the message lists the known attacks).
    InvalidSettingError
        A parameter is unknown to the attack or has an invalid value.

    Examples
    --------
    >>> build_inversion("idlg", iterations=50).describe()
    'idlg(history_size=100, iterations=50, lr=1.0, restarts=1, seed=0)'
    >>> build_inversion("dlg", steps=3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: dlg has no parameter 'steps'; allowed: history_size, ...
    """
    return INVERSION_ATTACKS.build(name, **params)

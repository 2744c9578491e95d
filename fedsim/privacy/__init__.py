"""Differential privacy building blocks, free of Flower types.

- :mod:`fedsim.privacy.ledger`: per-client record-level ε across rounds (:class:`PrivacyLedger`).
- :mod:`fedsim.privacy.dp_sgd`: local DP-SGD with Opacus (:func:`train_dp_sgd`) and noise
  calibration for a whole run (:func:`calibrate_noise`).
- :mod:`fedsim.privacy.central`: client-level DP-FedAvg with fixed or adaptive clipping and its
  accounting (:class:`DPFedAvg`, :class:`CentralAccountant`).
- :mod:`fedsim.privacy.adaptive_clip`: quantile-tracking clip norm for DP-FedAvg
  (:class:`AdaptiveClip`).
"""

from __future__ import annotations

from fedsim.privacy.adaptive_clip import AdaptiveClip
from fedsim.privacy.central import (
    Amplification,
    CentralAccountant,
    CentralDPResult,
    DPFedAvg,
    central_epsilon,
    central_sample_rate,
    clip_updates,
)
from fedsim.privacy.dp_sgd import (
    DPSettings,
    DPTrainResult,
    calibrate_noise,
    local_steps,
    train_dp_sgd,
)
from fedsim.privacy.ledger import ACCOUNTANTS, AccountantName, PrivacyLedger, epsilon_from_history

__all__ = [
    "ACCOUNTANTS",
    "AccountantName",
    "AdaptiveClip",
    "Amplification",
    "CentralAccountant",
    "CentralDPResult",
    "DPFedAvg",
    "DPSettings",
    "DPTrainResult",
    "PrivacyLedger",
    "calibrate_noise",
    "central_epsilon",
    "central_sample_rate",
    "clip_updates",
    "epsilon_from_history",
    "local_steps",
    "train_dp_sgd",
]

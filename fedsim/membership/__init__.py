"""Membership inference (model → data), free of Flower types.

- :mod:`fedsim.membership.roc`: ROC curve, AUC, TPR at low FPR, balanced accuracy.
- :mod:`fedsim.membership.intervals`: Clopper–Pearson intervals and the DP-consistency check of
  a measured (FPR, TPR) point.
- :mod:`fedsim.membership.scores`: per-example statistics of logits (loss, LiRA's φ, Pr(x|θ)).
- :mod:`fedsim.membership.lira`: LiRA, online and offline.
- :mod:`fedsim.membership.rmia`: RMIA.
- :mod:`fedsim.membership.updates`: a curious server's scores from a client's updates
  (example- and client-level), and per-example gradients.
- :mod:`fedsim.membership.property`: property inference from updates (Melis et al., S&P 2019).
- :mod:`fedsim.membership.sampling`: seeded member/non-member sets, reference-model halves,
  canary inclusion bits.
"""

from __future__ import annotations

from fedsim.membership.intervals import (
    RocPointInterval,
    clopper_pearson,
    dp_consistent,
    dp_region_contains,
    roc_point_interval,
)
from fedsim.membership.lira import lira_offline, lira_online
from fedsim.membership.property import (
    PropertyClassifier,
    holds_property,
    property_auc,
    shadow_mixtures,
    update_features,
)
from fedsim.membership.rmia import rmia_scores
from fedsim.membership.roc import (
    MembershipMetrics,
    RocCurve,
    balanced_accuracy,
    membership_metrics,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from fedsim.membership.sampling import (
    MembershipSplit,
    canary_inclusion,
    membership_split,
    reference_masks,
)
from fedsim.membership.scores import logit_confidence, loss_score, true_label_probability
from fedsim.membership.updates import (
    client_level_scores,
    example_gradients,
    gradient_norm_score,
    update_cosine_score,
)

__all__ = [
    "MembershipMetrics",
    "MembershipSplit",
    "PropertyClassifier",
    "RocCurve",
    "RocPointInterval",
    "balanced_accuracy",
    "canary_inclusion",
    "client_level_scores",
    "clopper_pearson",
    "dp_consistent",
    "dp_region_contains",
    "example_gradients",
    "gradient_norm_score",
    "holds_property",
    "lira_offline",
    "lira_online",
    "logit_confidence",
    "loss_score",
    "membership_metrics",
    "membership_split",
    "property_auc",
    "reference_masks",
    "rmia_scores",
    "shadow_mixtures",
    "roc_auc",
    "roc_curve",
    "roc_point_interval",
    "tpr_at_fpr",
    "true_label_probability",
    "update_cosine_score",
    "update_features",
]

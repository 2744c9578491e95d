"""Model extraction (model → model): steal a model's function through its prediction API.

A :class:`Victim` answers queries (``probabilities``, ``top1`` or ``rounded``) and counts them;
:class:`KnockoffNets` and :class:`Copycat` spend a query budget on images the attacker holds
(:mod:`fedsim.extraction.queries`) and train a surrogate on the answers; :func:`fidelity` and
:func:`accuracy` score the surrogate on a held-out set, :func:`extraction_curve` against the
budget.

Written here rather than wrapping ART's ``KnockoffNets``/``CopycatCNN`` (which a test uses as
the reference): ART draws the transfer set from NumPy's global RNG and trains through its
classifier wrapper (hard labels only for Copycat, NumPy round trips per batch); fedsim needs
seeded :class:`torch.Generator` draws, the victim's answer types and budget, soft-label
training and nested budgets for the curve.
"""

from __future__ import annotations

from fedsim.extraction.base import ExtractionAttack, ExtractionResult
from fedsim.extraction.copycat import Copycat
from fedsim.extraction.curve import CurvePoint, extraction_curve
from fedsim.extraction.knockoff import KnockoffNets
from fedsim.extraction.metrics import (
    ExtractionMetrics,
    accuracy,
    extraction_metrics,
    fidelity,
    predict,
)
from fedsim.extraction.queries import (
    draw_queries,
    noise_images,
    permuted_pixels,
    public_split,
    translate,
)
from fedsim.extraction.registry import EXTRACTION_ATTACKS
from fedsim.extraction.surrogate import (
    build_surrogate,
    check_train_settings,
    soft_targets,
    train_surrogate,
)
from fedsim.extraction.victim import ANSWER_TYPES, AnswerType, QueryBudgetError, Victim, answer

__all__ = [
    "ANSWER_TYPES",
    "AnswerType",
    "Copycat",
    "CurvePoint",
    "EXTRACTION_ATTACKS",
    "ExtractionAttack",
    "ExtractionMetrics",
    "ExtractionResult",
    "KnockoffNets",
    "QueryBudgetError",
    "Victim",
    "accuracy",
    "answer",
    "build_surrogate",
    "check_train_settings",
    "draw_queries",
    "extraction_curve",
    "extraction_metrics",
    "fidelity",
    "noise_images",
    "permuted_pixels",
    "predict",
    "public_split",
    "soft_targets",
    "train_surrogate",
    "translate",
]

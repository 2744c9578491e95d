"""Empirical differential-privacy audits: lower bounds (or estimates) of ε from canaries.

Each sits next to the accounted ε: a lower bound above the accounted ε is a bug in the mechanism
or its accountant. Free of Flower types.

- :mod:`fedsim.audit.one_run`: one training run, m canaries each inserted with probability ½
  (Steinke, Nasr, Jagielski, NeurIPS 2023).
- :mod:`fedsim.audit.one_shot`: one-shot estimate for FL from random canary client updates
  (Andrew et al., ICLR 2024).
- :mod:`fedsim.audit.canaries`: a run's canaries (examples or clients), drawn from its scenario.
- :mod:`fedsim.audit.gradient`: white-box gradient (Dirac) canaries inserted into DP-SGD steps or
  DP-FedAvg's sum (Nasr et al., USENIX Security 2023).
- :mod:`fedsim.audit.classic`: Clopper–Pearson bounds on FPR/FNR over many runs (Jagielski,
  Ullman, Oprea, NeurIPS 2020).
"""

from __future__ import annotations

from fedsim.audit.canaries import (
    ExampleCanaries,
    audit_kind,
    canary_direction,
    canary_participates,
    example_canaries,
    insert_example_canaries,
)
from fedsim.audit.classic import clopper_pearson_epsilon
from fedsim.audit.gradient import GradientCanaries, canary_insertions, gradient_canaries
from fedsim.audit.one_run import (
    OneRunAudit,
    one_run_audit,
    one_run_audit_scan,
    one_run_epsilon,
    one_run_p_value,
)
from fedsim.audit.one_shot import (
    OneShotEstimate,
    canary_cosines,
    gaussian_delta,
    gaussian_epsilon,
    one_shot_epsilon,
    random_canaries,
    two_sample_epsilon,
)

__all__ = [
    "ExampleCanaries",
    "GradientCanaries",
    "OneRunAudit",
    "OneShotEstimate",
    "audit_kind",
    "canary_cosines",
    "canary_direction",
    "canary_insertions",
    "canary_participates",
    "clopper_pearson_epsilon",
    "example_canaries",
    "gaussian_delta",
    "gaussian_epsilon",
    "gradient_canaries",
    "insert_example_canaries",
    "one_run_audit",
    "one_run_audit_scan",
    "one_run_epsilon",
    "one_run_p_value",
    "one_shot_epsilon",
    "random_canaries",
    "two_sample_epsilon",
]

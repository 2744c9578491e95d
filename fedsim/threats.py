"""The vocabulary of threats: the four directions, and what a probe's attacker may see.

fedsim organises threats as recent surveys do, as a closed loop between data and models:
**data → model** (poisoning and backdoors; evasion at test time), **model → data** (gradient
inversion, membership inference, privacy audits), **model → model** (extraction) and
**data → data** (watermark removal). Every attack, defence and probe belongs to one of them,
and the per-run report is organised by them.
"""

from __future__ import annotations

__all__ = ["DIRECTIONS", "THREAT_MODELS"]

DIRECTIONS = ("data→model", "model→data", "model→model", "data→data")
"""The four threat directions, in the order reports show them."""

THREAT_MODELS = {
    "update": "each client's update as it arrives (a curious server)",
    "aggregate": "the global model's change between rounds (any client)",
    "global_model": "the global model's weights (white-box: any client, or a leaked copy)",
    "query": "the global model's outputs only (a black-box outsider)",
}
"""What a probe's attacker may see, by name."""

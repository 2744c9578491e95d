"""Pre-aggregation stages and the pipeline that runs them in front of a rule.

A scenario's ``defense.pre: [bucketing, norm_bound]`` turns into
``Pipeline([Bucketing(...), NormClip(...)], rule)``: each stage maps the round's rows to new
rows (bucket means, clipped updates), the rule aggregates the last rows, and the pipeline maps
the rule's ``accepted`` back to the client ids behind the accepted rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from fedsim.components import Checkpointable, Describable
from fedsim.errors import InvalidSettingError
from fedsim.validation import require_int
from server.aggregators.base import Aggregate, Aggregator

__all__ = ["ByzantineStage", "Pipeline", "PreStage", "StageOutput"]


@dataclass(frozen=True)
class StageOutput:
    """Rows produced by a pre-aggregation stage.

    Attributes
    ----------
    updates : torch.Tensor
        ``(m, d)`` float64 rows for the next stage or the rule.
    weights : torch.Tensor
        ``(m,)`` weights of those rows.
    client_ids : list[int]
        ``m`` distinct ids for the rows (client ids, or bucket indices).
    groups : list[list[int]]
        For each output row, the *input row indices* it was made from.
    """

    updates: torch.Tensor
    weights: torch.Tensor
    client_ids: list[int]
    groups: list[list[int]]


class PreStage(Describable, Checkpointable):
    """Base class of pre-aggregation stages (registered in ``PRE_STAGES``).

    A stage validates its settings in ``__init__``, says how many rows it produces from n
    (:meth:`out_rows`) and maps one round's rows in :meth:`transform`. Randomised stages own a
    seeded generator and expose it through :meth:`state_dict`.
    """

    name: ClassVar[str] = "stage"

    def out_rows(self, n: int) -> int:
        """Return how many rows the stage makes from ``n`` (default: as many)."""
        return n

    def transform(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> StageOutput:
        """Map one round's rows (validated float64 inputs)."""
        raise NotImplementedError


class ByzantineStage(PreStage):
    """A pre-stage that assumes ``f`` Byzantine rows among n and needs n > f (NNM, ARC)."""

    def __init__(self, f: int) -> None:
        self.f = require_int(self.name, "f", f, minimum=0)

    def out_rows(self, n: int) -> int:
        """Return n; raise unless n > f."""
        if n <= self.f:
            raise InvalidSettingError(f"{self.name} needs n > f, got n={n}, f={self.f}")
        return n


class Pipeline(Aggregator):
    """Pre-aggregation stages followed by a rule; itself an :class:`Aggregator`.

    ``accepted`` is the sorted list of client ids behind the rows the rule accepted (all the
    clients averaged into an accepted bucket), or ``None`` if the rule does not select.
    ``info`` is the rule's, plus ``rows``, the number of rows the rule aggregated.

    Parameters
    ----------
    pre : sequence of PreStage
        Stages applied in order.
    rule : Aggregator
        The rule applied to the last stage's rows.

    Examples
    --------
    >>> import torch
    >>> from server.aggregators.bucketing import Bucketing
    >>> from server.aggregators.multikrum import MultiKrum
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> agg = Pipeline([Bucketing(bucket_size=1)], MultiKrum(f=0, m=2))
    >>> out = agg(u, torch.tensor([1.0, 1.0, 2.0]), [10, 11, 12])
    >>> out.update.tolist(), out.accepted, out.info["rows"]
    ([2.0, 0.0, 2.0], [10, 11], 3)
    """

    name = "pipeline"

    def __init__(self, pre: Sequence[PreStage], rule: Aggregator) -> None:
        if not isinstance(rule, Aggregator):
            raise InvalidSettingError(f"pipeline needs an Aggregator as its rule, got {rule!r}")
        for stage in pre:
            if not isinstance(stage, PreStage):
                raise InvalidSettingError(
                    f"pipeline stages must be PreStage objects, got {stage!r}"
                )
        self.pre = list(pre)
        self.rule = rule

    def check_round(self, n: int) -> None:
        """Check the rule against the number of rows it will actually receive."""
        super().check_round(n)
        rows, path = n, []
        for stage in self.pre:
            rows = stage.out_rows(rows)
            path.append(stage.describe())
        try:
            self.rule.check_round(rows)
        except InvalidSettingError as e:
            if not path:
                raise
            raise InvalidSettingError(
                f"after {' → '.join(path)} the {n} updates become {rows} rows: {e}"
            ) from e

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Run the stages, the rule, and map ``accepted`` back to client ids."""
        members = [[cid] for cid in client_ids]
        rows, row_weights, row_ids = updates, weights, list(client_ids)
        for stage in self.pre:
            out = stage.transform(rows, row_weights, row_ids)
            members = [[m for r in group for m in members[r]] for group in out.groups]
            rows, row_weights, row_ids = out.updates, out.weights, out.client_ids
        result = self.rule(rows, row_weights, row_ids)
        accepted = None
        if result.accepted is not None:
            row_of = {cid: r for r, cid in enumerate(row_ids)}
            accepted = sorted({m for cid in result.accepted for m in members[row_of[cid]]})
        info = {**(result.info or {}), "rows": int(rows.shape[0])}
        return Aggregate(update=result.update, accepted=accepted, info=info)

    def applied(self, change: torch.Tensor) -> None:
        """Pass the applied change of the global model on to the rule."""
        self.rule.applied(change)

    def state_dict(self) -> dict[str, Any]:
        """Return the stages' and the rule's state."""
        return {"pre": [s.state_dict() for s in self.pre], "rule": self.rule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        try:
            pre, rule = state["pre"], state["rule"]
        except KeyError as e:
            raise InvalidSettingError(f"pipeline state lacks key {e.args[0]!r}") from e
        if len(pre) != len(self.pre):
            raise InvalidSettingError(
                f"pipeline state has {len(pre)} stages, this pipeline {len(self.pre)}"
            )
        for stage, stage_state in zip(self.pre, pre, strict=True):
            stage.load_state_dict(stage_state)
        self.rule.load_state_dict(rule)

    def describe(self) -> str:
        """Name the stages and the rule in order, e.g. ``bucketing(...) → krum(f=1)``."""
        return " → ".join([s.describe() for s in self.pre] + [self.rule.describe()])

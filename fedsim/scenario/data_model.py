"""``data:`` and ``model:`` blocks: the dataset and its split among clients, the model."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator

from fedsim.scenario.block import StrictBlock

__all__ = ["MAX_CLIENTS", "DataConfig", "ModelConfig"]

MAX_CLIENTS = 10_000_000
"""Largest ``data.num_clients``: a cross-device population. The in-process runtimes keep
per-client objects only for sampled clients, so memory beyond the data grows with
``clients.per_round``, not with the population (Ray's engine still starts one node each)."""


class DataConfig(StrictBlock):
    """``data:`` which dataset, and how it is split among clients."""

    dataset: str = "digits"
    path: str | None = Field(
        None,
        min_length=1,
        description="local copy (save_to_disk dir, parquet, image folder); made absolute "
        "against the working directory",
    )
    partition: Literal["iid", "dirichlet", "shards", "natural"] = "iid"
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration (smaller = more skew)")
    shards_per_client: int = Field(2, ge=1, description="classes per client for 'shards'")
    num_clients: int = Field(
        10,
        ge=1,
        le=MAX_CLIENTS,
        description="clients in the population (cross-device: millions, a few sampled a round)",
    )
    test_fraction: float = Field(0.2, gt=0, lt=1)
    params: dict[str, Any] = Field(default_factory=dict, description="dataset-specific settings")
    tasks: list[str] | None = Field(
        None,
        description="multi-task federation: task names over the same inputs (fedsim.data.tasks; "
        "the first an identity task: label, or digit on digits/mnist), e.g. [digit, parity]",
    )
    task_assignment: Literal["all", "round_robin"] = Field(
        "all",
        description="which tasks a client trains: all of them, or task i mod k for client i",
    )

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, tasks: list[str] | None) -> list[str] | None:
        if tasks is not None and (not tasks or len(set(tasks)) != len(tasks)):
            raise ValueError("a non-empty list of distinct task names, or null")
        return tasks

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str | None) -> str | None:
        # Ray workers need not share the driver's working directory: resolve it once here.
        return None if path is None else os.path.abspath(os.path.expanduser(path))


class ModelConfig(StrictBlock):
    """``model:`` a registry name and its settings."""

    name: str = "cnn"
    params: dict[str, Any] = Field(default_factory=dict)

"""``ray:`` and ``vectorized:`` blocks: how the Ray and vectorized runtimes use the machine."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedsim.scenario.block import StrictBlock

__all__ = ["RayConfig", "VectorizedConfig"]


class RayConfig(StrictBlock):
    """``ray:`` how the Ray runtime uses the machine or an existing cluster."""

    engine: Literal["fedsim", "flower"] = Field(
        "fedsim",
        description="fedsim: a pool of actors, each round's messages dealt to them in one call "
        "per actor; flower: Flower's simulation engine (run_simulation), one call per client",
    )
    address: str | None = Field(None, description="attach to this Ray cluster (e.g. 'auto')")
    client_cpus: float = Field(1.0, gt=0)
    client_gpus: float | None = Field(None, ge=0, le=1, description="GPU share per client")


class VectorizedConfig(StrictBlock):
    """``vectorized:`` how the vectorized runtime batches a round's clients."""

    chunk_size: int | None = Field(
        None,
        ge=1,
        description="clients trained together per batched chunk (default: as many as fit in "
        "half the free GPU memory; 16 on the CPU)",
    )

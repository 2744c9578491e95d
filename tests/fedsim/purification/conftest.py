"""One intra-op thread for these small models (the clients' and probes' setting)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from fedsim.training import single_thread


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with single_thread(torch.device("cpu")):
        yield

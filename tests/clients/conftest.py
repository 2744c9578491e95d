"""Every test here builds Flower messages, as a running ServerApp does."""

from __future__ import annotations

import pytest
from flwr.supercore.task_identity import TaskIdentity


@pytest.fixture(autouse=True)
def task_identity() -> None:
    """Flower's ``Message()`` reads the task identity a running ServerApp would have set."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1

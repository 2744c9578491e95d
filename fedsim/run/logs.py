"""Keep Flower's per-round INFO logging out of the way unless asked for."""

from __future__ import annotations

import logging

__all__ = ["quiet_flower"]


def quiet_flower(verbose: bool = False) -> None:
    """Show Flower's logs at INFO when ``verbose``, else only its errors.

    Flower configures its ``flwr`` logger (with its own console handler) when first imported,
    so this imports it first, then sets the level; propagation is switched off so records are
    not printed twice by a root handler.
    """
    import flwr.supercore.logger  # noqa: F401  (configures the "flwr" logger on import)

    flwr_logger = logging.getLogger("flwr")
    flwr_logger.setLevel(logging.INFO if verbose else logging.ERROR)
    flwr_logger.propagate = False

"""FLTrust's server update g₀: the clients' local procedure on the server's small root set.

The root set (``root_size`` samples) is a seeded draw from the held-out split
(:meth:`server.server_data.ServerData.split`); those samples are then left out of the server's
evaluation and of every probe, so the server never measures on data it trained on.
"""

from __future__ import annotations

import torch

from fedsim.federation import Federation
from fedsim.params import flat_params, load_flat_params
from fedsim.seeding import Stream, torch_generator
from fedsim.training import TrainSettings, train_local

__all__ = ["RootUpdate"]


class RootUpdate:
    """Compute g₀ = w₀ − w_global by training the global model on the root set.

    Parameters
    ----------
    fed : Federation
        Supplies the model and the clients' local procedure (``clients`` block).
    x, y : torch.Tensor
        The root set.
    """

    def __init__(self, fed: Federation, x: torch.Tensor, y: torch.Tensor) -> None:
        self.fed, self.x, self.y = fed, x, y
        self.settings = TrainSettings.from_clients(fed.scenario.clients)

    def __call__(self, global_weights: torch.Tensor, server_round: int) -> torch.Tensor:
        """The server's float64 update from ``global_weights`` in ``server_round``."""
        model = self.fed.model("root")
        load_flat_params(model, global_weights)
        generator = torch_generator(self.fed.scenario.seed, Stream.DEFENSE, server_round)
        train_local(model, self.x, self.y, self.settings, generator)
        return flat_params(model).to(torch.float64) - global_weights.to(torch.float64)

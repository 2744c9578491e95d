"""Federated score training: FedAvg with one client is central training; every client's own
images, and only those, feed its local steps; the average is weighted by data size."""

from __future__ import annotations

import pytest
import torch

from fedsim.errors import InvalidSettingError
from fedsim.purification import DiffusionPurifier
from fedsim.purification.diffusion import (
    VPSDE,
    ScoreNet,
    federated_score_training,
    train_score_net,
)
from fedsim.purification.diffusion import training as training_module
from fedsim.purification.diffusion.federated import _weighted_average


def _net() -> ScoreNet:
    torch.manual_seed(0)
    return ScoreNet(1, 8, 8)


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("local_steps", [1, 3])
def test_one_client_is_central_training_step_for_step(local_steps: int) -> None:
    # averaging one client's weights with weight n/n = 1 changes nothing, and the client keeps
    # its Adam moments and learning-rate schedule: R rounds of E steps = R·E central steps
    x = _images(20, 0)
    central, federated = _net(), _net()
    losses = train_score_net(
        central, VPSDE(), x, torch.Generator().manual_seed(1), 4 * local_steps, 8, 1e-3
    )
    fed_losses = federated_score_training(
        federated, VPSDE(), [x], [torch.Generator().manual_seed(1)], 4, local_steps, 8, 1e-3
    )
    for a, b in zip(central.parameters(), federated.parameters(), strict=True):
        assert torch.equal(a, b)
    per_round = torch.tensor(losses).view(4, local_steps).mean(dim=1)
    assert torch.allclose(per_round, torch.tensor(fed_losses), atol=1e-6)


def test_the_purifier_fits_federatedly_as_it_fits_centrally_with_one_client() -> None:
    x = (_images(16, 2) + 1) / 2
    central = DiffusionPurifier(width=8, train_steps=3, batch_size=4)
    central.fit(x, torch.Generator().manual_seed(5))
    federated = DiffusionPurifier(
        width=8, batch_size=4, training="federated", fed_rounds=3, local_steps=1
    )
    g = torch.Generator().manual_seed(5)
    federated.fit_federated([x], g, [g])
    probe = x[:2]
    assert torch.equal(
        central(probe, torch.Generator().manual_seed(7)),
        federated(probe, torch.Generator().manual_seed(7)),
    )


def test_every_client_trains_on_its_own_images_only(monkeypatch) -> None:
    # non-IID shares: client k holds images of the constant value k/4 (client 2 holds none)
    clients = [torch.full((n, 1, 8, 8), k / 4) for k, n in enumerate([3, 7, 0, 2])]
    seen: list[set[float]] = []
    real = training_module.dsm_loss

    def spy(net, sde, x0, generator):
        seen.append({round(float(v), 4) for v in x0.flatten()})
        return real(net, sde, x0, generator)

    monkeypatch.setattr(training_module, "dsm_loss", spy)  # dsm_step's loss
    gens = [torch.Generator().manual_seed(k) for k in range(4)]
    federated_score_training(_net(), VPSDE(), clients, gens, rounds=2, local_steps=3)
    # per round, clients 0, 1, 3 in turn, 3 local batches each, never mixing clients
    expected = [{0.0}] * 3 + [{0.25}] * 3 + [{0.75}] * 3
    assert seen == expected * 2


def test_the_average_is_weighted_by_client_data_size() -> None:
    states = [(2 / 3, {"w": torch.tensor([3.0]), "n": torch.tensor(5)})]
    states.append((1 / 3, {"w": torch.tensor([0.0]), "n": torch.tensor(9)}))
    out = _weighted_average(states)
    assert torch.allclose(out["w"], torch.tensor([2.0])) and int(out["n"]) == 5


@pytest.mark.parametrize(
    ("clients", "gens", "kwargs", "words"),
    [
        ([], 0, {}, "at least one client"),
        ([_images(2, 0)], 2, {}, "one generator per client"),
        ([_images(0, 0), _images(0, 1)], 2, {}, "every client has none"),
        ([_images(2, 0), torch.zeros(2, 1, 4, 4)], 2, {}, "one shape"),
        ([_images(2, 0)], 1, {"rounds": 0}, "rounds"),
        ([_images(2, 0)], 1, {"local_steps": 0}, "local_steps"),
    ],
)
def test_bad_settings_say_what_is_wrong(clients, gens, kwargs, words) -> None:
    generators = [torch.Generator() for _ in range(gens)]
    with pytest.raises(InvalidSettingError, match=words):
        federated_score_training(_net(), VPSDE(), clients, generators, **kwargs)


def test_bad_purifier_settings_are_refused() -> None:
    with pytest.raises(InvalidSettingError, match="training one of server, federated"):
        DiffusionPurifier(training="clients")
    with pytest.raises(InvalidSettingError, match="fed_rounds"):
        DiffusionPurifier(training="federated", fed_rounds=0)
    with pytest.raises(InvalidSettingError, match="client images"):
        DiffusionPurifier(training="federated").fit_federated(
            [torch.zeros(0, 1, 8, 8)], torch.Generator(), [torch.Generator()]
        )

"""The class-inference attacker of a run: who it is, its data without the class, its fakes.

``privacy.class_inference`` names (or lets fedsim choose) one of the federation's clients as
the attacker, and takes every example of the target class out of its partition
(:func:`without_class`): under a non-IID partition the default attacker often holds none
anyway; under IID the removal is what makes the threat model true. Both the ClientApp (the
active attacker's poison) and the server's probe (the images it scores and saves) build the
same :class:`ClassInferenceAttacker` from the scenario, so they train the same generator
against the same global model with the same seed (:meth:`ClassInferenceAttacker.seed`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from fedsim.data import FederatedData
from fedsim.errors import InvalidSettingError
from fedsim.inference.gan import GanClassInference
from fedsim.scenario import ClassInferenceConfig
from fedsim.seeding import Stream, derive_seed

__all__ = ["ClassInferenceAttacker", "choose_attacker", "without_class"]


def choose_attacker(data: FederatedData, target_class: int, attacker: int | None) -> int:
    """The attacker's client id: ``attacker`` if given, else the fewest-``target_class`` client.

    Ties go to the lowest id; only clients holding another class are candidates.

    Raises
    ------
    InvalidSettingError
        ``attacker`` is not a client, or would hold nothing once the class is taken out.

    Examples
    --------
    >>> from fedsim.data.datasets import Dataset
    >>> y = torch.tensor([3, 3, 1, 3, 2, 1])
    >>> ds = Dataset("toy", torch.zeros(6, 1, 1, 1), y, torch.zeros(0, 1, 1, 1), y[:0], 4)
    >>> data = FederatedData(ds, [np.array([0, 2]), np.array([1, 3]), np.array([4, 5])])
    >>> choose_attacker(data, 3, None), choose_attacker(data, 1, None)
    (2, 1)
    """
    labels = data.dataset.y_train.numpy()
    counts = [(int((labels[p] == target_class).sum()), len(p)) for p in data.partitions]
    if attacker is not None:
        if not 0 <= attacker < len(counts):
            raise InvalidSettingError(
                f"class_inference: attacker must be a client id in 0..{len(counts) - 1}, "
                f"got {attacker}"
            )
        if counts[attacker][0] == counts[attacker][1]:
            raise InvalidSettingError(
                f"class_inference: client {attacker} holds only class {target_class}; "
                "the attacker needs data of another class"
            )
        return attacker
    able = [c for c, (hit, size) in enumerate(counts) if size > hit]
    if not able:
        raise InvalidSettingError(f"class_inference: every client holds only {target_class}")
    return min(able, key=lambda c: (counts[c][0], c))


def without_class(data: FederatedData, client: int, target_class: int) -> FederatedData:
    """``data`` in which ``client``'s partition keeps every example except ``target_class``'s.

    The removed examples leave the training pool's use: no client trains on them.
    """
    labels = data.dataset.y_train.numpy()
    parts = [np.asarray(p) for p in data.partitions]
    parts[client] = parts[client][labels[parts[client]] != target_class]
    return replace(data, partitions=parts)


@dataclass(frozen=True)
class ClassInferenceAttacker:
    """The run's class-inference attacker.

    Attributes
    ----------
    client_id : int
        Who attacks.
    gan : GanClassInference
        The generator's training.
    active : bool
        Whether it poisons its own training with fakes.
    fake_label : int
        The label of its fakes (active).
    fakes : int
        Fakes it adds to its data per round (active).
    scenario_seed : int
        The run's seed.
    mean, std : tuple of float or None
        The dataset's per-channel normalisation (``None``: stored in [0, 1]).
    """

    client_id: int
    gan: GanClassInference
    active: bool
    fake_label: int
    fakes: int
    scenario_seed: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @classmethod
    def from_config(
        cls,
        config: ClassInferenceConfig,
        data: FederatedData,
        scenario_seed: int,
    ) -> ClassInferenceAttacker:
        """Build it from ``privacy.class_inference`` over the run's (unmodified) data.

        Raises
        ------
        InvalidSettingError
            A setting the GAN refuses, a target class or fake label outside the classes, or an
            attacker that cannot be one.
        """
        dataset = data.dataset
        classes = dataset.num_classes
        if config.target_class >= classes:
            raise InvalidSettingError(
                f"target_class must be a class in 0..{classes - 1}, got {config.target_class}"
            )
        fake = (
            (config.target_class + 1) % classes if config.fake_label is None else config.fake_label
        )
        if fake >= classes or fake == config.target_class:
            raise InvalidSettingError(
                f"fake_label must be a class in 0..{classes - 1} other than target_class "
                f"{config.target_class}, got {fake}"
            )
        settings = {"steps": config.steps, **config.params}
        try:
            gan = GanClassInference(config.target_class, classes, dataset.input_shape, **settings)
        except TypeError as e:
            raise InvalidSettingError(
                f"unknown generator setting in {sorted(config.params)}; allowed: latent_dim, "
                "width, batch_size, lr, jitter, noise"
            ) from e
        return cls(
            client_id=choose_attacker(data, config.target_class, config.attacker),
            gan=gan,
            active=config.mode == "active",
            fake_label=fake,
            fakes=config.fakes,
            scenario_seed=scenario_seed,
            mean=dataset.mean,
            std=dataset.std,
        )

    def seed(self, server_round: int) -> int:
        """The seed of the generator trained on the global model sent in ``server_round``."""
        return derive_seed(self.scenario_seed, Stream.CLASS_INFERENCE, server_round) % 2**31

    def poison(
        self,
        model: nn.Module,
        server_round: int,
        x: torch.Tensor,
        y: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The active attacker's training data in ``server_round``: its own, then its fakes.

        ``model`` is the round's global model as a function of pixels in [0, 1]; ``x`` its own
        images as the dataset stores them (normalised per channel when the dataset is), so the
        fakes are normalised the same way before they are appended.
        """
        images, labels = self.gan.fakes(model, self.seed(server_round), self.fakes, self.fake_label)
        images = images.to(x.device)
        if self.mean is not None and self.std is not None:
            shape = (1, len(self.mean), 1, 1)
            mean = torch.tensor(self.mean, device=x.device).view(shape)
            images = (images - mean) / torch.tensor(self.std, device=x.device).view(shape)
        return torch.cat([x, images.to(x.dtype)]), torch.cat([y, labels.to(y.dtype)])

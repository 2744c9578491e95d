"""Score-based diffusion purification: VP-SDE, score network, DSM training, samplers, purifier.

The ``diffusion`` purifier (:class:`DiffusionPurifier`, DiffPure: Nie et al., ICML 2022) and its
one-shot denoiser for denoised smoothing (Carlini et al., ICLR 2023). Pure torch.
"""

from fedsim.purification.diffusion.federated import federated_score_training
from fedsim.purification.diffusion.purifier import DiffusionPurifier
from fedsim.purification.diffusion.samplers import one_shot, probability_flow, reverse_sde
from fedsim.purification.diffusion.score_net import ScoreNet, time_embedding
from fedsim.purification.diffusion.sde import VPSDE
from fedsim.purification.diffusion.training import T_MIN, dsm_loss, train_score_net

__all__ = [
    "DiffusionPurifier",
    "ScoreNet",
    "T_MIN",
    "VPSDE",
    "dsm_loss",
    "federated_score_training",
    "one_shot",
    "probability_flow",
    "reverse_sde",
    "time_embedding",
    "train_score_net",
]

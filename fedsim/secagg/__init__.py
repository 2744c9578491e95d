"""Secure aggregation: Flower's SecAgg+ protocol (Bell et al., CCS 2020) on fedsim's updates.

The protocol core, stage by stage and on plain bytes, ints and arrays: settings
(:mod:`~fedsim.secagg.settings`), quantization (:mod:`~fedsim.secagg.quantize`), the
neighbour graph (:mod:`~fedsim.secagg.neighbours`), masks (:mod:`~fedsim.secagg.masks`), one
client's and the server's stages (:mod:`~fedsim.secagg.client`, :mod:`~fedsim.secagg.server`),
a whole round in memory (:mod:`~fedsim.secagg.simulate`) and batched Shamir secret sharing
over a prime field (:mod:`~fedsim.secagg.shamir`, in place of Flower's pure-Python GF(2^128)
sharing). Flower's other primitives (key agreement, Fernet, its PRG) are used by import. This
package is at the protocol layer: it imports ``flwr``, and fedsim's core never imports it.
"""

from fedsim.secagg.client import SecAggClient, model_hash
from fedsim.secagg.errors import ModelInconsistencyError, SecAggAbortedError
from fedsim.secagg.quantize import decode_sum, dequantize, quantize, sum_error_bound
from fedsim.secagg.server import SecAggServer
from fedsim.secagg.settings import Cohort, SecAggSettings
from fedsim.secagg.simulate import STAGES, SecureSum, StageCost, secure_sum

__all__ = [
    "Cohort",
    "ModelInconsistencyError",
    "STAGES",
    "SecAggAbortedError",
    "SecAggClient",
    "SecAggServer",
    "SecAggSettings",
    "SecureSum",
    "StageCost",
    "decode_sum",
    "dequantize",
    "model_hash",
    "quantize",
    "secure_sum",
    "sum_error_bound",
]

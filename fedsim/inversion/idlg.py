"""iDLG: DLG with the label recovered analytically (Zhao et al., 2020)."""

from __future__ import annotations

from fedsim.inversion.dlg import DLG
from fedsim.inversion.registry import INVERSION_ATTACKS

__all__ = ["IDLG"]


@INVERSION_ATTACKS.register("idlg")
class IDLG(DLG):
    r"""DLG with the label fixed by :func:`~fedsim.inversion.labels.recover_label`.

    The label is read off the last layer's weight gradient (the row with the negative sum, see
    :func:`~fedsim.inversion.labels.recover_label`); then only the input is optimised,

    .. math:: x'^* = \arg\min_{x'} \sum_l \big\lVert
        \nabla_{W_l} \ell(f(x'), \hat y) - \nabla_{W_l} \ell(f(x), y) \big\rVert^2,

    with :math:`\hat y` the recovered label, the other symbols as in
    :class:`~fedsim.inversion.dlg.DLG`, and L-BFGS as the optimiser. For batches of more than one
    sample the labels are guessed by :func:`~fedsim.inversion.labels.recover_labels` (distinct
    labels assumed), unless given. Settings are DLG's.

    Examples
    --------
    >>> import torch
    >>> from fedsim.models import build_model
    >>> from fedsim.inversion.updates import model_gradients
    >>> _ = torch.manual_seed(0)
    >>> model = build_model("lenet_sigmoid", (1, 8, 8), 10)
    >>> x, y = torch.rand(1, 1, 8, 8), torch.tensor([7])
    >>> rec = IDLG(iterations=100)(model, model_gradients(model, x, y), input_shape=(1, 8, 8),
    ...                            num_classes=10)
    >>> rec.labels.tolist(), bool(((rec.x - x) ** 2).mean() < 1e-3)
    ([7], True)

    References
    ----------
    Zhao, Mopuri, Bilen. iDLG: Improved Deep Leakage from Gradients. arXiv:2001.02610, 2020.
    """

    name = "idlg"
    recovers_labels = True

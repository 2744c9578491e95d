"""The error a SecAgg+ round raises when it cannot finish: :class:`SecAggAbortedError`."""

from __future__ import annotations

from fedsim.errors import RunError

__all__ = ["ModelInconsistencyError", "SecAggAbortedError"]


class SecAggAbortedError(RunError):
    """A SecAgg+ round stopped cleanly: too few nodes or shares, or a malformed message.

    The server learns nothing about any single update when this is raised: it is raised before
    a sum is unmasked (Bell et al., CCS 2020: the server aborts when fewer than ``t`` shares of
    a secret it needs arrive). The message names the node, what it had and what was needed.

    Examples
    --------
    >>> raise SecAggAbortedError("node 7: 2 shares, threshold 3")
    Traceback (most recent call last):
    ...
    fedsim.secagg.errors.SecAggAbortedError: node 7: 2 shares, threshold 3
    """


class ModelInconsistencyError(SecAggAbortedError):
    """A node aborted SecAgg+ because its neighbours got a different model (``verify_model``).

    Examples
    --------
    >>> issubclass(ModelInconsistencyError, SecAggAbortedError)
    True
    """

    #: Marks a client's error reply as this abort (the reason crosses the wire as text).
    MARK = "model inconsistency"

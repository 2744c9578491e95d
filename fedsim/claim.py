"""One run owns its run directory, from before its first byte to its end.

``fedsim run`` takes an exclusive, non-blocking ``flock`` on ``RUN_DIR/.fedsim.lock`` before
it looks at the directory (is there a run to refuse, to overwrite, to resume?) and holds it
until the run ends. A second run started on the same directory (even at the same instant)
fails to take it and is refused with one line naming the owner: the lock file holds the
owner's pid, host and start time. The kernel releases a ``flock`` when its process dies, so a
crashed run never blocks the directory: the next run simply takes the lock (and overwrites
the stale owner line).

The owner deletes the lock file as it ends, before it lets the lock go, so a finished run's
directory holds only its results. A process that opened the file before it was deleted may
then lock the deleted file: every lock is therefore checked to be on the file the path names
now, and is dropped and taken again on the new file otherwise (the same holds for a file
replaced by anyone else, e.g. a sweep removing a point directory). A crashed run leaves the
file behind, unlocked; the next run takes it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedsim.errors import ScenarioError

__all__ = ["LOCK_FILE", "claim_run_dir"]

LOCK_FILE = ".fedsim.lock"
"""The lock file's name inside a run directory (it holds the owner's pid, host and start)."""


@contextmanager
def claim_run_dir(run_dir: str | os.PathLike[str], option: str = "--out") -> Iterator[Path]:
    """Own ``run_dir`` (created if missing) for the ``with`` block, or refuse at once.

    Parameters
    ----------
    run_dir : path-like
        The run directory.
    option : str
        The command-line option that named it (``--out`` or ``--resume``), for the message.

    Yields
    ------
    Path
        ``run_dir``.

    Raises
    ------
    ScenarioError
        Another live process owns ``run_dir``; the one-line message names its pid, host and
        start time, and the directory.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with claim_run_dir(tmp):
    ...         try:
    ...             with claim_run_dir(tmp):
    ...                 pass
    ...         except ScenarioError as e:
    ...             print("refused:", f"pid {os.getpid()} on" in str(e))
    ...     with claim_run_dir(tmp):  # released: free again
    ...         print("claimed again")
    refused: True
    claimed again
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = _lock(run_dir, option)
    try:
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        owner = f"pid {os.getpid()} on {socket.gethostname()} since {started}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner.encode(), 0)
        yield run_dir
    finally:
        try:
            if _is_at(fd, run_dir / LOCK_FILE):
                os.unlink(run_dir / LOCK_FILE)  # still locked: nobody takes the deleted file
        finally:
            os.close(fd)  # releases the lock


def _lock(run_dir: Path, option: str) -> int:
    """An open descriptor of ``run_dir``'s lock file, exclusively locked by this process."""
    path = run_dir / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = " ".join(os.pread(fd, 4096, 0).decode(errors="replace").split())
            os.close(fd)
            owner = f"the run of {owner}" if owner else "a run that is just starting"
            raise ScenarioError(
                option,
                str(run_dir),
                f"a directory no other run is using: {run_dir} is owned by {owner} "
                "(wait for it to end, or choose another directory)",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        if _is_at(fd, path):
            return fd
        os.close(fd)  # the file was deleted or replaced after we opened it: lock the new one


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the file ``path`` names now."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False

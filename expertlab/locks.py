"""A lock file's path -> its exclusive flock, held while the holder lives and removed when released.

The OS drops a flock with the process holding it (over NFSv4, when the dead client's lease expires),
so a lock is a lease that expires with its holder, and the file a killed holder leaves is harmless:
the next locker takes it over. A released lock's file is removed while still locked; whoever was
waiting on that inode finds the path gone (or naming a newer file) and locks afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path


def _names(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def lock_file(path: Path, *, wait: bool = True, waiting: Callable[[int], None] | None = None) -> int | None:
    """An open descriptor of `path` (created, with its directory, when absent) holding its exclusive flock.

    A live holder makes this wait, asleep in flock (`waiting` is told once, with the holder's file open),
    or with `wait=False` return None at once.
    """
    told = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # no directory yet, or one emptied and removed meanwhile
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    os.close(fd)
                    return None
                if waiting is not None and not told:
                    waiting(fd)
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _names(path, fd):
                return fd
        except BaseException:
            os.close(fd)
            raise
        # The holder removed the file before unlocking it: the inode locked here guards nothing now.
        os.close(fd)


def unlock_file(path: Path, fd: int) -> None:
    """Remove the lock's file, then let go of it."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked_file(path: Path, waiting: Callable[[int], None] | None = None) -> Iterator[int]:
    """`path`'s lock for the block (waiting for a live holder), its file gone after."""
    fd = lock_file(path, waiting=waiting)
    assert fd is not None
    try:
        yield fd
    finally:
        unlock_file(path, fd)

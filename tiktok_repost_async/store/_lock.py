"""Lock a sidecar file exclusively, with an OS lock that dies with the process holding it.

POSIX systems (Linux, macOS) take ``flock`` on the whole file; Windows takes ``msvcrt.locking``
on its first byte. Either lock belongs to the open file, so a harvest killed at any instant
(SIGKILL, a closed console window) leaves no stale lock behind, unlike a pid file alone.

The file holds the holder's pid and purpose (``harvest``, ``refresh``) for the message of a
process that is refused. They are written after the first byte: Windows locks are mandatory, so
no other process could read a pid kept inside the locked byte. Positioned reads and writes go
through ``lseek`` with ``read`` and ``write``, which both systems have (``pread`` and ``pwrite``
are Unix only).
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from pathlib import Path
from typing import Final, Protocol, cast

from ..errors import StoreError

if sys.platform != "win32":
    import fcntl

__all__ = ["LockHeldError", "acquire", "release"]

# Which branch runs: a module attribute rather than a test of sys.platform at each call, so that
# a test can take the Windows branch on any system with a stand-in msvcrt module.
_WINDOWS = sys.platform == "win32"

# The byte Windows locks; a placeholder on POSIX too, so that the file reads alike everywhere.
_LOCKED_BYTE: Final = b" "
_PID_AT: Final = len(_LOCKED_BYTE)
_PID_BYTES: Final = 32
# msvcrt.locking's failures when another handle holds the region: EACCES for LK_NBLCK, EDEADLK
# when a retrying mode gives up.
_HELD_ERRNOS: Final = frozenset({errno.EACCES, errno.EDEADLK})


class LockHeldError(StoreError):
    """Report that another open file holds the lock, naming the holder as it wrote itself.

    The store turns it into `StoreLockedError` with a message for people.
    """

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class _Msvcrt(Protocol):
    """Name the part of Windows' msvcrt module that the lock uses."""

    LK_NBLCK: int
    LK_UNLCK: int

    def locking(self, fd: int, mode: int, nbytes: int, /) -> None:
        """Lock or unlock ``nbytes`` from the file's current position."""


def _msvcrt() -> _Msvcrt:
    # Imported when used: the module exists on Windows only (or as a test's stand-in).
    return cast(_Msvcrt, importlib.import_module("msvcrt"))


def acquire(path: Path, purpose: str = "harvest") -> int:
    """Open ``path`` (creating it), lock it without waiting and write our pid; return the fd.

    :param path: the lock file; it is created if missing and never removed.
    :param purpose: one word after the pid (``harvest``, ``refresh``), for the message of a
        process that is refused.
    :raises LockHeldError: another open file holds the lock.
    """
    # O_BINARY (Windows only) keeps the pid's newline from becoming CRLF.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
    try:
        if not _try_lock(fd):
            raise LockHeldError(_read_holder(fd))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, _LOCKED_BYTE + f"{os.getpid()} {purpose}\n".encode("ascii"))
    except BaseException:
        os.close(fd)
        raise
    return fd


def release(fd: int) -> None:
    """Empty, unlock and close a lock file's descriptor that `acquire` returned.

    :param fd: the descriptor; it is closed even when unlocking fails.
    """
    # The file stays: unlinking a flock'ed file lets a third process lock a new inode while
    # a second still waits on the old one.
    try:
        os.ftruncate(fd, 0)
        if _WINDOWS:
            msvcrt = _msvcrt()
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    finally:
        os.close(fd)  # closing the descriptor drops the flock (and any Windows lock left)


def _try_lock(fd: int) -> bool:
    if _WINDOWS:
        msvcrt = _msvcrt()
        # locking() covers nbytes from the current position: byte 0, even past the end of the
        # empty file a first harvest creates.
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            if exc.errno in _HELD_ERRNOS:
                return False
            raise
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_holder(fd: int) -> str:
    # After the locked byte, which Windows would refuse to read; POSIX reads from byte 0 so that
    # a pid written there by an earlier version is read whole too.
    os.lseek(fd, _PID_AT if _WINDOWS else 0, os.SEEK_SET)
    return os.read(fd, _PID_BYTES).decode("ascii", "replace").strip() or "unknown"

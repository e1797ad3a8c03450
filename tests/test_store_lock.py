"""The run lock's Windows branch, run here with a stand-in msvcrt that locks as Windows does.

Windows is not at hand, so these tests take the lock module's Windows branch on this system:
``msvcrt.locking`` is simulated with Windows' exclusion over one process (a byte locked by one
descriptor cannot be locked, read or written through another; unlocking takes its holder), the
``os`` the module sees lacks ``pread`` and ``pwrite`` as Windows' does, and ``fcntl`` is gone.
The POSIX branch is tested across real processes in test_store.py.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tiktok_repost_async.store._lock as store_lock
from tiktok_repost_async.store import Store, StoreError, StoreLockedError

FIELDS = ["id", "create_time", "username"]


class FakeMsvcrt:
    """Lock byte ranges as Windows' msvcrt.locking does, over a table shared by one process."""

    LK_UNLCK = 0
    LK_LOCK = 1
    LK_NBLCK = 2

    def __init__(self) -> None:
        #: (device, inode, offset) of each locked byte -> the descriptor holding it.
        self.held: dict[tuple[int, int, int], int] = {}
        self.calls: list[tuple[str, int]] = []

    def _bytes(self, fd: int, start: int, size: int) -> list[tuple[int, int, int]]:
        info = os.fstat(fd)
        return [(info.st_dev, info.st_ino, start + i) for i in range(size)]

    def locking(self, fd: int, mode: int, nbytes: int, /) -> None:
        """Lock or unlock ``nbytes`` from the descriptor's position, or raise as Windows does."""
        start = os.lseek(fd, 0, os.SEEK_CUR)
        wanted = self._bytes(fd, start, nbytes)
        if mode == self.LK_UNLCK:
            self.calls.append(("unlock", start))
            if any(self.held.get(key) != fd for key in wanted):
                raise PermissionError(errno.EACCES, "Permission denied")
            for key in wanted:
                del self.held[key]
            return
        if mode != self.LK_NBLCK:
            raise AssertionError(f"the run lock must not wait: mode {mode}")
        self.calls.append(("lock", start))
        # Windows refuses an overlapping lock even to the handle that holds the first one.
        if any(key in self.held for key in wanted):
            raise PermissionError(errno.EACCES, "Permission denied")
        for key in wanted:
            self.held[key] = fd

    def check_access(self, fd: int, size: int) -> None:
        """Refuse a read or write over a byte that another descriptor locked (mandatory locks)."""
        start = os.lseek(fd, 0, os.SEEK_CUR)
        for key in self._bytes(fd, start, size):
            if self.held.get(key, fd) != fd:
                raise PermissionError(errno.EACCES, "a region of the file is locked")


class WindowsOs:
    """Give the lock module the os that Windows has: no pread or pwrite, mandatory locks."""

    def __init__(self, msvcrt: FakeMsvcrt) -> None:
        self._msvcrt = msvcrt

    def __getattr__(self, name: str) -> Any:
        if name in ("pread", "pwrite"):
            raise AttributeError(f"module 'os' has no attribute {name!r} on Windows")
        return getattr(os, name)

    def read(self, fd: int, size: int) -> bytes:
        """Read as os.read does, unless the bytes are locked by another descriptor."""
        self._msvcrt.check_access(fd, size)
        return os.read(fd, size)

    def write(self, fd: int, data: bytes) -> int:
        """Write as os.write does, unless the bytes are locked by another descriptor."""
        self._msvcrt.check_access(fd, len(data))
        return os.write(fd, data)


@pytest.fixture
def msvcrt(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMsvcrt]:
    fake = FakeMsvcrt()
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    monkeypatch.setattr(store_lock, "_WINDOWS", True)
    monkeypatch.setattr(store_lock, "os", WindowsOs(fake))
    # Windows has no fcntl: any use of it in the Windows branch fails loudly.
    monkeypatch.delattr(store_lock, "fcntl", raising=False)
    yield fake
    assert not fake.held, "a test left a lock behind"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "harvest.db"
    Store(path, fields=FIELDS, max_count=100).close()
    return path


def test_a_second_store_is_refused_with_the_holders_pid(db: Path, msvcrt: FakeMsvcrt) -> None:
    with Store(db, create=False) as first, Store(db, create=False) as second:
        first.acquire_run_lock()
        assert msvcrt.calls == [("lock", 0)]
        assert len(msvcrt.held) == 1
        with pytest.raises(StoreLockedError) as info:
            second.acquire_run_lock()
        # The pid is read after the locked byte: reading byte 0 would have been refused.
        assert f"being harvested by another process (pid {os.getpid()})" in str(info.value)
        assert not second.holds_run_lock
        with pytest.raises(StoreError, match="already holds"):
            first.acquire_run_lock()
        first.release_run_lock()
        assert msvcrt.calls[-1] == ("unlock", 0)
        # A refresh says so: a harvest refused meanwhile is not told of another harvest.
        first.acquire_refresh_lock()
        with pytest.raises(StoreLockedError) as info:
            second.acquire_run_lock()
        assert f"being refreshed by another process (pid {os.getpid()});" in str(info.value)
        first.release_refresh_lock()
        assert not msvcrt.held
        # Released: the next acquire wins.
        second.acquire_run_lock()
        assert second.holds_run_lock
        assert first.lock_path.read_bytes() == f" {os.getpid()} harvest\n".encode("ascii")
    # close() unlocked it (the fixture checks that no lock is left).


def test_run_lock_context_releases_for_the_next_store(db: Path, msvcrt: FakeMsvcrt) -> None:
    with (
        Store(db, create=False) as first,
        first.run_lock(),
        Store(db, create=False) as second,
        pytest.raises(StoreLockedError),
    ):
        second.acquire_run_lock()
    assert not msvcrt.held
    with Store(db, create=False) as third, third.run_lock():
        assert third.holds_run_lock
    assert [kind for kind, _ in msvcrt.calls] == ["lock", "lock", "unlock", "lock", "unlock"]


def test_a_locking_error_other_than_held_propagates(db: Path, msvcrt: FakeMsvcrt) -> None:
    def broken(fd: int, mode: int, nbytes: int, /) -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    with Store(db, create=False) as store:
        real = msvcrt.locking
        msvcrt.locking = broken  # type: ignore[method-assign]
        try:
            with pytest.raises(OSError, match="Bad file descriptor"):
                store.acquire_run_lock()
        finally:
            msvcrt.locking = real  # type: ignore[method-assign]
        assert not store.holds_run_lock
        store.acquire_run_lock()
        assert store.holds_run_lock


@pytest.mark.skipif(sys.platform == "win32", reason="the POSIX branch")
def test_a_pid_left_by_an_older_version_at_byte_0_is_read_on_posix(db: Path) -> None:
    # Earlier versions wrote the pid at byte 0; a POSIX reader starts there, so it reads it whole.
    with Store(db, create=False) as first:
        first.acquire_run_lock()
        fd = first._lock_fd
        assert fd is not None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"4242\n")
        with Store(db, create=False) as second, pytest.raises(StoreLockedError, match="pid 4242"):
            second.acquire_run_lock()

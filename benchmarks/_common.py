"""What the benchmarks share: the simulator served from a child process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def simulator(*options: str) -> Iterator[str]:
    """Serve the simulator in a child process and yield its base URL."""
    # A process of its own: the simulator's work must not count against the code measured.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tiktok_repost_async.simulator", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()

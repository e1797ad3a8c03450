"""Serve a simulator from a background thread, for synchronous code and tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._server import Simulator

__all__ = ["SimulatorThread"]


class SimulatorThread:
    """Run a `Simulator` on its own event loop in a daemon thread; `with` it to get the base URL."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        """Prepare the thread; nothing runs before `start` (or ``with``).

        :param simulator: the simulator to serve.
        :param host: the address to listen on.
        :param port: the port to listen on (0: a free one).
        """
        self.simulator = simulator
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: Exception | None = None

    def start(self, timeout: float = 30.0) -> str:
        """Start the thread and wait until the simulator listens; return its base URL.

        :param timeout: seconds to wait for the simulator to listen before raising.
        """
        if self._thread is not None:
            raise RuntimeError("this SimulatorThread was started already")
        self._thread = threading.Thread(
            target=self._run, name="research-api-simulator", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the simulator did not start in time")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self.simulator.base_url

    def stop(self, timeout: float = 30.0) -> None:
        """Close the simulator and wait for the thread to end.

        :param timeout: seconds to wait for the thread to end.
        """
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            # The loop may finish between the check and the call: then there is nothing to stop.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.simulator.start(self.host, self.port)
        except Exception as exc:
            self._error = exc
            return
        finally:
            self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.simulator.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

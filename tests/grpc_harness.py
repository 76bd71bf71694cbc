"""A real speechlabel gRPC server on a free loopback port, its asyncio loop on a background thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from service.registry import ModelRegistry
from service.server import RunningServer, start_server

T = TypeVar("T")


class LoopbackServer:
    """Tests talk to it with ordinary (synchronous) stubs; ``run`` executes coroutines on its loop."""

    def __init__(self, models: ModelRegistry, **server_options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-server-loop", daemon=True)
        self._thread.start()
        self.running: RunningServer = self.run(start_server(models, host="127.0.0.1", port=0, **server_options))
        self.address = f"127.0.0.1:{self.running.port}"

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    @property
    def active_streams(self) -> int:
        return self.running.streams.active

    def wait_for_no_streams(self, timeout: float = 10.0) -> None:
        """Stream handlers finish asynchronously after the client side ends; wait until all have."""
        deadline = time.monotonic() + timeout
        while self.active_streams and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.active_streams == 0, f"{self.active_streams} streams still open"

    def close(self, grace_s: float = 0.0) -> None:
        self.run(self.running.stop(grace_s))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

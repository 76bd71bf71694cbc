"""What one RPC did, as the servicer fills it in; metrics and the log line are both read off it.

Compute time is measured inside the executor thread (queueing excluded), so the real-time factor
says how fast the model works, not how busy the server is; latency histograms cover the rest.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

REQUEST_ID_KEY = "x-request-id"  # a client's own id is kept (and logged) so it can find its calls
MAX_REQUEST_ID_CHARS = 128
T = TypeVar("T")


@dataclass
class CallRecord:
    """One call: who asked what, how it ended, how much audio it carried and the compute it cost."""

    method: str
    peer: str
    request_id: str
    model: str = ""
    code: grpc.StatusCode = grpc.StatusCode.OK
    duration_s: float = 0.0
    audio_s: float = 0.0
    compute_s: float = 0.0  # executor seconds spent on this call (its share of a batch)

    @property
    def rtf(self) -> float | None:
        """Compute seconds per audio second; ``None`` for calls without audio."""
        return self.compute_s / self.audio_s if self.audio_s > 0 else None

    def fields(self) -> dict[str, Any]:
        """The call as log fields (JSON-ready)."""
        rtf = self.rtf
        return {
            "method": self.method,
            "peer": self.peer,
            "model": self.model,
            "code": self.code.name,
            "duration_ms": round(1000 * self.duration_s, 1),
            "audio_s": round(self.audio_s, 3),
            "rtf": None if rtf is None else round(rtf, 4),
            "request_id": self.request_id,
        }


def request_id(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The client's ``x-request-id`` (capped in length), else a fresh random one."""
    given = next((value for key, value in metadata or () if key == REQUEST_ID_KEY), "")
    return str(given)[:MAX_REQUEST_ID_CHARS] or uuid.uuid4().hex


async def run_timed(executor: Executor, work: Callable[[], T]) -> tuple[T, float]:
    """Run ``work`` on ``executor``; also return the seconds it ran there."""

    def timed() -> tuple[T, float]:
        started = time.perf_counter()
        result = work()
        return result, time.perf_counter() - started

    return await asyncio.get_running_loop().run_in_executor(executor, timed)

"""Optional bearer-token authentication for every RPC except health checks.

Orchestrators probe health without credentials, so ``grpc.health.v1`` stays open; everything
else needs ``authorization: Bearer TOKEN`` metadata, compared in constant time.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable

import grpc

TOKEN_ENV = "SPEECHLABEL_AUTH_TOKEN"
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)

_HANDLER_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def token_from(value: str | None) -> str | None:
    """The token given on the command line, else ``$SPEECHLABEL_AUTH_TOKEN``; ``None`` = no auth."""
    return value or os.environ.get(TOKEN_ENV) or None


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata that authenticates a client (empty without a token)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without the right bearer token with UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_PREFIXES):
            return handler
        given = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(given).encode(), self._expected):
            return handler
        return _denied(handler)


def _denied(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same kind that only aborts (the call's real handler never runs)."""

    async def abort(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

    factory = _HANDLER_FACTORIES[(handler.request_streaming, handler.response_streaming)]
    return factory(
        abort, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )

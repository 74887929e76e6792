"""A loopback OpenAI-compatible server: ``GET /v1/models`` with bearer-key auth (aiohttp on 127.0.0.1).

For the real ``openai`` SDK in tests (``base_url = server.url + "/v1"``). A wrong key gets
OpenAI's 401 body, which, like the real API, echoes the key it was given (here in full,
to prove that callers scrub it).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from loopback.core import serve

MODELS = ("gpt-4o-mini", "gpt-4.1", "text-embedding-3-small")


class OpenAILoopback:
    """Serves the model list to requests bearing ``api_key``; ``requests`` counts the calls."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.requests = 0
        self.url: str | None = None
        self._runner: web.AppRunner | None = None

    async def _models(self, request: web.Request) -> web.Response:
        self.requests += 1
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if given != self.api_key:
            error = {
                "message": f"Incorrect API key provided: {given}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
            return web.json_response({"error": error}, status=401)
        data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "openai"} for m in MODELS]
        return web.json_response({"object": "list", "data": data})

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, api_key: str) -> AsyncIterator[OpenAILoopback]:
        """``async with OpenAILoopback.running(key) as server:`` serving at ``server.url``."""
        server = cls(api_key)
        app = web.Application()
        app.router.add_get("/v1/models", server._models)
        server._runner, server.url = await serve(app)
        try:
            yield server
        finally:
            await server._runner.cleanup()

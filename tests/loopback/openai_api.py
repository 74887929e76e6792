"""A loopback OpenAI-compatible server: ``GET /v1/models`` and ``POST /v1/chat/completions``
with bearer-key auth (aiohttp on 127.0.0.1).

For the real ``openai`` SDK in tests (``base_url = server.url + "/v1"``). A wrong key gets
OpenAI's 401 body, which, like the real API, echoes the key it was given (here in full,
to prove that callers scrub it).

Chat completions replay what the test scripted (``server.script(...)``), one item per request,
in order: a ``Reply`` (text and/or tool calls, as JSON, or as SSE ``chat.completion.chunk``
lines when the request says ``stream``: a usage chunk when ``stream_options.include_usage``,
then ``data: [DONE]``), a ``Failure`` (an HTTP error with OpenAI's error body, optionally
``Retry-After``), a ``Hold`` (no answer until the client gives up or the server stops) or a
``Compute`` (the answer made from the request body, as a model reads its input). A
model in ``missing_models`` gets 404 ``model_not_found`` without using the script; an empty
script is a 500 naming the problem. ``bodies`` holds every chat request body as received and
``authorizations`` its Authorization header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from loopback.core import serve

MODELS = ("gpt-4o-mini", "gpt-4.1", "text-embedding-3-small")
CREATED = 1_700_000_000


@dataclass(frozen=True)
class Reply:
    """A scripted answer: ``text`` and/or ``tool_calls`` ((name, raw JSON arguments), sent as
    given, so invalid JSON can be scripted). Streamed as ``chunks`` (default: the text in one
    chunk); ``usage`` (prompt, completion tokens), None = no usage in the answer;
    ``hold_after``: stream that many chunks, then hold like ``Hold`` (a reply cut off)."""

    text: str = ""
    tool_calls: Sequence[tuple[str, str]] = ()
    chunks: Sequence[str] | None = None
    usage: tuple[int, int] | None = (10, 5)
    hold_after: int | None = None


@dataclass(frozen=True)
class Failure:
    """A scripted HTTP error with OpenAI's error body; ``retry_after`` becomes the header."""

    status: int
    code: str
    message: str = "scripted failure"
    retry_after: str | None = None


@dataclass(frozen=True)
class Hold:
    """No answer until the client disconnects (its timeout) or the server shuts down."""


@dataclass(frozen=True)
class Compute:
    """An answer computed from the request body when it arrives (a model that reads its input):
    ``fn(body)`` returns the Reply (or Failure) to send."""

    fn: Callable[[dict[str, Any]], Reply | Failure]


Scripted = Reply | Failure | Hold | Compute


def _error(status: int, code: str, message: str, type_: str = "invalid_request_error") -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status)


class OpenAILoopback:
    """Serves the model list to requests bearing ``api_key``; ``requests`` counts the calls."""

    def __init__(self, api_key: str, missing_models: Iterable[str] = ()) -> None:
        self.api_key = api_key
        self.requests = 0
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self.missing_models = set(missing_models)
        self.bodies: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.held = 0
        self._script: deque[Scripted] = deque()
        self._release = asyncio.Event()

    def script(self, *items: Scripted) -> None:
        """Queue answers for the next chat completion requests, in order."""
        self._script.extend(items)

    @property
    def unused(self) -> int:
        """Scripted answers not yet used."""
        return len(self._script)

    async def _hold(self) -> None:
        self.held += 1
        await self._release.wait()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        auth = request.headers.get("Authorization", "")
        self.authorizations.append(auth)
        body = await request.json()
        self.bodies.append(body)
        given = auth.removeprefix("Bearer ")
        if given != self.api_key:
            return _error(401, "invalid_api_key", f"Incorrect API key provided: {given}.")
        model = body.get("model")
        if model in self.missing_models:
            return _error(
                404, "model_not_found", f"The model `{model}` does not exist or you do not have access to it."
            )
        if not self._script:
            return _error(500, "no_script", "the test scripted no answer for this request", "server_error")
        item = self._script.popleft()
        if isinstance(item, Compute):
            item = item.fn(body)
        if isinstance(item, Hold):
            await self._hold()
            return web.Response(status=504)
        if isinstance(item, Failure):
            response = _error(item.status, item.code, item.message)
            if item.retry_after is not None:
                response.headers["Retry-After"] = item.retry_after
            return response
        if body.get("stream"):
            return await self._sse(request, body, item)
        return web.json_response(self._completion(model, item))

    def _completion(self, model: str, item: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": item.text or None, "refusal": None}
        if item.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}
                for i, (name, args) in enumerate(item.tool_calls)
            ]
        finish = "tool_calls" if item.tool_calls else "stop"
        out: dict[str, Any] = {
            "id": "chatcmpl-loopback",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        }
        if item.usage is not None:
            out["usage"] = self._usage(item.usage)
        return out

    @staticmethod
    def _usage(usage: tuple[int, int]) -> dict[str, int]:
        return {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}

    async def _sse(self, request: web.Request, body: dict[str, Any], item: Reply) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        model = body.get("model")

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {
                "id": "chatcmpl-loopback",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "choices": choices,
                **extra,
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        def delta(d: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": d, "finish_reason": finish, "logprobs": None}]

        await send(delta({"role": "assistant", "content": ""}))
        chunks = item.chunks if item.chunks is not None else ([item.text] if item.text else [])
        for i, piece in enumerate(chunks):
            if item.hold_after is not None and i >= item.hold_after:
                await self._hold()
                return response
            await send(delta({"content": piece}))
        await send(delta({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage") and item.usage is not None:
            await send([], usage=self._usage(item.usage))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

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
    async def running(cls, api_key: str, missing_models: Iterable[str] = ()) -> AsyncIterator[OpenAILoopback]:
        """``async with OpenAILoopback.running(key) as server:`` serving at ``server.url``."""
        server = cls(api_key, missing_models)
        app = web.Application()
        app.router.add_get("/v1/models", server._models)
        app.router.add_post("/v1/chat/completions", server._chat)
        server._runner, server.url = await serve(app)
        try:
            yield server
        finally:
            server._release.set()  # held answers end now
            await server._runner.cleanup()

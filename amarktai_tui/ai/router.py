"""Model access for the AI console: the official ``openai`` SDK (AsyncOpenAI), models per mode.

Modes (``[ai.models]``): ``fast`` (trade and status questions), ``balanced`` (chat), ``deep``
(strategy reviews); each is a fallback chain. A model that is missing or not allowed (HTTP
404/403), rate limited (429), times out or cannot be reached is skipped for the next one; a
429's ``Retry-After`` (or ``retry-after-ms``) is honoured once per call when it is at most
``retry_after_max_s``, retrying the same model. Any other failure (400, 401, 5xx, a malformed
reply) is raised at once as a one-line AIError. The SDK's own retries are off
(``max_retries=0``): this chain decides.

Every call has a timeout (``[ai] timeout_s``, the SDK's: connecting, and each wait for the
answer or, streamed, for the next chunk), is refused with BudgetExceeded before any request is
sent once today's token budget is used up, and records its usage in ``ai_usage``. The API key
comes from the vault (provider ``openai``) and goes into the SDK's Authorization header only:
never into a message body, a log line or an error message (``vault.scrub``).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import openai

from amarktai_tui.ai.budget import TokenBudget
from amarktai_tui.ai.errors import AIError, AIUnavailable, AllModelsFailed
from amarktai_tui.ai.replies import (
    AssistantMessage,
    StreamResult,
    ToolCall,
    Usage,
    as_dict,
    estimate,
    parse_chunk,
    parse_completion,
)
from amarktai_tui.vault.scrub import scrub

if TYPE_CHECKING:
    from amarktai_tui.config import AiSettings, Settings

__all__ = [
    "MODES",
    "AssistantMessage",
    "Mode",
    "Router",
    "StreamResult",
    "ToolCall",
    "Usage",
    "open_router",
    "retry_after_s",
]

Mode = Literal["fast", "balanced", "deep"]
MODES: tuple[Mode, ...] = ("fast", "balanced", "deep")
RETRY_AFTER_MAX_S = 5.0
log = logging.getLogger("amarktai.ai")
_T = TypeVar("_T")


@dataclass(slots=True)
class _Attempts:
    """Failures so far in one call's chain, and whether its one Retry-After wait was used."""

    failures: list[str] = field(default_factory=list)
    waited: bool = False


def retry_after_s(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds a 429 asks to wait: ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP
    date); None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Router:
    """One AsyncOpenAI client and the per-mode fallback chains of ``settings`` (``[ai]``).

    ``api_key`` comes from the vault (see ``open_router``); ``base_url``: ``[ai] base_url``, else
    this one (the base URL saved with the key), else api.openai.com. Close with ``aclose`` or
    use ``async with``.
    """

    def __init__(
        self,
        settings: AiSettings,
        budget: TokenBudget,
        api_key: str,
        *,
        base_url: str | None = None,
        retry_after_max_s: float = RETRY_AFTER_MAX_S,
    ) -> None:
        if not api_key:
            raise AIUnavailable(
                "no OpenAI API key: run `amarktai keys set openai` (commands only until then)"
            )
        self.settings = settings
        self.budget = budget
        self.base_url = settings.base_url or base_url or None
        self.where = self.base_url or "api.openai.com"
        self.retry_after_max_s = retry_after_max_s
        self._secrets = [api_key]
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=self.base_url, max_retries=0, timeout=settings.timeout_s
        )

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    def chain(self, mode: Mode) -> tuple[str, ...]:
        """The models of ``mode``, in the order they are tried. Raises ValueError for an unknown mode."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        return tuple(getattr(self.settings.models, mode))

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        mode: Mode = "balanced",
    ) -> AssistantMessage:
        """One non-streamed reply to ``messages`` (OpenAI chat message dicts), offering ``tools``
        (OpenAI function tool dicts) if given.

        Raises BudgetExceeded (nothing sent), AllModelsFailed (the whole chain failed), AIError
        (any other failure: HTTP 400/401/5xx, a malformed reply). A tool call with unusable
        arguments is returned with ``ToolCall.error`` set, not raised.
        """
        offered = {str(t.get("function", {}).get("name", "")) for t in tools or ()}

        async def attempt(model: str) -> AssistantMessage:
            resp = await self._client.chat.completions.create(
                model=model,
                messages=cast(Any, list(messages)),
                tools=cast(Any, list(tools)) if tools else openai.omit,
                timeout=self.settings.timeout_s,
            )
            return parse_completion(model, as_dict(resp), messages, offered if tools else None)

        reply = await self._run(mode, attempt)
        await self._record(reply.model, reply.usage)
        return reply

    async def stream(
        self, messages: Sequence[Mapping[str, Any]], *, mode: Mode = "balanced"
    ) -> AsyncIterator[str | StreamResult]:
        """A streamed reply: text chunks (``str``) as they arrive, then one StreamResult.

        The chain falls back only before the first chunk is yielded; a failure after that raises
        AIError (the reply was cut off). Usage is recorded when the stream ends, also when the
        consumer stops early (then estimated unless the server already sent it). Raises as
        ``complete``.
        """
        await self.budget.check()
        attempts = _Attempts()
        for model in self.chain(mode):
            while True:
                parts: list[str] = []
                usage: Usage | None = None
                finish = ""
                done = False
                try:
                    chunks = await self._client.chat.completions.create(
                        model=model,
                        messages=cast(Any, list(messages)),
                        stream=True,
                        stream_options={"include_usage": True},
                        timeout=self.settings.timeout_s,
                    )
                    try:
                        async for chunk in chunks:
                            text, usage_now, finish_now = parse_chunk(model, as_dict(chunk))
                            usage = usage_now or usage
                            finish = finish_now or finish
                            if text:
                                parts.append(text)
                                yield text
                        done = True
                    finally:
                        await chunks.close()
                        if parts or done:
                            usage = usage or estimate(messages, "".join(parts))
                            await self._record(model, usage)
                except (openai.APIError, AIError) as exc:
                    if parts:
                        raise AIError(f"{model}: the reply was cut off: {self._describe(exc)}") from None
                    if await self._failed(model, exc, attempts):
                        continue
                    break
                yield StreamResult("".join(parts), model, usage or estimate(messages, ""), finish)
                return
        raise AllModelsFailed(self._all_failed(mode, attempts))

    async def _run(self, mode: Mode, attempt: Callable[[str], Awaitable[_T]]) -> _T:
        await self.budget.check()
        attempts = _Attempts()
        for model in self.chain(mode):
            while True:
                try:
                    return await attempt(model)
                except (openai.APIError, AIError) as exc:
                    if await self._failed(model, exc, attempts):
                        continue
                    break
        raise AllModelsFailed(self._all_failed(mode, attempts))

    async def _failed(self, model: str, exc: BaseException, attempts: _Attempts) -> bool:
        """Classify a failed attempt: True = retry the same model (after the Retry-After wait),
        False = try the next model; raises AIError when the chain must stop."""
        if isinstance(exc, openai.RateLimitError):
            wait = retry_after_s(exc.response.headers)
            quota = exc.code == "insufficient_quota"
            if not attempts.waited and not quota and wait is not None and wait <= self.retry_after_max_s:
                attempts.waited = True
                log.info("AI model %s rate limited; retrying in %.1fs", model, wait)
                await asyncio.sleep(wait)
                return True
        elif isinstance(exc, AIError):
            raise type(exc)(self._describe(exc)) from None
        elif not isinstance(
            exc, openai.NotFoundError | openai.PermissionDeniedError | openai.APIConnectionError
        ):
            raise AIError(f"{model}: {self._describe(exc)}") from None
        reason = self._describe(exc)
        attempts.failures.append(f"{model}: {reason}")
        log.warning("AI model %s failed (%s); trying the next model of the chain", model, reason)
        return False

    def _describe(self, exc: BaseException) -> str:
        """One line, no secret: what went wrong and where."""
        if isinstance(exc, openai.APITimeoutError):
            return f"timed out after {self.settings.timeout_s:g}s at {self.where}"
        if isinstance(exc, openai.APIConnectionError):
            return f"cannot reach {self.where}"
        if isinstance(exc, openai.APIStatusError):
            code = f" {exc.code}" if isinstance(exc.code, str) and exc.code else ""
            what = {
                404: "model not found",
                403: "model not allowed",
                429: "rate limited",
                401: "key rejected",
            }
            body = exc.body.get("message") if isinstance(exc.body, dict) else None
            text = what.get(exc.status_code) or (body if isinstance(body, str) and body else exc.message)
            return scrub(f"HTTP {exc.status_code}{code} from {self.where}: {text}", self._secrets)
        if isinstance(exc, AIError):
            return scrub(str(exc), self._secrets)
        return scrub(f"{type(exc).__name__}: {exc}", self._secrets)

    def _all_failed(self, mode: Mode, attempts: _Attempts) -> str:
        return scrub(f"every {mode} model failed: " + "; ".join(attempts.failures), self._secrets, limit=400)

    async def _record(self, model: str, usage: Usage) -> None:
        try:
            await self.budget.record(model, usage.prompt_tokens, usage.completion_tokens)
        except Exception as exc:  # the reply stands; the budget undercounts this once
            log.error("AI usage of %s not recorded: %s", model, scrub(str(exc), self._secrets))


async def open_router(settings: Settings, data_dir: Path, *, budget: TokenBudget | None = None) -> Router:
    """A Router with the OpenAI key (and saved base URL) from the vault and ``[ai]``'s settings;
    ``budget`` defaults to ``[ai] daily_token_budget`` in ``data_dir``'s ledger.

    Raises AIUnavailable (no key saved, the keyring unavailable), one line.
    """
    from amarktai_tui.vault.errors import VaultError
    from amarktai_tui.vault.manager import KeyManager
    from amarktai_tui.vault.providers import get_provider

    def load() -> dict[str, str] | None:
        return KeyManager(settings, data_dir).store.load(get_provider("openai"))

    try:
        values = await asyncio.to_thread(load)
    except VaultError as exc:
        raise AIUnavailable(f"AI unavailable: {exc}") from None
    if not values or not values.get("api_key"):
        raise AIUnavailable(
            "no OpenAI API key saved: run `amarktai keys set openai` (commands only until then)"
        )
    budget = budget or TokenBudget(data_dir, settings.ai.daily_token_budget)
    return Router(settings.ai, budget, values["api_key"], base_url=values.get("base_url"))

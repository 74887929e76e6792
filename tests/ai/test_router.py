"""The model router: the real openai SDK against the loopback OpenAI-compatible server, usage in a
real SQLite ledger, the key from a real Secret Service (gnome-keyring on a private D-Bus bus)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from loopback.openai_api import Failure, Hold, OpenAILoopback, Reply
from loopback.secret_service import missing_binaries, private_secret_service

from amarktai_tui.ai.budget import TokenBudget
from amarktai_tui.ai.errors import AIError, AIUnavailable, AllModelsFailed, BudgetExceeded
from amarktai_tui.ai.router import Router, StreamResult, open_router, retry_after_s
from amarktai_tui.config import AiModels, AiSettings, load_settings
from amarktai_tui.locations import db_path
from amarktai_tui.vault.manager import KeyManager

KEY = "sk-loopback-router-0123456789-wxyz"
ASK = [{"role": "user", "content": "why did btc-fast stop trading?"}]
PAUSE_TOOL = {
    "type": "function",
    "function": {
        "name": "pause_bot",
        "description": "Pause one bot",
        "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    },
}
LIST_TOOL = {
    "type": "function",
    "function": {"name": "list_bots", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AMARKTAI_* or OPENAI_* variable, no keyring choice or config of the developer."""
    for key in list(os.environ):
        if key.startswith(("AMARKTAI_", "OPENAI_")) or key == "PYTHON_KEYRING_BACKEND":
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


@pytest.fixture
def secret_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    missing = missing_binaries()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages: dbus gnome-keyring)")
    with private_secret_service(tmp_path / "secret-service") as address:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        yield address


@pytest.fixture
async def server() -> AsyncIterator[OpenAILoopback]:
    async with OpenAILoopback.running(KEY, missing_models={"gpt-missing"}) as s:
        yield s


def ai_settings(
    server: OpenAILoopback, *, timeout_s: float = 10.0, budget: int = 0, **chains: list[str]
) -> AiSettings:
    models = AiModels(**chains) if chains else AiModels()
    return AiSettings(
        base_url=f"{server.url}/v1", models=models, timeout_s=timeout_s, daily_token_budget=budget
    )


def usage_rows(data_dir: Path) -> list[tuple[str, int, int]]:
    if not db_path(data_dir).exists():
        return []
    with closing(sqlite3.connect(db_path(data_dir))) as conn:
        return conn.execute(
            "SELECT model, prompt_tokens, completion_tokens FROM ai_usage ORDER BY id"
        ).fetchall()


def router_for(server: OpenAILoopback, data_dir: Path, *, budget: int = 0, **kw: Any) -> Router:
    settings = ai_settings(server, budget=budget, **kw)
    return Router(settings, TokenBudget(data_dir, budget), KEY)


def models_asked(server: OpenAILoopback) -> list[str]:
    return [b["model"] for b in server.bodies]


async def collect(router: Router, **kw: Any) -> tuple[list[str], StreamResult]:
    chunks: list[str] = []
    final: StreamResult | None = None
    async for item in router.stream(ASK, **kw):
        if isinstance(item, StreamResult):
            final = item
        else:
            assert final is None, "a text chunk after the result"
            chunks.append(item)
    assert final is not None
    return chunks, final


async def test_plain_text_reply_and_usage_recorded(server: OpenAILoopback, tmp_path: Path) -> None:
    server.script(Reply("btc-fast tripped its drawdown breaker at 14:05 UTC.", usage=(42, 13)))
    async with router_for(server, tmp_path, fast=["gpt-4o-mini"]) as router:
        reply = await router.complete(ASK, mode="fast")
    assert reply.content == "btc-fast tripped its drawdown breaker at 14:05 UTC."
    assert reply.tool_calls == ()
    assert (reply.model, reply.finish_reason) == ("gpt-4o-mini", "stop")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.estimated) == (
        42,
        13,
        False,
    )
    assert reply.to_param() == {"role": "assistant", "content": reply.content}
    (body,) = server.bodies
    assert body["model"] == "gpt-4o-mini" and body["messages"] == ASK
    assert "tools" not in body and not body.get("stream")
    assert usage_rows(tmp_path) == [("gpt-4o-mini", 42, 13)]


async def test_streamed_reply_yields_chunks_then_the_result_with_usage(
    server: OpenAILoopback, tmp_path: Path
) -> None:
    server.script(Reply(chunks=["btc-fast ", "is paused ", "by a breaker."], usage=(30, 9)))
    async with router_for(server, tmp_path, balanced=["gpt-4o-mini"]) as router:
        chunks, final = await collect(router, mode="balanced")
    assert chunks == ["btc-fast ", "is paused ", "by a breaker."]
    assert final.text == "btc-fast is paused by a breaker."
    assert (final.model, final.finish_reason) == ("gpt-4o-mini", "stop")
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.estimated) == (30, 9, False)
    (body,) = server.bodies
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert usage_rows(tmp_path) == [("gpt-4o-mini", 30, 9)]


async def test_a_stream_without_usage_records_an_estimate(server: OpenAILoopback, tmp_path: Path) -> None:
    server.script(Reply(chunks=["x" * 40], usage=None))
    async with router_for(server, tmp_path) as router:
        _, final = await collect(router)
    assert final.usage.estimated and final.usage.completion_tokens == 10
    ((model, prompt, completion),) = usage_rows(tmp_path)
    assert (model, completion) == ("gpt-4o-mini", 10) and prompt == final.usage.prompt_tokens > 0


async def test_a_stream_closed_early_still_records_its_usage(server: OpenAILoopback, tmp_path: Path) -> None:
    server.script(Reply(chunks=["abcd", "efgh", "ijkl"], usage=(20, 3)))
    async with router_for(server, tmp_path) as router, contextlib.aclosing(router.stream(ASK)) as replies:
        async for item in replies:
            assert item == "abcd"
            break
    ((model, prompt, completion),) = usage_rows(tmp_path)
    assert model == "gpt-4o-mini" and prompt > 0 and completion == 1  # estimated from what was read


async def test_tool_calls_are_parsed(server: OpenAILoopback, tmp_path: Path) -> None:
    server.script(
        Reply(tool_calls=[("pause_bot", '{"name": "btc-fast"}'), ("list_bots", "")], usage=(80, 20))
    )
    async with router_for(server, tmp_path) as router:
        reply = await router.complete(ASK, [PAUSE_TOOL, LIST_TOOL])
    assert reply.content == "" and reply.finish_reason == "tool_calls"
    first, second = reply.tool_calls
    assert (first.id, first.name, first.arguments, first.ok) == (
        "call_0",
        "pause_bot",
        {"name": "btc-fast"},
        True,
    )
    assert (second.name, second.arguments, second.ok) == ("list_bots", {}, True)
    assert server.bodies[0]["tools"] == [PAUSE_TOOL, LIST_TOOL]
    assert reply.to_param()["tool_calls"][0] == {
        "id": "call_0",
        "type": "function",
        "function": {"name": "pause_bot", "arguments": '{"name": "btc-fast"}'},
    }
    assert usage_rows(tmp_path) == [("gpt-4o-mini", 80, 20)]


async def test_invalid_tool_arguments_are_surfaced_not_raised(server: OpenAILoopback, tmp_path: Path) -> None:
    server.script(
        Reply(
            "Pausing it.",
            tool_calls=[
                ("pause_bot", '{"name": "btc-fa'),  # cut off: not JSON
                ("pause_bot", '["btc-fast"]'),  # JSON, not an object
                ("switch_to_live", "{}"),  # no such tool was offered
                ("pause_bot", '{"name": "eth-slow"}'),
            ],
        )
    )
    async with router_for(server, tmp_path) as router:
        reply = await router.complete(ASK, [PAUSE_TOOL])
    cut, listed, unknown, good = reply.tool_calls
    assert reply.content == "Pausing it."
    assert cut.arguments is None and not cut.ok and cut.error.startswith("arguments are not valid JSON")
    assert cut.raw_arguments == '{"name": "btc-fa'
    assert listed.arguments is None and listed.error == "arguments must be a JSON object"
    assert unknown.arguments is None and unknown.error == "unknown tool 'switch_to_live'"
    assert good.ok and good.arguments == {"name": "eth-slow"}
    assert all("\n" not in c.error for c in reply.tool_calls)


async def test_a_missing_model_falls_back_to_the_next(server: OpenAILoopback, tmp_path: Path) -> None:
    server.script(Reply("from the second model", usage=(7, 3)))
    async with router_for(server, tmp_path, deep=["gpt-missing", "gpt-4o-mini"]) as router:
        reply = await router.complete(ASK, mode="deep")
    assert (reply.content, reply.model) == ("from the second model", "gpt-4o-mini")
    assert models_asked(server) == ["gpt-missing", "gpt-4o-mini"]
    assert usage_rows(tmp_path) == [("gpt-4o-mini", 7, 3)]


async def test_a_forbidden_model_falls_back_and_so_does_a_stream(
    server: OpenAILoopback, tmp_path: Path
) -> None:
    server.script(Failure(403, "model_not_allowed"), Reply(chunks=["ok"]))
    async with router_for(server, tmp_path, balanced=["gpt-4.1", "gpt-4o-mini"]) as router:
        chunks, final = await collect(router)
    assert chunks == ["ok"] and final.model == "gpt-4o-mini"
    assert models_asked(server) == ["gpt-4.1", "gpt-4o-mini"]


async def test_429_honours_retry_after_once_then_falls_back(server: OpenAILoopback, tmp_path: Path) -> None:
    server.script(
        Failure(429, "rate_limit_exceeded", retry_after="0"),
        Failure(429, "rate_limit_exceeded", retry_after="0"),
        Reply("fallback answer"),
    )
    async with router_for(server, tmp_path, fast=["gpt-4.1", "gpt-4o-mini"]) as router:
        reply = await router.complete(ASK, mode="fast")
    assert reply.model == "gpt-4o-mini"
    assert models_asked(server) == ["gpt-4.1", "gpt-4.1", "gpt-4o-mini"]  # one retry after the wait


async def test_429_with_a_long_retry_after_falls_back_at_once(server: OpenAILoopback, tmp_path: Path) -> None:
    server.script(Failure(429, "rate_limit_exceeded", retry_after="3600"), Reply("fallback answer"))
    async with router_for(server, tmp_path, fast=["gpt-4.1", "gpt-4o-mini"]) as router:
        reply = await router.complete(ASK, mode="fast")
    assert reply.model == "gpt-4o-mini"
    assert models_asked(server) == ["gpt-4.1", "gpt-4o-mini"]


async def test_a_timeout_falls_back_to_the_next_model(server: OpenAILoopback, tmp_path: Path) -> None:
    server.script(Hold(), Reply("quick answer"))
    async with router_for(server, tmp_path, timeout_s=0.5, fast=["gpt-4.1", "gpt-4o-mini"]) as router:
        reply = await router.complete(ASK, mode="fast")
    assert (reply.content, reply.model) == ("quick answer", "gpt-4o-mini")
    assert server.held == 1 and models_asked(server) == ["gpt-4.1", "gpt-4o-mini"]


async def test_a_stream_cut_off_after_text_is_an_error_not_a_fallback(
    server: OpenAILoopback, tmp_path: Path
) -> None:
    server.script(Reply(chunks=["first part, ", "never sent"], hold_after=1, usage=(50, 50)))
    chunks: list[str] = []
    async with router_for(server, tmp_path, timeout_s=0.5, balanced=["gpt-4.1", "gpt-4o-mini"]) as router:
        with pytest.raises(AIError) as err:
            async for item in router.stream(ASK):
                assert isinstance(item, str)
                chunks.append(item)
    assert chunks == ["first part, "]
    assert str(err.value) == f"gpt-4.1: the reply was cut off: timed out after 0.5s at {server.url}/v1"
    assert models_asked(server) == ["gpt-4.1"]
    ((model, prompt, completion),) = usage_rows(tmp_path)  # estimated: the server never sent usage
    assert model == "gpt-4.1" and prompt > 0 and completion == 3


async def test_every_model_failing_is_one_line_naming_each(server: OpenAILoopback, tmp_path: Path) -> None:
    server.script(Failure(429, "rate_limit_exceeded"), Hold())
    chain = ["gpt-missing", "gpt-4.1", "gpt-4o-mini"]
    async with router_for(server, tmp_path, timeout_s=0.5, deep=chain) as router:
        with pytest.raises(AllModelsFailed) as err:
            await router.complete(ASK, mode="deep")
    where = f"{server.url}/v1"
    assert str(err.value) == (
        f"every deep model failed: gpt-missing: HTTP 404 model_not_found from {where}: model not found; "
        f"gpt-4.1: HTTP 429 rate_limit_exceeded from {where}: rate limited; "
        f"gpt-4o-mini: timed out after 0.5s at {where}"
    )
    assert models_asked(server) == chain
    assert usage_rows(tmp_path) == []


async def test_other_errors_stop_the_chain_with_one_line(server: OpenAILoopback, tmp_path: Path) -> None:
    server.script(
        Failure(400, "context_length_exceeded", "This model's maximum context length\nis 128000 tokens.")
    )
    async with router_for(server, tmp_path, fast=["gpt-4.1", "gpt-4o-mini"]) as router:
        with pytest.raises(AIError) as err:
            await router.complete(ASK, mode="fast")
    assert not isinstance(err.value, AllModelsFailed)
    assert str(err.value) == (
        f"gpt-4.1: HTTP 400 context_length_exceeded from {server.url}/v1: "
        "This model's maximum context length is 128000 tokens."
    )
    assert models_asked(server) == ["gpt-4.1"]


async def test_a_rejected_key_is_not_echoed_in_the_error(server: OpenAILoopback, tmp_path: Path) -> None:
    wrong = "sk-wrong-router-key-9999-aaaa"
    settings = ai_settings(server, fast=["gpt-4.1", "gpt-4o-mini"])
    async with Router(settings, TokenBudget(tmp_path, 0), wrong) as router:
        with pytest.raises(AIError) as err:
            await router.complete(ASK, mode="fast")
    assert str(err.value) == f"gpt-4.1: HTTP 401 invalid_api_key from {server.url}/v1: key rejected"
    assert len(server.bodies) == 1


async def test_budget_exceeded_is_refused_before_any_request(server: OpenAILoopback, tmp_path: Path) -> None:
    budget = TokenBudget(tmp_path, 100)
    await budget.record("gpt-4o-mini", 90, 10)
    server.script(Reply("never asked"))
    async with Router(ai_settings(server, budget=100), budget, KEY) as router:
        with pytest.raises(BudgetExceeded, match=r"used up: 100 of 100 tokens; commands only"):
            await router.complete(ASK)
        with pytest.raises(BudgetExceeded):
            async for _ in router.stream(ASK):
                pass
    assert server.requests == 0 and server.bodies == [] and server.unused == 1


async def test_a_call_that_crosses_the_budget_completes_and_the_next_is_refused(
    server: OpenAILoopback, tmp_path: Path
) -> None:
    server.script(Reply("a long answer", usage=(80, 40)), Reply("never asked"))
    async with router_for(server, tmp_path, budget=100) as router:
        await router.complete(ASK)
        assert await router.budget.remaining() == 0
        with pytest.raises(BudgetExceeded):
            await router.complete(ASK)
    assert len(server.bodies) == 1


async def test_the_key_is_only_in_the_authorization_header(
    server: OpenAILoopback, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug logs included
    server.script(
        Reply("text"),
        Reply(tool_calls=[("pause_bot", '{"name": "x"}')]),
        Failure(429, "rate_limit_exceeded", retry_after="0"),
        Reply(chunks=["a", "b"]),
        Hold(),
        Failure(403, "model_not_allowed"),
    )
    async with router_for(
        server, tmp_path, timeout_s=0.5, balanced=["gpt-missing", "gpt-4.1", "gpt-4o-mini"]
    ) as r:
        await r.complete(ASK)
        await r.complete(ASK, [PAUSE_TOOL])
        await collect(r)
        with pytest.raises(AllModelsFailed) as err:
            await r.complete(ASK)
    assert len(server.bodies) == 10
    assert all(a == f"Bearer {KEY}" for a in server.authorizations)
    assert KEY not in json.dumps(server.bodies)
    assert caplog.text and KEY not in caplog.text
    assert "gpt-missing" in caplog.text  # the fallbacks are logged, without the key
    assert KEY not in str(err.value)
    assert [p for p in tmp_path.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()] == []


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None


def test_an_unknown_mode_is_refused(server: OpenAILoopback, tmp_path: Path) -> None:
    router = router_for(server, tmp_path)
    with pytest.raises(ValueError, match="unknown mode 'turbo'"):
        router.chain("turbo")  # type: ignore[arg-type]


async def test_open_router_takes_the_key_and_base_url_from_the_vault(
    secret_service: str, server: OpenAILoopback, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = load_settings(None)
    with pytest.raises(AIUnavailable, match=r"no OpenAI API key saved: run `amarktai keys set openai`"):
        await open_router(settings, data)

    KeyManager(settings, data).save("openai", {"api_key": KEY, "base_url": f"{server.url}/v1"})
    server.script(Reply("hello from the vault's endpoint", usage=(4, 6)))
    async with await open_router(settings, data) as router:
        assert router.base_url == f"{server.url}/v1"
        assert router.budget.daily_tokens == settings.ai.daily_token_budget
        reply = await router.complete(ASK)
    assert reply.content == "hello from the vault's endpoint"
    assert server.authorizations == [f"Bearer {KEY}"]
    assert usage_rows(data) == [("gpt-4o-mini", 4, 6)]

    # [ai] base_url wins over the saved one
    async with OpenAILoopback.running(KEY) as other:
        other.script(Reply("from [ai] base_url"))
        override = settings.model_copy(update={"ai": AiSettings(base_url=f"{other.url}/v1")})
        async with await open_router(override, data) as router:
            assert (await router.complete(ASK)).content == "from [ai] base_url"
    assert len(server.bodies) == 1 and len(other.bodies) == 1

"""The Chat tab, driven by keys and clicks: the real ChatSession on the app's engine (the real BTC
1h replay, a real ledger), commands only without a key, and the real openai SDK against the
loopback OpenAI-compatible server with the key in a real Secret Service (gnome-keyring on a
private D-Bus bus).

The proposals' clock is injected (``ai.session._wall_ms``): expiry is tested by moving it,
never by sleeping. Each wait is on a completion signal: ``ChatPane.opened`` (the session is
attached), ``ChatPane.settled`` (no turn or decision under way).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from loopback.openai_api import Compute, Failure, Hold, OpenAILoopback, Reply
from loopback.secret_service import missing_binaries, private_secret_service
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Button, Input, Markdown, Static, TabbedContent
from tui_helpers import BTC_1H, ETH_1H, SIZE, replay_done

from amarktai_tui.ai import proposals
from amarktai_tui.ai import session as chat_session
from amarktai_tui.ai.proposals import DEFAULT_TTL_S
from amarktai_tui.config import AiModels, AiSettings, BotSettings, Settings
from amarktai_tui.domain.enums import BotState
from amarktai_tui.engine.setup import ReplayArgs
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.risk.breakers import Breaker
from amarktai_tui.tui.app import AmarktaiApp, _all_bindings
from amarktai_tui.tui.chat_pane import BANNER, ChatPane
from amarktai_tui.tui.screens.confirm_action import ConfirmActionScreen
from amarktai_tui.tui.widgets.chat_input import ChatInput
from amarktai_tui.tui.widgets.proposal_card import ProposalCard
from amarktai_tui.vault.manager import KeyManager

MakeApp = Callable[..., AmarktaiApp]
KEY = "sk-loopback-tui-chat-0123456789-wxyz"
START_MS = 1_800_000_000_000  # the session's wall clock at the start of a test (ms UTC)
TIMEOUT_S = 60  # a guard against a hang, not a wait
TURN_MESSAGES = (
    ChatPane.Started,
    ChatPane.Chunk,
    ChatPane.Replied,
    ChatPane.Proposed,
    ChatPane.Output,
    ChatPane.Failed,
    ChatPane.Finished,
)


class Clock:
    """The session's injected wall clock (ms UTC): tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.ms = START_MS

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Clock:
    """The session's clock, and no keyring choice or OpenAI variable of the developer."""
    for key in list(os.environ):
        if key.startswith("OPENAI_") or key == "PYTHON_KEYRING_BACKEND":
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    c = Clock()
    monkeypatch.setattr(chat_session, "_wall_ms", c)
    return c


@pytest.fixture
def no_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Secret Service (the bus address points at a socket nobody listens on): commands only."""
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus-here'}")


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
    async with OpenAILoopback.running(KEY) as s:
        yield s


def with_ai(settings: Settings, server: OpenAILoopback) -> Settings:
    ai = AiSettings(
        base_url=f"{server.url}/v1",
        models=AiModels(fast=["gpt-4o-mini"], balanced=["gpt-4o-mini"]),
        timeout_s=10,
        daily_token_budget=0,
    )
    return settings.model_copy(update={"ai": ai})


# -- driving the pane ----------------------------------------------------------------------------------
async def open_chat(app: AmarktaiApp, pilot: Pilot[None]) -> ChatPane:
    """Wait for the replay and the session, then show the Chat tab (key 4)."""
    await replay_done(app, pilot)
    pane = app.query_one(ChatPane)
    await asyncio.wait_for(pane.opened.wait(), TIMEOUT_S)
    await pilot.press("4")
    await pilot.pause()
    return pane


async def settle(pane: ChatPane, pilot: Pilot[None]) -> None:
    await pilot.pause()
    await asyncio.wait_for(pane.settled.wait(), TIMEOUT_S)
    await pilot.pause()


async def say(pane: ChatPane, pilot: Pilot[None], text: str) -> None:
    """Type ``text`` into the chat input (it has the focus) and send it with enter."""
    chat_input = pane.query_one(ChatInput)
    assert pane.app.focused is chat_input
    chat_input.value = text
    await pilot.press("enter")
    await settle(pane, pilot)


def texts(pane: ChatPane, cls: str) -> list[str]:
    return [str(w.content) for w in pane.query(f"#chat-log .{cls}").results(Static)]


def last_card(pane: ChatPane) -> ProposalCard:
    return list(pane.query(ProposalCard))[-1]


def card_text(card: ProposalCard) -> str:
    return "\n".join(str(w.content) for w in card.query(Static))


def states(app: AmarktaiApp) -> dict[str, BotState]:
    assert app.engine is not None
    return {r.rec.name: r.rec.state for r in app.engine.runners.values()}


def audit(app: AmarktaiApp, proposal: str) -> list[tuple[str, str]]:
    """(event, actor) of ``proposal`` in the ledger's ``ai_actions``, in order."""
    assert app.engine is not None
    with closing(connect_readonly(str(app.engine.store.path))) as conn:
        rows = conn.execute(
            "SELECT event, actor FROM ai_actions WHERE proposal = ? ORDER BY id", (proposal,)
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


async def press_card(pane: ChatPane, pilot: Pilot[None], card: ProposalCard, button: str) -> None:
    await pilot.click(f"#{button}-{card.proposal.id}")
    await pilot.pause()


# -- commands only ---------------------------------------------------------------------------------------
async def test_chat_tab_commands_only_answers_bots(make_app: MakeApp, no_keyring: None) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        assert app.query_one("#tabs", TabbedContent).active == "chat"
        assert isinstance(app.focused, ChatInput)
        assert pane.session is not None and not pane.session.ai_available
        banner = pane.query_one("#chat-banner", Static)
        assert banner.display and str(banner.content) == BANNER
        assert str(pane.query_one("#chat-status", Static).content).startswith("commands only: ")

        await say(pane, pilot, "/bots")
        assert texts(pane, "chat-user") == ["/bots"]
        (answer,) = texts(pane, "chat-output")
        header, *lines = answer.splitlines()
        assert header.split() == ["name", "state", "stage", "pair", "equity"]
        assert {line.split()[0] for line in lines if not line.startswith("  ")} == set(states(app))

        await say(pane, pilot, "what is going on?")  # free text without the AI: a helpful answer
        assert texts(pane, "chat-output")[-1].startswith("Commands only: free text needs the AI")
        assert not pane.query(".chat-failed")


async def test_pause_all_card_confirmed_in_the_modal_runs_once(make_app: MakeApp, no_keyring: None) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        running = {name for name, st in states(app).items() if st is BotState.RUNNING}
        assert running

        await say(pane, pilot, "/pause all")
        card = last_card(pane)
        p = card.proposal
        assert (p.tool, p.confirm_word, card.live) == ("pause_all", None, True)
        shown = card_text(card)
        assert f"Proposal {p.id}: {p.what}" in shown
        assert f"which     {', '.join(p.bots)}" in shown and f"effect    {p.effect}" in shown
        assert "why       /pause all" in shown and "to run it a plain confirmation" in shown
        assert "expires 08:02:00 UTC (in 120 s)" in shown  # START_MS + 120 s
        assert {n for n, st in states(app).items() if st is BotState.RUNNING} == running

        await press_card(pane, pilot, card, "confirm")
        assert isinstance(app.screen, ConfirmActionScreen)
        assert not app.screen.query_one("#confirm-action-ok", Button).disabled
        assert not app.screen.query("#confirm-action-word")  # no word to type for a pause
        await pilot.press("y")
        await settle(pane, pilot)

        assert not isinstance(app.screen, ConfirmActionScreen)
        assert isinstance(app.focused, ChatInput)
        assert texts(pane, "chat-outcome")[-1].startswith("Done: ")
        assert card.state == "executed" and not card.query(Button)
        assert all(states(app)[n] is BotState.PAUSED for n in running)
        assert audit(app, p.id) == [("proposed", "commands"), ("confirmed", "user"), ("executed", "user")]
        assert pane.session is not None and pane.session.pending() == []


async def test_halt_needs_the_word_typed_exactly(make_app: MakeApp, no_keyring: None) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await say(pane, pilot, "/halt")
        card = last_card(pane)
        assert card.proposal.confirm_word == "HALT" and "to run it type HALT to confirm" in card_text(card)

        await press_card(pane, pilot, card, "confirm")
        modal = app.screen
        assert isinstance(modal, ConfirmActionScreen)
        ok = modal.query_one("#confirm-action-ok", Button)
        assert ok.disabled and isinstance(app.focused, Input)
        await pilot.press("h", "a", "l", "t")
        await pilot.pause()
        assert ok.disabled
        await pilot.press("enter")  # a wrong word: the modal says so and stays
        await pilot.pause()
        assert app.screen is modal
        assert "type HALT exactly" in str(modal.query_one("#confirm-action-error", Static).content)
        assert card.live and pane.session is not None and pane.session.pending() == [card.proposal]

        modal.query_one("#confirm-action-word", Input).value = ""
        await pilot.press("H", "A", "L", "T")
        await pilot.pause()
        assert not ok.disabled
        await pilot.press("enter")
        await settle(pane, pilot)
        assert texts(pane, "chat-outcome")[-1].startswith("Done: account halted")
        assert card.state == "executed"
        assert app.engine is not None and (Breaker.HALT, None) in app.engine.board.active
        assert audit(app, card.proposal.id)[-1] == ("executed", "user")


async def test_cancel_and_escape_run_nothing(make_app: MakeApp, no_keyring: None) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        before = states(app)
        await say(pane, pilot, "/pause all")
        first = last_card(pane)
        await press_card(pane, pilot, first, "confirm")
        assert isinstance(app.screen, ConfirmActionScreen)
        await pilot.press("escape")  # the modal closes; the proposal still waits
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmActionScreen) and first.live

        await press_card(pane, pilot, first, "cancel")
        await settle(pane, pilot)
        assert texts(pane, "chat-outcome")[-1].startswith("Cancelled: ")
        assert first.state == "cancelled" and not first.query(Button)
        assert states(app) == before
        assert audit(app, first.proposal.id) == [("proposed", "commands"), ("cancelled", "user")]


async def test_an_expired_card_says_so_and_cannot_be_confirmed(
    make_app: MakeApp, no_keyring: None, clock: Clock
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        pane.ticker.pause()  # the test calls tick() itself, after moving the clock
        before = states(app)

        # the card's timer notices the expiry
        await say(pane, pilot, "/pause all")
        ticked = last_card(pane)
        clock.advance(30)
        pane.tick()
        assert "(in 90 s)" in card_text(ticked) and ticked.live
        clock.advance(DEFAULT_TTL_S - 30)
        pane.tick()
        await pilot.pause()
        assert ticked.state == "expired" and not ticked.query(Button)
        assert "expired at 08:02:00 UTC: it can no longer be confirmed" in card_text(ticked)

        # Confirm pressed after the expiry, before the timer saw it: no modal, nothing runs
        await say(pane, pilot, "/pause all")
        pressed = last_card(pane)
        clock.advance(DEFAULT_TTL_S)
        await press_card(pane, pilot, pressed, "confirm")
        assert not isinstance(app.screen, ConfirmActionScreen)
        assert pressed.state == "expired" and "it can no longer be confirmed" in card_text(pressed)

        # expired while the modal was open: the session refuses it, the card says so
        await say(pane, pilot, "/pause all")
        late = last_card(pane)
        await press_card(pane, pilot, late, "confirm")
        assert isinstance(app.screen, ConfirmActionScreen)
        clock.advance(DEFAULT_TTL_S + 1)
        await pilot.click("#confirm-action-ok")
        await settle(pane, pilot)
        assert texts(pane, "chat-outcome")[-1].startswith("Expired: ")
        assert late.state == "expired"

        assert states(app) == before
        assert audit(app, late.proposal.id) == [("proposed", "commands"), ("expired", "user")]
        assert pane.session is not None and pane.session.pending() == []


async def test_input_history_up_and_down(make_app: MakeApp, no_keyring: None) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        chat_input = pane.query_one(ChatInput)
        for line in ("/help", "/bots", "/bots", "/status"):
            await say(pane, pilot, line)
        await pilot.press("d", "r", "a", "f", "t")
        seen = []
        for key in ("up", "up", "up", "up", "down", "down", "down", "down"):
            await pilot.press(key)
            seen.append(chat_input.value)
        assert seen == ["/status", "/bots", "/help", "/help", "/bots", "/status", "draft", "draft"]
        assert chat_input.cursor_position == len("draft")

        # esc leaves the input: the tab keys work again
        await pilot.press("escape", "1")
        assert app.query_one("#tabs", TabbedContent).active == "bots"
        await pilot.press("4")
        assert app.focused is chat_input and chat_input.value == "draft"


async def test_clear_starts_a_new_conversation(make_app: MakeApp, no_keyring: None) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await say(pane, pilot, "/status")
        await say(pane, pilot, "/pause all")
        card = last_card(pane)
        await say(pane, pilot, "/clear")
        log = pane.query_one("#chat-log")
        assert [type(w) for w in log.children] == [ProposalCard, Static]  # the waiting card stays
        assert texts(pane, "chat-note") == ["New conversation. Earlier messages stay in the history."]
        assert card.live
        assert pane.session is not None and pane.session.history() == [
            m for m in pane.session.history() if m.role == "system"
        ]
        await pilot.press("up")
        assert pane.query_one(ChatInput).value == "/clear"


async def test_a_new_session_on_the_same_engine_replaces_the_old_one(
    make_app: MakeApp, no_keyring: None
) -> None:
    """What a mode switch does (engine stopped, a new one started): the old session closes, its
    live card ends, and the new session shows the day's conversation once."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await say(pane, pilot, "/status")
        await say(pane, pilot, "/pause all")
        card = last_card(pane)
        await pane.close_session()
        await pilot.pause()
        assert card.state == "ended" and not pane.opened.is_set()
        assert str(pane.query_one("#chat-status", Static).content).startswith("The chat closed")
        await say(pane, pilot, "/bots")
        assert texts(pane, "chat-note")[-1] == "The chat opens once the engine has started."

        assert app.engine is not None
        await pane.open_session(app.engine, app.settings, app.data_dir)
        await pilot.pause()
        assert texts(pane, "chat-user") == ["/status", "/pause all"]  # from the ledger, once
        assert not pane.query(ProposalCard)  # the old proposal is not pending in the new session
        await say(pane, pilot, "/bots")
        assert texts(pane, "chat-user")[-1] == "/bots" and texts(pane, "chat-output")[-1].startswith("name")


async def test_a_session_that_fails_to_open_leaves_the_commands(
    make_app: MakeApp, no_keyring: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any) -> chat_session.ChatSession:
        raise RuntimeError("chat table unreadable")

    monkeypatch.setattr(chat_session.ChatSession, "open", broken)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        assert pane.query_one("#chat-banner", Static).display
        status = str(pane.query_one("#chat-status", Static).content)
        assert status == "the chat session did not open: RuntimeError: chat table unreadable"
        await say(pane, pilot, "/pause all")
        card = last_card(pane)
        await press_card(pane, pilot, card, "confirm")
        await pilot.click("#confirm-action-ok")
        await settle(pane, pilot)
        assert card.state == "executed"
        assert all(st is not BotState.RUNNING for st in states(app).values())


async def test_the_chat_bindings_have_ids() -> None:
    ids = {b.id for b in _all_bindings()}
    assert {"app.tab_chat", "chat.stop", "chat.leave", "chat.history_back", "chat.history_forward"} <= ids
    assert {"confirm_action.cancel", "confirm_action.submit", "confirm_action.yes"} <= ids


# -- with the AI -------------------------------------------------------------------------------------------
async def test_a_reply_streams_then_renders_as_markdown_and_a_tool_call_is_a_card(
    make_app: MakeApp, settings: Settings, server: OpenAILoopback, secret_service: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    s = with_ai(settings, server)
    KeyManager(s, data).save("openai", {"api_key": KEY})
    server.script(
        Reply(tool_calls=[("pause_all", '{"reason": "the user asked to pause every bot"}')]),
        Reply("I proposed **pausing every bot**.\n\n- confirm it in the card\n- or cancel it"),
    )
    seen: list[Message] = []

    def hook(message: Message) -> None:
        if isinstance(message, TURN_MESSAGES):
            seen.append(message)

    app = make_app(settings_=s, data_dir=data)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        pane = await open_chat(app, pilot)
        assert pane.session is not None and pane.session.ai_available
        assert not pane.query_one("#chat-banner", Static).display
        status = str(pane.query_one("#chat-status", Static).content)
        assert status == "AI gpt-4o-mini · 0 tokens today (no daily budget)"

        await say(pane, pilot, "please pause all bots")
        assert [type(m) for m in seen] == [
            ChatPane.Started,
            ChatPane.Proposed,
            ChatPane.Chunk,
            ChatPane.Replied,
            ChatPane.Finished,
        ]
        (md,) = pane.query("#chat-log Markdown").results(Markdown)
        assert md.source == "I proposed **pausing every bot**.\n\n- confirm it in the card\n- or cancel it"
        assert texts(pane, "chat-meta") == ["AI (gpt-4o-mini)"]
        assert not pane.query(".chat-streaming")  # the streamed text became the Markdown
        status = str(pane.query_one("#chat-status", Static).content)
        assert status.startswith("AI gpt-4o-mini · ") and status.endswith("tokens today (no daily budget)")

        card = last_card(pane)
        assert (card.proposal.tool, card.proposal.actor) == ("pause_all", "ai")
        assert "why       the user asked to pause every bot" in card_text(card)
        await press_card(pane, pilot, card, "confirm")
        await pilot.click("#confirm-action-ok")
        await settle(pane, pilot)
        assert card.state == "executed" and texts(pane, "chat-outcome")[-1].startswith("Done: ")
        assert audit(app, card.proposal.id) == [
            ("proposed", "ai"),
            ("confirmed", "user"),
            ("executed", "user"),
        ]

        # an error answer is a failed line; the next turn works again
        seen.clear()
        server.script(Failure(500, "server_error", "the loopback is down"))
        await say(pane, pilot, "and now?")
        assert [type(m) for m in seen] == [ChatPane.Started, ChatPane.Failed, ChatPane.Finished]
        assert texts(pane, "chat-failed")[-1].startswith("the AI could not answer: ")
        assert KEY not in str(server.bodies)


async def test_waiting_for_the_model_blocks_nothing_and_esc_stops_it(
    make_app: MakeApp, settings: Settings, server: OpenAILoopback, secret_service: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    s = with_ai(settings, server)
    KeyManager(s, data).save("openai", {"api_key": KEY})
    server.script(Hold())
    app = make_app(settings_=s, data_dir=data)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        pane.query_one(ChatInput).value = "what happened overnight?"
        await pilot.press("enter")
        await pilot.pause()
        assert not pane.settled.is_set() and texts(pane, "chat-user") == ["what happened overnight?"]
        assert "chat.stop" in {b.binding.id for b in app.active_bindings.values() if b.enabled}
        await pilot.press("/")  # the UI still takes keys while the model is silent
        assert pane.query_one(ChatInput).value == "/"
        await pilot.press("escape")
        await settle(pane, pilot)
        assert not pane.query(".chat-failed") and not pane.query(Markdown)

        server.script(Reply("All quiet: no fills overnight."))
        await say(pane, pilot, "and now?")
        (md,) = pane.query("#chat-log Markdown").results(Markdown)
        assert md.source == "All quiet: no fills overnight."


async def test_a_new_app_shows_the_conversation_of_today(
    make_app: MakeApp, settings: Settings, server: OpenAILoopback, secret_service: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    s = with_ai(settings, server)
    KeyManager(s, data).save("openai", {"api_key": KEY})
    server.script(Reply("Three bots, all **running**."))
    app = make_app(settings_=s, data_dir=data)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await say(pane, pilot, "how are my bots?")
        await say(pane, pilot, "/pause all")
        pid = last_card(pane).proposal.id

    app = make_app(settings_=s, data_dir=data)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        assert texts(pane, "chat-user") == ["how are my bots?", "/pause all"]
        (md,) = pane.query("#chat-log Markdown").results(Markdown)
        assert md.source == "Three bots, all **running**."
        # the proposal ended with its engine: a note, no card
        assert not pane.query(ProposalCard)
        assert any(t.startswith(f"Proposal {pid}") for t in texts(pane, "chat-output"))
        await pilot.press("up")
        assert pane.query_one(ChatInput).value == "/pause all"


# -- snapshot ------------------------------------------------------------------------------------------------
def test_chat_tab_snapshot(
    snap_compare: Any, make_app: MakeApp, secret_service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = itertools.count(1)
    monkeypatch.setattr(proposals, "_new_id", lambda: f"p-{next(ids):08x}")
    app = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        pane = await open_chat(app, pilot)
        pane.query_one(ChatInput).cursor_blink = False  # a blinking cursor is drawn or not by the time
        await say(pane, pilot, "/bots")
        await say(pane, pilot, "/pause all")
        await say(pane, pilot, "/halt")
        await press_card(pane, pilot, pane.query(ProposalCard).first(), "cancel")
        await settle(pane, pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# -- the "done when", through the pane -------------------------------------------------------------
def _tool_results(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["tool_call_id"]: json.loads(m["content"]) for m in body["messages"] if m["role"] == "tool"}


def _answer_why(body: dict[str, Any]) -> Reply:
    """The scripted model reads its tool results and answers from them (what the ledger says)."""
    results = _tool_results(body)
    (trip,) = results["call_0"]["tripped"]
    return Reply(
        f"**btc-fast** stopped trading: breaker `{trip['breaker']}` (trip {trip['trip_id']}): "
        f"{trip['message']}."
    )


async def test_why_did_btc_fast_stop_and_pause_all_eth_bots_in_the_pane(
    settings: Settings, server: OpenAILoopback, secret_service: str, tmp_path: Path
) -> None:
    """The two questions of the issue, typed into the Chat tab of a TUI that replayed BTC and ETH:
    the answer is built from the breaker the engine tripped, and the ETH pause is a card that
    runs only once confirmed (audited)."""
    data = tmp_path / "data"
    bots = [
        BotSettings(name="btc-fast", pair="BTC/USDT", timeframe="1h", params={"fast": 5, "slow": 20}),
        BotSettings(
            name="eth-slow", pair="ETH/USDT", timeframe="1h", strategy="rsi_reversion", params={"period": 28}
        ),
        BotSettings(name="eth-rsi", pair="ETH/USDT", timeframe="1h", strategy="rsi_reversion"),
    ]
    s = with_ai(settings, server).model_copy(update={"bots": bots})
    s.risk = s.risk.model_copy(update={"max_consecutive_losses": 3})
    KeyManager(s, data).save("openai", {"api_key": KEY})
    (tmp_path / "themes").mkdir()
    replay = ReplayArgs(files=[str(BTC_1H), str(ETH_1H)], speed=0, until_end=False)
    app = AmarktaiApp(s, data, replay, themes_dir=tmp_path / "themes")
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        assert app.engine is not None
        trips = [t for t in app.engine.board.active.values() if t.bot_id is not None]
        btc = app.engine.runner_by_name("btc-fast").rec.id
        (trip,) = [t for t in trips if t.bot_id == btc]

        server.script(Reply(tool_calls=[("breaker_status", '{"bot": "btc-fast"}')]), Compute(_answer_why))
        await say(pane, pilot, "why did btc-fast stop trading?")
        (md,) = pane.query("#chat-log Markdown").results(Markdown)
        assert md.source == (
            f"**btc-fast** stopped trading: breaker `{trip.breaker}` (trip {trip.id}): {trip.message}."
        )
        assert "3 losing trades in a row (limit 3)" in md.source

        server.script(
            Reply(tool_calls=[("pause_all", '{"asset": "ETH", "reason": "asked in the chat"}')]),
            Reply("I proposed pausing the ETH bots: confirm it in the card."),
        )
        await say(pane, pilot, "pause all ETH bots")
        card = last_card(pane)
        assert card.proposal.bots == ("eth-slow", "eth-rsi")
        assert states(app)["eth-slow"] is BotState.RUNNING  # nothing ran yet
        await press_card(pane, pilot, card, "confirm")
        await pilot.click("#confirm-action-ok")
        await settle(pane, pilot)
        assert card.state == "executed"
        assert texts(pane, "chat-outcome")[-1] == "Done: paused 2 bot(s): eth-slow, eth-rsi"
        assert states(app) == {
            "btc-fast": BotState.CIRCUIT_TRIPPED,  # untouched: the pause was for ETH only
            "eth-slow": BotState.PAUSED,
            "eth-rsi": BotState.PAUSED,
        }
        assert audit(app, card.proposal.id) == [
            ("proposed", "ai"),
            ("confirmed", "user"),
            ("executed", "user"),
        ]
    assert KEY not in json.dumps(server.bodies) and str(tmp_path) not in json.dumps(server.bodies)

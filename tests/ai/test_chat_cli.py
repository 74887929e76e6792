"""``amarktai chat`` as a real process on a real ledger (built from Binance's recorded candles):
commands only without a key, the AI through the loopback server with the key from an encrypted
keyring file, y/N and typed-word confirmations, the control socket while the chat runs, and the
refusal when an engine already runs on the data dir. The process is driven through its pipes;
each step waits for the chat's prompt, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from ai_helpers import BTC_1H, ETH_1H, FLEET, audit, both, console, rows
from loopback.openai_api import OpenAILoopback, Reply

from amarktai_tui.ai.session import ChatSession
from amarktai_tui.config import load_settings
from amarktai_tui.locations import lock_path
from amarktai_tui.ops.control import serve_control, stop_control
from amarktai_tui.ops.lock import is_held
from amarktai_tui.vault.manager import KeyManager

CMD = [sys.executable, "-c", "from amarktai_tui.cli import main; main()"]
KEY = "sk-loopback-chat-cli-0123456789-wxyz"
PASSPHRASE = "correct horse battery staple"
PROMPT = "you> "
STEP_S = 60.0  # a guard against a hang, not a wait
CONFIG = """
[keys]
backend = "cryptfile"
"""
BOT = """
[[bots]]
name = "{name}"
pair = "{pair}"
timeframe = "1h"
strategy = "{strategy}"
params = {params}
"""


def config(tmp: Path) -> Path:
    """The four bots of the ledger (a chat's engine adds no demo bots) and the encrypted keyring."""
    text = CONFIG
    for s in FLEET:
        params = "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in s.params.items()) + "}"
        text += BOT.format(name=s.name, pair=s.pair, strategy=s.strategy, params=params)
    path = tmp / "amarktai.toml"
    path.write_text(text)
    return path


def env_for(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMARKTAI_", "OPENAI_"))}
    env.update(
        XDG_CONFIG_HOME=str(tmp / "xdg-config"),
        XDG_DATA_HOME=str(tmp / "xdg-data"),
        XDG_RUNTIME_DIR=str(tmp),
        PYTHONUNBUFFERED="1",
        AMARKTAI_KEYRING_PASSPHRASE=PASSPHRASE,
    )
    return env


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith(("AMARKTAI_", "OPENAI_")) or key == "PYTHON_KEYRING_BACKEND":
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("AMARKTAI_KEYRING_PASSPHRASE", PASSPHRASE)


@pytest.fixture
async def data(tmp_path: Path) -> Path:
    """A ledger with the four bots after 200 hours of BTC and ETH candles (no engine running)."""
    d = tmp_path / "data"
    c = await console(d, FLEET)
    c.feed(both(200))
    await c.engine.flush(final=True)
    await c.close()
    return d


class Chat:
    """A running ``amarktai chat``: ``say`` a line, then read up to the next prompt."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out = ""

    @classmethod
    @asynccontextmanager
    async def running(cls, tmp: Path, data: Path) -> AsyncIterator[Chat]:
        proc = await asyncio.create_subprocess_exec(
            *CMD, "chat", "--config", str(config(tmp)), "--data-dir", str(data),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env_for(tmp), cwd=tmp,
        )  # fmt: skip
        try:
            yield cls(proc)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def until(self, text: str) -> str:
        """Read stdout until it ends with ``text``; returns what came since the last call."""
        assert self.proc.stdout is not None
        start = len(self.out)
        while len(self.out) == start or not self.out.endswith(text):
            chunk = await asyncio.wait_for(self.proc.stdout.read(4096), STEP_S)
            if not chunk:
                raise AssertionError(f"the chat ended before {text!r}: {self.out[start:]!r}")
            self.out += chunk.decode()
        return self.out[start:]

    async def say(self, line: str, until: str = PROMPT) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        await self.proc.stdin.drain()
        return await self.until(until)

    async def quit(self) -> tuple[int, str]:
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.write(b"/quit\n")
        await self.proc.stdin.drain()
        code = await asyncio.wait_for(self.proc.wait(), STEP_S)
        return code, (await self.proc.stderr.read()).decode()


async def amarktai(tmp: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CMD, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env_for(tmp), cwd=tmp
    )
    out, err = await asyncio.wait_for(proc.communicate(), STEP_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def bot_states(data: Path) -> dict[str, str]:
    return {r["name"]: r["state"] for r in rows(data, "SELECT name, state FROM bots")}


async def test_commands_only_chat_confirms_with_y_and_typed_words(tmp_path: Path, data: Path) -> None:
    async with Chat.running(tmp_path, data) as chat:
        intro = await chat.until(PROMPT)
        assert intro.startswith("amarktai chat: commands only: no OpenAI API key saved")
        assert "without its market feed" in intro
        assert is_held(lock_path(data))

        out = await chat.say("why did btc-fast stop trading?")
        assert "Commands only: free text needs the AI" in out and "amarktai keys set openai" in out

        out = await chat.say("/pause all", until="[y/N] ")
        assert "Pause every running bot (4)" in out
        assert "Cancelled: cancelled by the user" in await chat.say("n")
        assert set(bot_states(data).values()) == {"running"}
        await chat.say("/pause all", until="[y/N] ")
        assert "Done: paused 4 bot(s)" in await chat.say("y")
        assert set(bot_states(data).values()) == {"paused"}  # written at once, by this process's engine

        out = await chat.say("/stop btc-fast", until="(anything else cancels): ")
        assert "type btc-fast to confirm" in out
        out = await chat.say("yes")
        assert "Refused: confirmation refused: type btc-fast exactly" in out and "Cancelled" in out
        await chat.say("/stop btc-fast", until="(anything else cancels): ")
        assert "Done: btc-fast is stopped" in await chat.say("btc-fast")

        # the control socket is served while the chat waits for the user: `amarktai halt` reaches it
        code, stdout, stderr = await amarktai(tmp_path, "halt", "--reason", "from another terminal",
                                              "--data-dir", str(data))  # fmt: skip
        assert code == 0, stderr
        assert "engine running: applied live" in stdout + stderr
        assert "TRIPPED trip 1 halt (account)" in await chat.say("/breakers")
        assert "Not proposed: the account is already halted (trip 1)" in await chat.say("/halt")
        code, stderr = await chat.quit()
    assert code == 0 and "Traceback" not in stderr, stderr
    assert not is_held(lock_path(data))
    assert bot_states(data)["btc-fast"] == "stopped"
    actions = audit(data)
    assert [e for _, e, t, _ in actions if t == "pause_all"] == [
        "proposed", "cancelled", "proposed", "confirmed", "executed",
    ]  # fmt: skip
    assert [e for _, e, t, _ in actions if t == "stop_bot"] == [
        "proposed", "refused", "cancelled", "proposed", "confirmed", "executed",
    ]  # fmt: skip
    assert {a for _, _, _, a in actions} == {"commands", "user"}
    said = [r["content"] for r in rows(data, "SELECT content FROM chat_messages WHERE role = 'user'")]
    assert said[:3] == ["why did btc-fast stop trading?", "/pause all", "/pause all"]
    code, stdout, _ = await amarktai(tmp_path, "ledger", "verify", "--data-dir", str(data))
    assert code == 0, stdout


async def test_ai_chat_proposes_and_the_user_confirms(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with OpenAILoopback.running(KEY) as server:
        settings = load_settings(config(tmp_path), required=True)
        KeyManager(settings, data).save("openai", {"api_key": KEY, "base_url": f"{server.url}/v1"})
        server.script(
            Reply(
                tool_calls=[("pause_all", '{"asset": "ETH", "reason": "asked in the chat"}')], usage=(700, 20)
            ),
            Reply("I proposed pausing **eth-fast** and **eth-rsi**.", usage=(750, 15)),
        )
        async with Chat.running(tmp_path, data) as chat:
            intro = await chat.until(PROMPT)
            assert intro.startswith("amarktai chat: AI gpt-4o-mini · 0 / 200,000 tokens today")
            out = await chat.say("pause all ETH bots", until="[y/N] ")
            assert "ai> I proposed pausing **eth-fast** and **eth-rsi**." in out
            assert "Pause every running ETH bot (2)" in out and "which: eth-fast, eth-rsi" in out
            assert set(bot_states(data).values()) == {"running"}
            assert "Done: paused 2 bot(s): eth-fast, eth-rsi" in await chat.say("yes")
            code, stderr = await chat.quit()
        assert code == 0 and "Traceback" not in stderr, stderr
        blob = json.dumps(server.bodies)
        assert len(server.bodies) == 2 and KEY not in blob and str(tmp_path) not in blob
        assert server.authorizations == [f"Bearer {KEY}"] * 2
    assert bot_states(data) == {
        "btc-fast": "running",
        "btc-slow": "running",
        "eth-fast": "paused",
        "eth-rsi": "paused",
    }
    assert [(e, a) for _, e, _, a in audit(data)] == [
        ("proposed", "ai"),
        ("confirmed", "user"),
        ("executed", "user"),
    ]
    roles = [r["role"] for r in rows(data, "SELECT role FROM chat_messages ORDER BY id")]
    assert roles == ["user", "assistant", "tool", "system", "assistant", "system"]


@asynccontextmanager
async def daemon(tmp: Path, data: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``amarktai --daemon`` on ``data`` (replaying the 1h files in real time: no candle in the test),
    yielded once it logs that the engine started; stopped with SIGTERM at the end."""
    proc = await asyncio.create_subprocess_exec(
        *CMD, "--daemon", "--config", str(config(tmp)), "--data-dir", str(data),
        "--replay", f"{BTC_1H},{ETH_1H}", "--speed", "1",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env_for(tmp), cwd=tmp,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        while b"engine started" not in (line := await asyncio.wait_for(proc.stderr.readline(), STEP_S)):
            assert line, "the daemon ended before its engine started"
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), STEP_S)


async def test_the_chat_talks_to_a_running_daemon(tmp_path: Path, data: Path) -> None:
    """With the daemon holding the data dir, ``amarktai chat`` runs its session in the daemon over
    the control socket: the AI's proposal, the y/N and typed-word confirmations act on that engine."""
    async with OpenAILoopback.running(KEY) as server:
        settings = load_settings(config(tmp_path), required=True)
        KeyManager(settings, data).save("openai", {"api_key": KEY, "base_url": f"{server.url}/v1"})
        server.script(
            Reply(
                tool_calls=[("pause_all", '{"asset": "ETH", "reason": "asked in the chat"}')], usage=(700, 20)
            ),
            Reply("I proposed pausing **eth-fast** and **eth-rsi**.", usage=(750, 15)),
        )
        async with daemon(tmp_path, data) as proc, Chat.running(tmp_path, data) as chat:
            intro = await chat.until(PROMPT)
            assert intro.startswith("amarktai chat: AI gpt-4o-mini · 0 / 200,000 tokens today")
            assert "Connected to the running engine" in intro and "without its market feed" not in intro
            out = await chat.say("pause all ETH bots", until="[y/N] ")
            assert "ai> I proposed pausing **eth-fast** and **eth-rsi**." in out
            assert "Pause every running ETH bot (2)" in out and "which: eth-fast, eth-rsi" in out
            assert set(bot_states(data).values()) == {"running"}
            assert "Done: paused 2 bot(s): eth-fast, eth-rsi" in await chat.say("yes")
            assert bot_states(data)["eth-fast"] == "paused"  # written by the daemon's engine

            out = await chat.say("/stop btc-fast", until="(anything else cancels): ")
            assert "type btc-fast to confirm" in out
            out = await chat.say("y")
            assert "Refused: confirmation refused: type btc-fast exactly" in out and "Cancelled" in out
            assert bot_states(data)["btc-fast"] == "running"
            code, stderr = await chat.quit()
            assert code == 0 and "Traceback" not in stderr, stderr
            assert proc.returncode is None  # the daemon goes on after the chat leaves
        assert proc.returncode == 0
        assert server.authorizations == [f"Bearer {KEY}"] * 2
    assert bot_states(data) == {
        "btc-fast": "running",
        "btc-slow": "running",
        "eth-fast": "paused",
        "eth-rsi": "paused",
    }
    assert [(e, t, a) for _, e, t, a in audit(data)] == [
        ("proposed", "pause_all", "ai"),
        ("confirmed", "pause_all", "user"),
        ("executed", "pause_all", "user"),
        ("proposed", "stop_bot", "commands"),
        ("refused", "stop_bot", "user"),
        ("cancelled", "stop_bot", "user"),
    ]


async def test_a_chat_with_the_daemon_ends_cleanly_when_the_daemon_stops(tmp_path: Path, data: Path) -> None:
    async with daemon(tmp_path, data) as proc, Chat.running(tmp_path, data) as chat:
        assert "Connected to the running engine" in await chat.until(PROMPT)
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), STEP_S) == 0  # an open chat does not hold it up
        assert chat.proc.stdin is not None and chat.proc.stderr is not None
        chat.proc.stdin.write(b"/status\n")
        await chat.proc.stdin.drain()
        assert await asyncio.wait_for(chat.proc.wait(), STEP_S) == 1
        err = (await chat.proc.stderr.read()).decode()
    assert err.startswith("amarktai chat: the engine closed the chat") and "Traceback" not in err, err


async def test_the_chat_protocol_survives_bad_lines_and_is_refused_without_a_chat(tmp_path: Path) -> None:
    """The socket side of ``ops.chat_remote`` in-process, over a real Unix socket."""
    c = await console(tmp_path / "data", FLEET)
    settings = load_settings(config(tmp_path), required=True)
    path = tmp_path / "c.sock"

    opened: list[ChatSession] = []

    async def open_session() -> ChatSession:
        opened.append(ChatSession(c.engine, settings, c.data_dir, router=None, clock=c.clock))
        return opened[-1]

    async def talk(*lines: bytes) -> list[dict[str, object]]:
        reader, writer = await asyncio.open_unix_connection(str(path))
        out: list[dict[str, object]] = []
        for line in lines:
            writer.write(line + b"\n")
            await writer.drain()
            got = await asyncio.wait_for(reader.readline(), STEP_S)
            out.append(json.loads(got))
            while "chunk" in out[-1] or "output" in out[-1] or "proposal" in out[-1]:
                out.append(json.loads(await asyncio.wait_for(reader.readline(), STEP_S)))
        writer.close()
        await writer.wait_closed()
        return out

    try:
        await _bad_lines_and_no_chat(c, path, open_session, talk, opened)
    finally:
        await c.close()


async def _bad_lines_and_no_chat(
    c: Any, path: Path, open_session: Any, talk: Any, opened: list[ChatSession]
) -> None:
    server = await serve_control(c.engine, path, chat=open_session)
    try:
        got = await talk(b'{"cmd": "chat"}', b"not json", b'{"say": 3}', b'{"say": "/pause btc-fast"}')
        assert got[0] == {"ok": True, "status": "commands only: no AI configured"}
        assert "must be a JSON object" in str(got[1]["error"]) and "expected" in str(got[2]["error"])
        card = got[3]["proposal"]
        assert isinstance(card, dict) and card["tool"] == "pause_bot" and got[4]["end"] is True
        pid = str(card["proposal_id"])
        assert opened[0].is_pending(pid)  # the session's proposals live in the engine's process
        # another connection is another session: it cannot confirm the first one's proposal
        reply = await talk(b'{"cmd": "chat"}', json.dumps({"confirm": pid}).encode())
        assert reply[1]["pending"] is False and str(reply[1]["result"]).startswith(
            f"Refused: confirm refused: no pending proposal '{pid}'"
        )
        assert opened[0].is_pending(pid) and c.engine.runner_by_name("btc-fast").rec.state == "running"
    finally:
        await stop_control(server)
    server = await serve_control(c.engine, path)
    try:
        assert await talk(b'{"cmd": "chat"}') == [{"ok": False, "error": "this engine serves no chat"}]
    finally:
        await stop_control(server)

"""The console's deterministic commands: they work with no AI at all.

Read commands answer from the engine (the same figures as the read tools);
action commands go through the same proposal and confirmation flow as the
model's action tools (actor ``commands``), so ``/stop NAME`` still needs the
name typed and ``/halt`` the word HALT. ``handle`` never raises: unknown
input gets a helpful answer, never a traceback.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from amarktai_tui.ai import reads
from amarktai_tui.ai import tools as t
from amarktai_tui.ai.actions import ActionRefused
from amarktai_tui.ai.figures import clean, realised_by_period
from amarktai_tui.ai.proposals import Outcome, Proposal, ProposalBook
from amarktai_tui.engine.engine import TradingEngine

log = logging.getLogger(__name__)

HELP = """Commands (they work without the AI):
  /status                 mode, equity, today's PnL, bots, breakers
  /bots                   every bot: state, stage, pair, equity
  /pause NAME|all         pause a bot, or every running bot (asks you to confirm)
  /resume NAME|all        resume a paused bot, or every paused bot (asks you to confirm)
  /stop NAME              stop a bot: it sells its position, then idles (type its name to confirm)
  /halt [REASON]          emergency stop: no bot opens anything (type HALT to confirm)
  /reset TRIP REASON      reset a tripped breaker with a reason (type RESET to confirm)
  /breakers               tripped breakers and those near their limit
  /profit today|week|month  realised PnL of this and the previous period
  /confirm ID [WORD]      confirm a proposal (WORD: the word it asks for)
  /cancel ID              cancel a proposal
  /help                   this list"""

COMMANDS = (
    "status",
    "bots",
    "pause",
    "resume",
    "stop",
    "halt",
    "reset",
    "breakers",
    "profit",
    "confirm",
    "cancel",
    "help",
)
_PERIOD = {"today": "day", "day": "day", "week": "week", "month": "month"}


@dataclass(frozen=True, slots=True)
class CommandReply:
    """The answer to one input line: ``text`` to show; ``proposal`` when it made one (show its card
    and ask for the confirmation); ``outcome`` when it confirmed or cancelled one."""

    text: str
    ok: bool = True
    proposal: Proposal | None = None
    outcome: Outcome | None = None


class CommandConsole:
    """Parses and runs the commands of one console over an engine and its proposal book."""

    def __init__(self, engine: TradingEngine, book: ProposalBook) -> None:
        self.engine = engine
        self.book = book

    async def handle(self, line: str) -> CommandReply:
        """Answer one line of user input; never raises."""
        try:
            return await self._handle(line.strip())
        except Exception as exc:  # the console must answer, whatever happened
            log.exception("command %r failed", line[:80])
            return CommandReply(f"That command failed: {clean(f'{type(exc).__name__}: {exc}')}", ok=False)

    async def _handle(self, line: str) -> CommandReply:
        if not line:
            return CommandReply("Type a command, e.g. /status, or /help for the list.")
        if not line.startswith("/"):
            return CommandReply(
                "Commands only: free text needs the AI, which is not available. Try /status, /bots, "
                "/breakers or /help.",
                ok=False,
            )
        word, _, rest = line[1:].partition(" ")
        cmd, rest = word.lower(), rest.strip()
        if cmd not in COMMANDS:
            near = difflib.get_close_matches(cmd, COMMANDS, n=1)
            hint = f" Did you mean /{near[0]}?" if near else ""
            return CommandReply(
                f"Unknown command /{clean(cmd, 30)}.{hint} /help lists the commands.", ok=False
            )
        if cmd == "help":
            return CommandReply(HELP)
        if cmd == "status":
            return CommandReply(self._status())
        if cmd == "bots":
            return CommandReply(self._bots())
        if cmd == "breakers":
            return CommandReply(self._breakers())
        if cmd == "profit":
            return self._profit(rest)
        if cmd in ("confirm", "cancel"):
            return await self._decide(cmd, rest)
        return await self._action(cmd, rest)

    # -- reads ------------------------------------------------------------------------------
    def _status(self) -> str:
        s = reads.portfolio_summary(self.engine, t.PortfolioSummary())
        states = ", ".join(f"{n} {k}" for k, n in sorted(s["bots_by_state"].items())) or "none"
        lines = [
            f"mode {s['mode']}  equity {_q(s['equity'])} {s['quote_currency']}  today {_q(s['pnl_today'], True)}",
            f"bots {s['bots']} ({states}); open positions {s['open_positions']}",
            "HALTED: no bot opens anything until the halt trip is reset"
            if s["halted"]
            else f"tripped breakers: {s['tripped_breakers']}",
        ]
        pending = self.book.pending()
        if pending:
            lines.append("waiting for you: " + ", ".join(f"{p.id} {p.what}" for p in pending))
        return "\n".join(lines)

    def _bots(self) -> str:
        rows = reads.list_bots(self.engine, t.ListBots())["bots"]
        if not rows:
            return "No bots."
        out = [f"{'name':<20} {'state':<16} {'stage':<18} {'pair':<10} {'equity':>12}"]
        for b in rows:
            out.append(
                f"{b['name']:<20} {b['state']:<16} {b['stage']:<18} {b['pair']:<10} {_q(b['equity']):>12}"
            )
            if b["state"] != "running" and b["state_reason"]:
                out.append(f"  why: {b['state_reason']}")
        return "\n".join(out)

    def _breakers(self) -> str:
        s = reads.breaker_status(self.engine, t.BreakerStatus())
        lines = []
        for tr in s["tripped"]:
            where = tr["bot"] or "account"
            lines.append(
                f"TRIPPED trip {tr['trip_id']} {tr['breaker']} ({where}) since {tr['since']}: {tr['message']}"
            )
        for rd in s["readings"]:
            if rd["status"] == "warning":
                lines.append(
                    f"warning {rd['breaker']} ({rd['bot'] or 'account'}): {rd['value']} of {rd['threshold']}"
                )
        if not lines:
            return "No breaker is tripped or near its limit."
        if s["tripped"]:
            lines.append("Reset one with /reset TRIP REASON.")
        return "\n".join(lines)

    def _profit(self, rest: str) -> CommandReply:
        period = _PERIOD.get(rest.lower())
        if period is None:
            return CommandReply("Usage: /profit today|week|month", ok=False)
        (_, p_pnl, _), (cur, c_pnl, n) = realised_by_period(self.engine, period, 2)
        label = {"day": "today", "week": "this week", "month": "this month"}[period]
        before = {"day": "yesterday", "week": "last week", "month": "last month"}[period]
        quote = self.engine.quote_currency
        text = (
            f"realised {label} (since {cur.isoformat()}): {_q(str(c_pnl), True)} {quote} over {n} closing fill(s); "
            f"{before}: {_q(str(p_pnl), True)} {quote}"
        )
        if period == "day":
            text += (
                f"\nequity change today (incl. unrealised): {_q(str(self.engine.today_pnl()), True)} {quote}"
            )
        return CommandReply(text)

    # -- actions --------------------------------------------------------------------------
    async def _action(self, cmd: str, rest: str) -> CommandReply:
        tool, args, usage = _action_args(cmd, rest)
        if tool is None:
            return CommandReply(usage, ok=False)
        try:
            p = await self.book.propose(tool, args, actor="commands", why=f"/{cmd} {rest}".strip())
        except ActionRefused as exc:
            return CommandReply(f"Not proposed: {exc}", ok=False)
        return CommandReply(p.text(self.book.now()), proposal=p)

    async def _decide(self, cmd: str, rest: str) -> CommandReply:
        pid, _, typed = rest.partition(" ")
        if not pid:
            pending = ", ".join(p.id for p in self.book.pending()) or "none"
            return CommandReply(
                f"Usage: /{cmd} ID{' [WORD]' if cmd == 'confirm' else ''} (pending: {pending})", ok=False
            )
        await self.book.expire_due()
        if cmd == "cancel":
            out = await self.book.cancel(pid)
        else:
            out = await self.book.confirm(pid, typed.strip())
        verb = {"executed": "Done", "cancelled": "Cancelled", "failed": "Failed", "expired": "Expired"}
        return CommandReply(f"{verb.get(out.event, 'Refused')}: {out.detail}", ok=out.ok, outcome=out)


def _action_args(cmd: str, rest: str) -> tuple[str | None, dict[str, Any], str]:
    """(tool, arguments, usage text) of an action command; tool None when the usage is wrong."""
    if cmd in ("pause", "resume"):
        if not rest:
            return None, {}, f"Usage: /{cmd} NAME|all"
        if rest.lower() == "all":
            return f"{cmd}_all", {"reason": f"/{cmd} all"}, ""
        return f"{cmd}_bot", {"bot": rest, "reason": f"/{cmd} {rest}"}, ""
    if cmd == "stop":
        if not rest:
            return None, {}, "Usage: /stop NAME"
        return "stop_bot", {"bot": rest, "reason": f"/stop {rest}"}, ""
    if cmd == "halt":
        return "emergency_stop", {"reason": rest or "emergency stop from the console"}, ""
    trip, _, reason = rest.partition(" ")
    if not trip.isdigit() or not reason.strip():
        return None, {}, "Usage: /reset TRIP REASON (/breakers lists the tripped ones)"
    return "reset_breaker", {"trip_id": int(trip), "reason": reason.strip()}, ""


def _q(x: str, signed: bool = False) -> str:
    """A quote amount to the cent for reading (``+`` on gains when ``signed``)."""
    v = Decimal(x).quantize(Decimal("0.01"))
    return f"{v:+,.2f}" if signed else f"{v:,.2f}"

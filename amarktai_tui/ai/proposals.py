"""The two-step flow: an action becomes a proposal; only the user's confirmation runs it.

    action tool call (model) or command (user)
      -> validate_args (pydantic) -> actions.plan (does it make sense now?)
      -> Proposal (id, what, which bots, why, expected effect, expiry)   [proposed]
      -> confirm(id, typed=...) by the user                               [confirmed]
           wrong typed word -> stays pending                              [refused]
           too late -> gone                                               [expired]
      -> actions.execute through the engine's commands                    [executed | failed]
    cancel(id)                                                            [cancelled]

Every step is one append-only ``ai_actions`` row (written through the
engine's ledger store, its single writer) and one event on the engine's bus
(``engine.events.AiAction*``). Stopping a bot needs its name typed, the
emergency stop ``HALT``, a breaker reset ``RESET``; other actions a plain
confirmation. Proposals live ``ttl_s`` seconds of the injected clock (wall
ms UTC). A proposal id is used once: a second confirmation is refused.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from amarktai_tui.ai import actions
from amarktai_tui.ai.actions import ActionRefused
from amarktai_tui.ai.figures import clean
from amarktai_tui.ai.tools import ACTION_TOOLS, ToolArgs, ToolArgsError, args_json, validate_args
from amarktai_tui.engine.engine import EngineError, TradingEngine
from amarktai_tui.engine.events import (
    AiAction,
    AiActionCancelled,
    AiActionConfirmed,
    AiActionExecuted,
    AiActionExpired,
    AiActionFailed,
    AiActionProposed,
    AiActionRefused,
)
from amarktai_tui.ledger.export import iso_ms

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 120.0
Step = Literal["proposed", "confirmed", "cancelled", "expired", "refused", "executed", "failed"]
_EVENTS: dict[str, type[AiAction]] = {
    "proposed": AiActionProposed,
    "confirmed": AiActionConfirmed,
    "cancelled": AiActionCancelled,
    "expired": AiActionExpired,
    "refused": AiActionRefused,
    "executed": AiActionExecuted,
    "failed": AiActionFailed,
}


@dataclass(frozen=True, slots=True)
class Proposal:
    """An action waiting for the user. ``args``: the validated arguments (JSON-ready); ``actor``:
    ai | commands; ``confirm_word``: what the user must type (None: a plain yes); times ms UTC."""

    id: str
    tool: str
    args: dict[str, Any]
    actor: str
    what: str
    bots: tuple[str, ...]
    why: str
    effect: str
    confirm_word: str | None
    created_ms: int
    expires_ms: int
    bot_ids: tuple[int, ...] = ()
    _model: ToolArgs | None = field(default=None, repr=False, compare=False)

    def card(self) -> dict[str, Any]:
        """The proposal card's content (JSON-ready): for the pane, the model and the headless prompt."""
        return {
            "proposal_id": self.id,
            "tool": self.tool,
            "what": self.what,
            "bots": list(self.bots),
            "why": self.why,
            "expected_effect": self.effect,
            "confirm_word": self.confirm_word,
            "expires_at": iso_ms(self.expires_ms),
        }

    def text(self, now_ms: int | None = None) -> str:
        """The card as plain lines (the commands' answer and ``amarktai chat``)."""
        left = "" if now_ms is None else f", expires in {max(0, (self.expires_ms - now_ms) // 1000)} s"
        how = f"type {self.confirm_word} to confirm" if self.confirm_word else "confirm with yes (or cancel)"
        lines = [f"Proposal {self.id}{left}: {self.what}"]
        if self.bots:
            lines.append(f"  which: {', '.join(self.bots)}")
        if self.why:
            lines.append(f"  why: {self.why}")
        lines += [f"  effect: {self.effect}", f"  to run it: {how}"]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a confirmation or cancellation: ``event`` is the audit step written last."""

    proposal_id: str
    tool: str
    event: Step
    ok: bool
    detail: str


class ProposalBook:
    """Pending proposals of one console, and the audited steps that make, confirm and end them."""

    def __init__(
        self,
        engine: TradingEngine,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.engine = engine
        self.ttl_ms = int(ttl_s * 1000)
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._pending: dict[str, Proposal] = {}

    # -- reading ----------------------------------------------------------------------
    def now(self) -> int:
        """The book's clock (wall ms UTC unless injected)."""
        return self._clock()

    def pending(self) -> list[Proposal]:
        """Proposals waiting for the user (oldest first); call ``expire_due`` first to drop late ones."""
        return sorted(self._pending.values(), key=lambda p: p.created_ms)

    def get(self, proposal_id: str) -> Proposal | None:
        return self._pending.get(proposal_id)

    # -- the steps ----------------------------------------------------------------------
    async def propose(
        self, tool: str, raw_args: str | Mapping[str, Any] | None, *, actor: str = "ai", why: str = ""
    ) -> Proposal:
        """Validate an action call and make it a pending proposal (audited ``proposed``).

        ``raw_args``: the tool call's JSON text or a mapping. ``why``: the reason shown on the
        card (default: the arguments' ``reason``). Raises ActionRefused (audited ``refused``)
        for an unknown or non-action tool, invalid arguments, or an action that cannot be done
        now; nothing is pending then.
        """
        pid = _new_id()
        name = clean(tool, 60)
        if tool not in ACTION_TOOLS:
            detail = f"{name!r} is not an action tool; actions: {', '.join(ACTION_TOOLS)}"
            await self._record("refused", pid, name, "{}", actor, detail)
            raise ActionRefused(detail)
        try:
            args = validate_args(tool, raw_args)
            plan = actions.plan(self.engine, tool, args)
        except (ToolArgsError, ActionRefused) as exc:
            detail = clean(str(exc), 400)
            await self._record("refused", pid, tool, "{}", actor, detail)
            raise ActionRefused(detail) from None
        now = self._clock()
        reason = why or str(getattr(args, "reason", "") or "")
        p = Proposal(
            id=pid,
            tool=tool,
            args=json.loads(_audit_json(args)),
            actor=actor,
            what=plan.what,
            bots=plan.bots,
            why=clean(reason, 300),
            effect=plan.effect,
            confirm_word=plan.confirm_word,
            created_ms=now,
            expires_ms=now + self.ttl_ms,
            bot_ids=plan.bot_ids,
            _model=args,
        )
        self._pending[pid] = p
        await self._record("proposed", pid, tool, _audit_json(args), actor, f"{p.what}. {p.effect}")
        return p

    async def confirm(self, proposal_id: str, typed: str = "", *, actor: str = "user") -> Outcome:
        """The user's confirmation: runs the proposal once, if it is pending, in time, and ``typed``
        matches its confirm word (when it has one). Every path is audited; never raises for a
        refused or failed action (see ``Outcome``)."""
        p = self._pending.get(proposal_id)
        if p is None:
            return await self._unknown(proposal_id, actor, "confirm")
        if self._clock() >= p.expires_ms:
            del self._pending[proposal_id]
            detail = f"expired at {iso_ms(p.expires_ms)}; a late confirmation runs nothing"
            return await self._end("expired", p, actor, detail)
        if p.confirm_word is not None and typed.strip() != p.confirm_word:
            detail = f"confirmation refused: type {p.confirm_word} exactly (still pending)"
            await self._record("refused", p.id, p.tool, _args(p), actor, detail)
            return Outcome(p.id, p.tool, "refused", False, detail)
        del self._pending[proposal_id]  # before any await: one confirmation runs it, at most once
        await self._record("confirmed", p.id, p.tool, _args(p), actor, "confirmed by the user")
        assert p._model is not None
        engine_actor = "ai" if p.actor == "ai" else "user"
        try:
            detail = await actions.execute(self.engine, p.tool, p._model, p.bot_ids, engine_actor)
        except EngineError as exc:
            return await self._end("failed", p, actor, clean(str(exc), 400))
        except Exception as exc:  # an engine bug must not take the console down; it is audited
            log.exception("AI console action %s (%s) failed", p.tool, p.id)
            return await self._end("failed", p, actor, clean(f"{type(exc).__name__}: {exc}", 400))
        return await self._end("executed", p, actor, clean(detail, 400), ok=True)

    async def cancel(self, proposal_id: str, *, actor: str = "user") -> Outcome:
        """Drop a pending proposal (audited ``cancelled``); an unknown id is refused."""
        p = self._pending.pop(proposal_id, None)
        if p is None:
            return await self._unknown(proposal_id, actor, "cancel")
        return await self._end("cancelled", p, actor, "cancelled by the user", ok=True)

    async def expire_due(self) -> list[Proposal]:
        """Drop the proposals whose time ran out (each audited ``expired``); returns them."""
        now = self._clock()
        late = [p for p in self.pending() if now >= p.expires_ms]
        for p in late:
            del self._pending[p.id]
            await self._record(
                "expired", p.id, p.tool, _args(p), p.actor, f"not confirmed within {self.ttl_ms // 1000} s"
            )
        return late

    # -- audit ----------------------------------------------------------------------------
    async def _unknown(self, proposal_id: str, actor: str, what: str) -> Outcome:
        pid = clean(proposal_id, 40)
        detail = f"{what} refused: no pending proposal {pid!r} (unknown, done, cancelled or expired)"
        await self._record("refused", pid, "", "{}", actor, detail)
        return Outcome(pid, "", "refused", False, detail)

    async def _end(self, step: Step, p: Proposal, actor: str, detail: str, *, ok: bool = False) -> Outcome:
        await self._record(step, p.id, p.tool, _args(p), actor, detail)
        return Outcome(p.id, p.tool, step, ok, detail)

    async def _record(self, step: Step, pid: str, tool: str, args: str, actor: str, detail: str) -> None:
        ts = self._clock()
        detail = clean(detail, 600)
        await self.engine.store.record_ai_action(ts, pid, step, tool, args, actor, detail)
        self.engine.bus.publish(_EVENTS[step](self.engine.now_ms or ts, pid, tool, args, actor, detail))


def _args(p: Proposal) -> str:
    return _audit_json(p._model) if p._model is not None else "{}"


def _audit_json(args: ToolArgs) -> str:
    """The validated arguments as JSON with their free text cleaned (a key pasted into a reason is
    masked before it reaches the ledger); still valid JSON: ``clean`` never touches quotes."""
    return clean(args_json(args), 4000)


def _new_id() -> str:
    return "p-" + uuid.uuid4().hex[:8]

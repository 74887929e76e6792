"""What each action tool would do (``plan``) and doing it (``execute``), through the engine's commands.

``plan`` runs when a proposal is made: it checks the action makes sense now
(the bot exists and can make that move, the trip is active, the account is
on paper for a new bot and its account pool holds the new bot's capital, the
parameters are the strategy's own and in range)
and writes the card's texts: what, which bots, the expected effect, and the
word the user must type for the dangerous ones (the bot's name to stop it,
``HALT`` for the emergency stop, ``RESET`` for a breaker reset). It raises
``ActionRefused`` (one line, for the model and the user) otherwise.

``execute`` runs only after the user confirmed; it calls the engine's own
public commands (``set_bot_state``, ``pause_all``, ``halt``,
``reset_breaker``, ``create_bot``, ``set_bot_params``), which check again
and raise ``EngineError`` when the state moved meanwhile.

A new bot's capital comes from the account pool (capital allocated to no bot:
``create_bot(from_pool=True)``), never new money: the account's total capital
is a protected figure that neither the AI nor any automatic process changes
(issue 8, ``tests/autonomy/test_protected.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from amarktai_tui.ai import tools as t
from amarktai_tui.ai.figures import ReadError, base_of, clean, money, resolve
from amarktai_tui.domain.enums import BotState, TradingMode
from amarktai_tui.domain.types import split_pair, timeframe_to_ms
from amarktai_tui.engine.engine import BotSpec, EngineError, TradingEngine
from amarktai_tui.engine.lifecycle import TRANSITIONS
from amarktai_tui.engine.runner import BotRunner
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.exchanges.registry import exchange_info
from amarktai_tui.risk.breakers import Breaker
from amarktai_tui.strategies.registry import STRATEGIES, make_strategy

HALT_WORD = "HALT"
RESET_WORD = "RESET"


class ActionRefused(ValueError):
    """The action cannot be proposed (or was refused); the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Plan:
    """A proposal's texts and targets: ``bot_ids`` are pinned when proposed (a rename changes nothing)."""

    what: str
    bots: tuple[str, ...]
    effect: str
    confirm_word: str | None
    bot_ids: tuple[int, ...] = ()


def _bot(engine: TradingEngine, ref: str) -> BotRunner:
    try:
        return resolve(engine, ref)
    except ReadError as exc:
        raise ActionRefused(str(exc)) from None


def _name(r: BotRunner) -> str:
    return clean(r.rec.name, 64)


def _state_plan(engine: TradingEngine, tool: str, a: t.BotAction) -> Plan:
    r = _bot(engine, a.bot)
    name, state = _name(r), r.rec.state
    target = {
        "start_bot": BotState.RUNNING,
        "resume_bot": BotState.RUNNING,
        "pause_bot": BotState.PAUSED,
        "stop_bot": BotState.STOPPED,
    }[tool]
    if tool == "start_bot" and state not in (BotState.STOPPED, BotState.ERROR):
        raise ActionRefused(f"{name} is {state.value}; start_bot is for stopped or errored bots")
    if tool == "resume_bot" and state not in (BotState.PAUSED, BotState.ERROR):
        raise ActionRefused(f"{name} is {state.value}; resume_bot is for paused bots")
    if target not in TRANSITIONS[state]:
        raise ActionRefused(f"{name} is {state.value} and cannot become {target.value}")
    cover = engine.board.covering(r.rec.id)
    if target is BotState.RUNNING and cover is not None:
        raise ActionRefused(
            f"{name} is covered by the tripped breaker {cover.breaker.value} (trip {cover.id}): "
            f"reset that trip first (reset_breaker)"
        )
    where = f"{name} ({r.rec.pair} on {r.rec.exchange})"
    if target is BotState.PAUSED:
        effect = f"{where} opens no new position; its stop-loss, take-profit and exits still work."
        what = f"Pause bot {name}"
    elif target is BotState.STOPPED:
        held = money(r.book.position_qty)
        effect = (
            f"{where} sells its position ({held} {base_of(r)}) at the next candle's open, then does nothing "
            "until started again."
            if r.long
            else f"{where} does nothing until started again (it holds no position)."
        )
        what = f"Stop bot {name}"
    else:
        effect = f"{where} trades again: it may open new positions on its strategy's signals."
        what = f"{'Start' if tool == 'start_bot' else 'Resume'} bot {name}"
    word = r.rec.name if tool == "stop_bot" else None
    return Plan(what, (name,), effect, word, (r.rec.id,))


def _all_targets(engine: TradingEngine, a: t.AllAction, resume: bool) -> list[BotRunner]:
    out = []
    for r in engine.runners.values():
        if a.asset is not None and base_of(r) != a.asset:
            continue
        if resume:
            wanted = r.rec.state is BotState.PAUSED and engine.board.covering(r.rec.id) is None
        else:
            wanted = r.rec.state is BotState.RUNNING
        if wanted:
            out.append(r)
    return out


def _all_plan(engine: TradingEngine, tool: str, a: t.AllAction) -> Plan:
    resume = tool == "resume_all"
    targets = _all_targets(engine, a, resume)
    asset = "" if a.asset is None else f"{a.asset} "
    if not targets:
        state = "paused (and not covered by a tripped breaker)" if resume else "running"
        extra = ""
        if resume and (Breaker.HALT, None) in engine.board.active:
            extra = "; the account is halted: reset the halt trip first"
        raise ActionRefused(f"no {asset}bot is {state}{extra}")
    names = tuple(_name(r) for r in targets)
    if resume:
        what = f"Resume every paused {asset}bot ({len(targets)})"
        effect = f"{', '.join(names)} trade again; bots under a tripped breaker stay paused."
    else:
        what = f"Pause every running {asset}bot ({len(targets)})"
        effect = f"{', '.join(names)} open no new position; their exits still work."
    return Plan(what, names, effect, None, tuple(r.rec.id for r in targets))


def _halt_plan(engine: TradingEngine, a: t.EmergencyStop) -> Plan:
    halt = engine.board.active.get((Breaker.HALT, None))
    if halt is not None:
        raise ActionRefused(f"the account is already halted (trip {halt.id})")
    effect = (
        "No bot opens anything until the halt is reset; open and queued entry orders are withdrawn; "
        "exits, stops and cancels keep working."
    )
    return Plan("Emergency stop (halt the account)", (), effect, HALT_WORD)


def _reset_plan(engine: TradingEngine, a: t.ResetBreaker) -> Plan:
    trip = engine.board.trip_by_id(a.trip_id)
    if trip is None:
        active = ", ".join(f"{x.id} ({x.breaker.value})" for x in engine.board.active.values()) or "none"
        raise ActionRefused(f"no active trip with id {a.trip_id}; active trips: {active}")
    covered = [r for r in engine.runners.values() if trip.bot_id in (None, r.rec.id)]
    names = tuple(_name(r) for r in covered)
    scope = "the account" if trip.bot_id is None else names[0] if names else str(trip.bot_id)
    effect = (
        f"Clears {trip.breaker.value} on {scope} ({clean(trip.message)}); bots it held may trade again "
        "if nothing else covers them. If its condition still holds it trips again at once."
    )
    return Plan(
        f"Reset breaker {trip.breaker.value} (trip {trip.id})",
        names,
        effect,
        RESET_WORD,
        tuple(r.rec.id for r in covered),
    )


def _paper_only(engine: TradingEngine) -> None:
    if engine.mode is not TradingMode.PAPER or not isinstance(engine.broker, PaperBroker):
        raise ActionRefused("bots are created from the AI console on a paper account only")


def _create_plan(engine: TradingEngine, a: t.CreateBot) -> Plan:
    _paper_only(engine)
    if any(r.rec.name == a.name for r in engine.runners.values()):
        raise ActionRefused(f"a bot named {a.name!r} exists already")
    if a.capital > engine.pool:
        raise ActionRefused(
            f"a new bot's capital comes from the account pool, which holds {money(engine.pool)}; "
            f"{money(a.capital)} cannot come from it (free capital from a bot first)"
        )
    try:
        exchange_info(a.exchange)
        split_pair(a.pair)
        timeframe_to_ms(a.timeframe)
        strategy = make_strategy(a.strategy, a.params)
    except KeyError as exc:
        raise ActionRefused(clean(str(exc).strip("'\""))) from None
    except ValueError as exc:
        raise ActionRefused(clean(str(exc))) from None
    effect = (
        f"A new paper bot {a.name} trades {a.pair} {a.timeframe} on {a.exchange} with {a.strategy} "
        f"{dict(strategy.params)}, risk mode {a.risk_mode.value}, {money(a.capital)} of paper capital "
        f"from the account pool (the account's total capital is unchanged)."
    )
    return Plan(f"Create paper bot {a.name}", (a.name,), effect, None)


def _adjust_plan(engine: TradingEngine, a: t.AdjustBotParams) -> Plan:
    r = _bot(engine, a.bot)
    name = _name(r)
    protected = sorted(k for k in a.params if k.lower() in t.PROTECTED_PARAMS)
    if protected:
        raise ActionRefused(
            f"{', '.join(protected)}: protected, not a strategy parameter; it cannot be changed here"
        )
    if r.rec.strategy not in STRATEGIES:
        raise ActionRefused(f"{name} runs {r.rec.strategy!r}, which has no adjustable parameters")
    old = dict(r.strategy.params)
    try:
        new = dict(make_strategy(r.rec.strategy, {**r.rec.params, **a.params}).params)
    except ValueError as exc:  # StrategyParamError: unknown name or out of range, with the valid ones
        raise ActionRefused(clean(str(exc), 400)) from None
    changes = ", ".join(f"{k} {old.get(k)!r} -> {new[k]!r}" for k in a.params)
    warm = make_strategy(r.rec.strategy, new).warmup
    effect = (
        f"{name}'s {r.rec.strategy}: {changes}. The strategy restarts and gives no signal for its "
        f"{warm}-candle warm-up; its position and state are unchanged."
    )
    return Plan(f"Adjust {name}'s strategy parameters", (name,), effect, None, (r.rec.id,))


def plan(engine: TradingEngine, tool: str, args: t.ToolArgs) -> Plan:
    """The proposal's texts and targets for ``tool`` with validated ``args``; ActionRefused if it
    cannot be done now."""
    if isinstance(args, t.BotAction) and tool in ("start_bot", "pause_bot", "resume_bot", "stop_bot"):
        return _state_plan(engine, tool, args)
    if isinstance(args, t.AllAction) and tool in ("pause_all", "resume_all"):
        return _all_plan(engine, tool, args)
    if isinstance(args, t.EmergencyStop):
        return _halt_plan(engine, args)
    if isinstance(args, t.ResetBreaker):
        return _reset_plan(engine, args)
    if isinstance(args, t.CreateBot):
        return _create_plan(engine, args)
    if isinstance(args, t.AdjustBotParams):
        return _adjust_plan(engine, args)
    raise ActionRefused(f"{tool} is not an action tool")


def _why(args: t.ToolArgs, fallback: str) -> str:
    reason = str(getattr(args, "reason", "") or "").strip()
    return clean(f"ai console: {reason or fallback}", 200)


async def execute(
    engine: TradingEngine, tool: str, args: t.ToolArgs, bot_ids: tuple[int, ...], actor: str
) -> str:
    """Do a confirmed action; returns what was done (one line). Raises EngineError when the engine
    refuses it now (the state moved since the proposal)."""
    why = _why(args, f"{tool} confirmed by the user")
    if tool in ("start_bot", "resume_bot", "pause_bot", "stop_bot"):
        new = {"pause_bot": BotState.PAUSED, "stop_bot": BotState.STOPPED}.get(tool, BotState.RUNNING)
        (bot_id,) = bot_ids
        await engine.set_bot_state(bot_id, new, why)
        return f"{_name(engine.runners[bot_id])} is {new.value}"
    if isinstance(args, t.AllAction):
        resume = tool == "resume_all"
        if args.asset is None:
            n = await (engine.resume_all() if resume else engine.pause_all())
            return f"{'resumed' if resume else 'paused'} {n} bot(s)"
        done = []
        for r in _all_targets(engine, args, resume):
            await engine.set_bot_state(r.rec.id, BotState.RUNNING if resume else BotState.PAUSED, why)
            done.append(_name(r))
        return f"{'resumed' if resume else 'paused'} {len(done)} bot(s): {', '.join(done) or 'none'}"
    if isinstance(args, t.EmergencyStop):
        trip = await engine.halt(clean(args.reason, 200), actor)
        if trip is None:
            raise EngineError("the account was already halted")
        return f"account halted (trip {trip.id})"
    if isinstance(args, t.ResetBreaker):
        res = await engine.reset_breaker(args.trip_id, clean(args.reason, 200), actor)
        if res.retripped is not None:
            return f"trip {res.trip.id} reset; its condition still holds: tripped again as trip {res.retripped.id}"
        return f"trip {res.trip.id} ({res.trip.breaker.value}) reset"
    if isinstance(args, t.CreateBot):
        if engine.mode is not TradingMode.PAPER or not isinstance(engine.broker, PaperBroker):
            raise EngineError("bots are created from the AI console on a paper account only")
        runner = await engine.create_bot(_spec(args), from_pool=True)  # the total capital is protected
        await engine.flush()
        return f"created paper bot {_name(runner)} (id {runner.rec.id})"
    if isinstance(args, t.AdjustBotParams):
        (bot_id,) = bot_ids
        params = await engine.set_bot_params(bot_id, dict(args.params))
        return f"{_name(engine.runners[bot_id])} now runs with {params}"
    raise EngineError(f"{tool} is not an action tool")


def _spec(a: t.CreateBot) -> BotSpec:
    params: dict[str, Any] = dict(a.params)
    return BotSpec(
        name=a.name,
        exchange=a.exchange,
        pair=a.pair,
        timeframe=a.timeframe,
        strategy=a.strategy,
        params=params,
        risk_mode=a.risk_mode,
        capital=Decimal(a.capital),
        stop_loss=a.stop_loss,
        take_profit=a.take_profit,
        trailing_stop=a.trailing_stop,
        order_type=a.order_type,
    )

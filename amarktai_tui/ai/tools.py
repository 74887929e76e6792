"""The AI console's tools: argument models (pydantic), descriptions, and their OpenAI schemas.

Read tools answer at once (``ai.reads``); action tools only ever become a
proposal that the user must confirm (``ai.proposals``). The set of tools is
closed: there is no tool for switching to live, keys, deleting data,
withdrawing, or the protected parameters (max daily loss, max drawdown,
total capital, trading mode), so no model output can reach them.

Every argument model forbids unknown keys; ``validate_args`` turns a tool
call's JSON into the model or raises ``ToolArgsError`` with a one-line,
input-free message for the model. ``tool_schemas`` gives the list OpenAI's
chat completions API takes as ``tools=``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from amarktai_tui.domain.enums import BotState, RiskMode
from amarktai_tui.exchanges.registry import EXCHANGES
from amarktai_tui.strategies.registry import STRATEGIES

BotRef = Field(min_length=1, max_length=64, description="The bot's name (or its id as a string).")
Reason = Field(default="", max_length=300, description="Why, in a sentence the user will read.")
Asset = Field(
    default=None,
    pattern=r"^[A-Z0-9]{2,12}$",
    description="Only bots whose pair's base currency is this (e.g. ETH for ETH/USDT); omit for all bots.",
)

PROTECTED_PARAMS = frozenset(
    {
        "max_daily_loss",
        "account_daily_loss",
        "daily_loss",
        "max_drawdown",
        "account_max_drawdown",
        "bot_max_drawdown",
        "total_capital",
        "capital",
        "starting_balance",
        "trading_mode",
        "mode",
        "risk_mode",
    }
)
"""Names that are never strategy parameters: ``adjust_bot_params`` refuses them by name."""


class ToolArgsError(ValueError):
    """A tool call's arguments are not valid JSON or do not fit the tool (one line, no input echoed)."""


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown keys are refused, strings stripped, values frozen."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


# -- read tools ------------------------------------------------------------------
class ListBots(ToolArgs):
    state: BotState | None = Field(default=None, description="Only bots in this run state.")
    asset: str | None = Asset


class BotDetails(ToolArgs):
    bot: str = BotRef


class PortfolioSummary(ToolArgs):
    pass


class ProfitSeries(ToolArgs):
    period: Literal["day", "week", "month"] = Field(
        default="day", description="Bucket size: UTC day, ISO week (Monday), calendar month."
    )
    points: int = Field(default=14, ge=1, le=90, description="How many buckets, newest last.")
    bot: str | None = Field(
        default=None, min_length=1, max_length=64, description="One bot; omit for the account."
    )


class BreakerStatus(ToolArgs):
    bot: str | None = Field(default=None, min_length=1, max_length=64, description="One bot; omit for all.")
    include_ok: bool = Field(default=False, description="Also list breakers that are not tripped or warning.")


class RecentTrades(ToolArgs):
    bot: str | None = Field(default=None, min_length=1, max_length=64, description="One bot; omit for all.")
    limit: int = Field(default=20, ge=1, le=100)


class ExplainRefusal(ToolArgs):
    bot: str | None = Field(default=None, min_length=1, max_length=64, description="One bot; omit for all.")
    client_order_id: str | None = Field(default=None, min_length=1, max_length=64)
    limit: int = Field(default=5, ge=1, le=20)


class MarketSnapshot(ToolArgs):
    pair: str | None = Field(
        default=None, pattern=r"^[A-Z0-9]{2,12}/[A-Z0-9]{2,12}$", description="e.g. BTC/USDT; omit for all."
    )


# -- action tools ------------------------------------------------------------------
class BotAction(ToolArgs):
    bot: str = BotRef
    reason: str = Reason


class AllAction(ToolArgs):
    asset: str | None = Asset
    reason: str = Reason


class EmergencyStop(ToolArgs):
    reason: str = Field(min_length=1, max_length=300, description="Why the account must stop now.")


class ResetBreaker(ToolArgs):
    trip_id: int = Field(ge=1, description="The trip's id (breaker_status lists the tripped ones).")
    reason: str = Field(min_length=3, max_length=300, description="Why it is safe to trade again (recorded).")


ParamValue = int | float | str
Capital = Annotated[Decimal, WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 100_000})]
Fraction = Annotated[
    Decimal, WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1})
]


class CreateBot(ToolArgs):
    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    exchange: str = Field(
        default="binance", pattern=r"^[a-z]{2,20}$", description="One of: " + ", ".join(EXCHANGES) + "."
    )
    pair: str = Field(pattern=r"^[A-Z0-9]{2,12}/[A-Z0-9]{2,12}$", description="e.g. ETH/USDT")
    timeframe: str = Field(default="1h", pattern=r"^[1-9][0-9]{0,2}[mhdw]$", description="e.g. 5m, 1h, 1d")
    strategy: Literal[tuple(STRATEGIES)] = Field(description="A built-in strategy.")  # type: ignore[valid-type]
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        max_length=12,
        description="Strategy parameters; omitted ones take their defaults.",
    )
    risk_mode: RiskMode = Field(
        default=RiskMode.SAFE, description="Max notional per trade: safe is the smallest."
    )
    capital: Capital = Field(
        gt=0,
        le=Decimal(100_000),
        description="Paper capital in quote currency, taken from the account pool (capital no bot holds).",
    )
    stop_loss: Fraction | None = Field(
        default=None, gt=0, lt=1, description="Exit this fraction below entry."
    )
    take_profit: Fraction | None = Field(
        default=None, gt=0, lt=1, description="Exit this fraction above entry."
    )
    trailing_stop: Fraction | None = Field(
        default=None, gt=0, lt=1, description="Exit this fraction below the highest high since entry."
    )
    order_type: Literal["market", "limit"] = "market"
    reason: str = Reason


class AdjustBotParams(ToolArgs):
    bot: str = BotRef
    params: dict[str, ParamValue] = Field(
        min_length=1,
        max_length=12,
        description="Strategy parameters to change, e.g. {\"fast\": 20}; only the bot's strategy's own "
        "parameters, within their ranges (bot_details lists them).",
    )
    reason: str = Reason


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool: its name, what it is for (the model reads this), its argument model, read or action."""

    name: str
    description: str
    args: type[ToolArgs]
    kind: Literal["read", "action"]


def _specs(
    kind: Literal["read", "action"], rows: tuple[tuple[str, type[ToolArgs], str], ...]
) -> dict[str, ToolSpec]:
    return {name: ToolSpec(name, desc, model, kind) for name, model, desc in rows}


READ_TOOLS: dict[str, ToolSpec] = _specs(
    "read",
    (
        ("list_bots", ListBots, "Every bot with its run state, stage, pair, equity and open position."),
        (
            "bot_details",
            BotDetails,
            "One bot in full: state and why, stage, figures, open order, the breaker covering it, its latest "
            "refused orders, and its strategy's parameters with their allowed ranges.",
        ),
        (
            "portfolio_summary",
            PortfolioSummary,
            "Account figures: trading mode, equity, today's PnL, realised/unrealised, fees, bots per state.",
        ),
        ("profit_series", ProfitSeries, "Realised PnL per UTC day, ISO week or month (quote), newest last."),
        (
            "breaker_status",
            BreakerStatus,
            "Circuit breakers: tripped ones (id, why, since when, bots covered) and those near their limit.",
        ),
        ("recent_trades", RecentTrades, "The latest fills, newest first, with realised PnL (quote)."),
        (
            "explain_refusal",
            ExplainRefusal,
            "Why the risk pipeline refused orders: the gate, its reason and the figures it compared; "
            "use it for 'why did bot X stop trading?'.",
        ),
        ("market_snapshot", MarketSnapshot, "Last price and recent range of each pair the bots trade."),
    ),
)

ACTION_TOOLS: dict[str, ToolSpec] = _specs(
    "action",
    (
        ("start_bot", BotAction, "Propose starting a stopped (or errored) bot."),
        ("pause_bot", BotAction, "Propose pausing a bot: it opens nothing new; its exits still work."),
        ("resume_bot", BotAction, "Propose resuming a paused bot."),
        ("stop_bot", BotAction, "Propose stopping a bot: it closes its position, then does nothing."),
        ("pause_all", AllAction, "Propose pausing every running bot (or those of one base currency)."),
        ("resume_all", AllAction, "Propose resuming every paused bot (or those of one base currency)."),
        (
            "emergency_stop",
            EmergencyStop,
            "Propose the emergency stop (halt): no bot opens anything until the halt trip is reset.",
        ),
        ("reset_breaker", ResetBreaker, "Propose resetting a tripped circuit breaker, with a reason."),
        (
            "create_bot",
            CreateBot,
            "Propose creating a new paper-trading bot funded from the account pool (portfolio_summary).",
        ),
        (
            "adjust_bot_params",
            AdjustBotParams,
            "Propose changing a bot's strategy parameters within their validated ranges.",
        ),
    ),
)

TOOLS: dict[str, ToolSpec] = {**READ_TOOLS, **ACTION_TOOLS}

_ACTION_NOTE = " Nothing happens until the user confirms the proposal."


def _plain(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` without titles, with every ``$ref`` to ``$defs`` inlined (some OpenAI-compatible
    servers do not follow references)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = {k: v for k, v in defs[ref.removeprefix("#/$defs/")].items() if k != "description"}
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return {k: _plain(v, defs) for k, v in node.items() if k not in ("title", "$defs")}
    if isinstance(node, list):
        return [_plain(v, defs) for v in node]
    return node


def parameters_schema(spec: ToolSpec) -> dict[str, Any]:
    """The JSON schema of a tool's arguments (pydantic's, without titles; unknown keys forbidden)."""
    raw = spec.args.model_json_schema()
    schema: dict[str, Any] = _plain(raw, raw.get("$defs", {}))
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return schema


def tool_schemas() -> list[dict[str, Any]]:
    """Every tool in OpenAI's function-tool format: ``[{"type": "function", "function": {name,
    description, parameters}}]``, read tools first."""
    return [
        {
            "type": "function",
            "function": {
                "name": spec.name,
                "description": spec.description + (_ACTION_NOTE if spec.kind == "action" else ""),
                "parameters": parameters_schema(spec),
            },
        }
        for spec in TOOLS.values()
    ]


def _error_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def validate_args(name: str, raw: str | Mapping[str, Any] | None) -> ToolArgs:
    """A tool call's arguments (a JSON object text, a mapping, or None/"" for none) as its model.

    Raises ToolArgsError for an unknown tool (the message lists the tools), text that is not a
    JSON object, or arguments that do not fit (each bad field and why; never the input itself).
    """
    spec = TOOLS.get(name)
    if spec is None:
        raise ToolArgsError(f"there is no tool {name[:60]!r}; the tools are: {', '.join(TOOLS)}")
    data: Any
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        data = {}
    elif isinstance(raw, str):
        try:
            data = json.loads(raw)
        except ValueError:
            raise ToolArgsError(f"{name}: the arguments are not valid JSON") from None
    else:
        data = dict(raw)
    if not isinstance(data, dict):
        raise ToolArgsError(f"{name}: the arguments must be a JSON object")
    try:
        return spec.args.model_validate(data)
    except ValidationError as exc:
        raise ToolArgsError(f"{name}: {_error_text(exc)}") from None


def args_json(args: ToolArgs) -> str:
    """The validated arguments as compact, sorted JSON (Decimals as strings): the audit's ``args``."""
    return json.dumps(args.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

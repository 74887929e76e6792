"""The new-bot form: a modal that validates its fields, then asks the engine to create the bot.

Field checks (name shape, capital, stop-loss, params JSON) happen here so the
message can point at the field; everything else (duplicate name, exchange
cap, strategy params out of range, bad pair or timeframe) is the engine's
``EngineError`` message, shown inline as it is.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from amarktai_tui.domain.enums import RiskMode
from amarktai_tui.engine.engine import BotSpec, EngineError, TradingEngine
from amarktai_tui.exchanges.registry import EXCHANGES
from amarktai_tui.strategies.params import StrategyInfo
from amarktai_tui.strategies.registry import describe

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


class FormError(ValueError):
    """A field the form rejects before asking the engine; ``field`` is the input's id."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def params_help(info: StrategyInfo) -> str:
    """One line per parameter (range, default, help), then the cross-parameter rules."""
    lines = [f"{info.name}: {info.summary}"]
    lines += [f"  {p.name}: {p.range_text()}, default {p.default!r}. {p.help}" for p in info.params]
    lines += [f"  rule: {c}" for c in info.constraints]
    return "\n".join(lines)


def parse_decimal(text: str, field: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise FormError(field, f"{what}: {text.strip()!r} is not a number") from None
    if not value.is_finite():
        raise FormError(field, f"{what}: {text.strip()!r} is not a finite number")
    return value


class NewBotScreen(ModalScreen[int | None]):
    """Collects a BotSpec; dismisses with the new bot's id, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="newbot.cancel"),
        Binding("ctrl+s", "submit", "Create bot", id="newbot.submit", priority=True),
    ]

    def __init__(self, engine: TradingEngine, exchange: str, streams: list[tuple[str, str]]) -> None:
        super().__init__()
        self._engine = engine
        self._exchange = exchange if exchange in EXCHANGES else next(iter(EXCHANGES))
        self._streams = streams
        self._strategies = describe()
        self._shown_defaults = ""
        self._bad_field: tuple[str | None, str] = (None, "")

    def compose(self) -> ComposeResult:
        pair, timeframe = self._streams[0] if self._streams else ("BTC/USDT", "5m")
        first = next(iter(self._strategies))
        with Vertical(id="newbot-dialog", classes="dialog"):
            yield Label("New bot (paper)", classes="dialog-title")
            with VerticalScroll(id="newbot-fields"):
                with Grid(id="newbot-grid"):
                    yield from _field("Name", Input(placeholder="e.g. btc-sma-fast", id="nb-name"))
                    yield from _field(
                        "Exchange",
                        Select(
                            [(f"{e.name} ({e.id})", e.id) for e in EXCHANGES.values()],
                            value=self._exchange,
                            allow_blank=False,
                            id="nb-exchange",
                        ),
                    )
                    yield from _field("Pair", Input(pair, placeholder="BASE/QUOTE", id="nb-pair"))
                    yield from _field(
                        "Timeframe", Input(timeframe, placeholder="5m, 1h, 1d", id="nb-timeframe")
                    )
                    yield from _field(
                        "Strategy",
                        Select(
                            [(n, n) for n in self._strategies],
                            value=first,
                            allow_blank=False,
                            id="nb-strategy",
                        ),
                    )
                    yield from _field(
                        "Risk mode",
                        Select(
                            [(m.value, m.value) for m in RiskMode],
                            value=RiskMode.BALANCED.value,
                            allow_blank=False,
                            id="nb-risk",
                        ),
                    )
                    yield from _field("Capital (quote)", Input("1000", id="nb-capital"))
                    yield from _field(
                        "Stop-loss", Input(placeholder="fraction: 0.05 = 5%; empty = none", id="nb-stop-loss")
                    )
                yield Label("Params (JSON object; empty = defaults)", classes="field-label")
                yield Input(id="nb-params")
                yield Static("", id="nb-params-help")
            yield Static("", id="nb-note")
            yield Static("", id="nb-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="nb-cancel")
                yield Button("Create (ctrl+s)", id="nb-create", variant="primary")

    def on_mount(self) -> None:
        self._strategy_changed(str(self.query_one("#nb-strategy", Select).value))
        self._check_stream()
        self.query_one("#nb-name", Input).focus()

    # -- reactions ------------------------------------------------------------
    @on(Select.Changed, "#nb-strategy")
    def _on_strategy(self, event: Select.Changed) -> None:
        self._strategy_changed(str(event.value))

    def _strategy_changed(self, name: str) -> None:
        info = self._strategies.get(name)
        if info is None:
            return
        params = self.query_one("#nb-params", Input)
        defaults = json.dumps(info.defaults())
        if params.value in ("", self._shown_defaults):  # the user has not edited them
            params.value = defaults
        self._shown_defaults = defaults
        self.query_one("#nb-params-help", Static).update(params_help(info))

    @on(Input.Changed, "#nb-pair, #nb-timeframe")
    def _check_stream(self) -> None:
        pair = self.query_one("#nb-pair", Input).value.strip()
        tf = self.query_one("#nb-timeframe", Input).value.strip()
        note = self.query_one("#nb-note", Static)
        if self._streams and (pair, tf) not in self._streams:
            fed = ", ".join(f"{p} {t}" for p, t in self._streams)
            note.update(f"Note: the feed carries {fed}; a bot on {pair} {tf} gets no candles from it.")
        else:
            note.update("")

    @on(Input.Changed)
    def _clear_invalid(self, event: Input.Changed) -> None:
        if event.input.id != self._bad_field[0] or event.value != self._bad_field[1]:  # edited since
            event.input.remove_class("field-error")

    # -- actions --------------------------------------------------------------
    @on(Button.Pressed, "#nb-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#nb-create")
    def action_submit(self) -> None:
        try:
            spec = self._spec()
        except FormError as exc:
            self._show_error(str(exc), exc.field)
            return
        self._create(spec)

    @work(exclusive=True, group="new-bot", exit_on_error=False)
    async def _create(self, spec: BotSpec) -> None:
        try:
            runner = await self._engine.create_bot(spec)
        except EngineError as exc:
            self._show_error(str(exc), None)
            return
        self.dismiss(runner.rec.id)

    def _show_error(self, message: str, field: str | None) -> None:
        self.query_one("#nb-error", Static).update(message)
        if field is not None:
            widget = self.query_one(f"#{field}", Input)
            self._bad_field = (field, widget.value)
            widget.add_class("field-error")
            widget.focus()

    def _spec(self) -> BotSpec:
        """The form's values as a BotSpec; raises FormError naming the field."""
        name = self.query_one("#nb-name", Input).value.strip()
        if not NAME_RE.match(name):
            raise FormError(
                "nb-name", "name: 1-40 letters, digits, '-', '_' or '.', starting with a letter or digit"
            )
        capital = parse_decimal(self.query_one("#nb-capital", Input).value, "nb-capital", "capital")
        if capital <= 0:
            raise FormError("nb-capital", f"capital must be > 0 (quote currency), got {capital}")
        sl_text = self.query_one("#nb-stop-loss", Input).value.strip()
        stop_loss = None
        if sl_text:
            stop_loss = parse_decimal(sl_text, "nb-stop-loss", "stop-loss")
            if not 0 < stop_loss < 1:
                raise FormError(
                    "nb-stop-loss", f"stop-loss must be a fraction between 0 and 1 (0.05 = 5%), got {sl_text}"
                )
        raw = self.query_one("#nb-params", Input).value.strip()
        try:
            params = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            raise FormError(
                "nb-params", f"params: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(params, dict):
            raise FormError("nb-params", 'params must be a JSON object like {"fast": 10}')
        return BotSpec(
            name=name,
            exchange=str(self.query_one("#nb-exchange", Select).value),
            pair=self.query_one("#nb-pair", Input).value.strip(),
            timeframe=self.query_one("#nb-timeframe", Input).value.strip(),
            strategy=str(self.query_one("#nb-strategy", Select).value),
            params=params,
            risk_mode=RiskMode(str(self.query_one("#nb-risk", Select).value)),
            capital=capital,
            stop_loss=stop_loss,
        )


def _field(label: str, widget: Input | Select[str]) -> ComposeResult:
    with Vertical(classes="field"):
        yield Label(label, classes="field-label")
        yield widget

"""Entry point ``amarktai``: the TUI by default, ``--daemon`` headless, and subcommands.

Exit codes (DESIGN.md): 0 ok, 1 runtime failure, 2 bad usage or bad config
(one line naming the flag or key, no traceback). Read commands print only
their result on stdout. Textual is imported only when the TUI opens.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from amarktai_tui import __version__
from amarktai_tui.config import ConfigError, Settings, load_settings
from amarktai_tui.locations import default_config_file, default_data_dir

if TYPE_CHECKING:
    from amarktai_tui.engine.setup import ReplayArgs

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
TOTP_HELP = "a current code from your authenticator app (when TOTP is enabled; else prompted on a terminal)"


class UsageError(Exception):
    """Bad usage: printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _common(p: argparse.ArgumentParser, *, top: bool) -> None:
    d = None if top else argparse.SUPPRESS
    p.add_argument("--config", type=Path, default=d, metavar="PATH", help="TOML config file")
    p.add_argument(
        "--data-dir", type=Path, default=d, metavar="PATH", help="where the ledger, logs and backups live"
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="amarktai", description="Amarktai TUI: a trading cockpit for your own crypto bots.")
    p.add_argument("--version", action="version", version=f"amarktai {__version__}")
    _common(p, top=True)
    p.add_argument(
        "--daemon", action="store_true", help="run the engine headless (no TUI) until SIGTERM/SIGINT"
    )
    p.add_argument(
        "--replay", metavar="FILE[,FILE...]", help="feed candles from files instead of an exchange"
    )
    p.add_argument("--pair", help="pair of the replay file(s) when the file name does not say (BTC/USDT)")
    p.add_argument("--timeframe", help="timeframe of the replay file(s) when the file name does not say (5m)")
    p.add_argument(
        "--speed", type=float, default=None, help="replay speed: 1 = real time, 0 = as fast as possible"
    )
    p.add_argument("--until-end", action="store_true", help="stop when the replay data ends")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("status", help="engine and account status")
    _common(s, top=False)
    s.add_argument("--json", action="store_true", help="machine-readable output")

    led = sub.add_parser("ledger", help="verify or export the ledger")
    _common(led, top=False)
    lsub = led.add_subparsers(dest="ledger_command", metavar="ACTION", parser_class=_Parser, required=True)
    v = lsub.add_parser("verify", help="recompute everything from raw rows; exit 0 when consistent")
    _common(v, top=False)
    v.add_argument("--json", action="store_true")
    e = lsub.add_parser("export", help="one row per fill")
    _common(e, top=False)
    e.add_argument("--format", choices=("csv", "json"), default="csv")

    r = sub.add_parser("report", help="profit report of the UTC day, ISO week or month containing now")
    _common(r, top=False)
    r.add_argument("period", nargs="?", choices=("daily", "weekly", "monthly"), default="daily")
    rfmt = r.add_mutually_exclusive_group()
    rfmt.add_argument("--json", action="store_true", help="machine-readable output")
    rfmt.add_argument(
        "--md", nargs="?", const="-", metavar="FILE", help="Markdown, to FILE or stdout (the default output)"
    )
    rfmt.add_argument(
        "--html", metavar="FILE", help="an HTML page with an equity chart, to FILE (- = stdout)"
    )

    b = sub.add_parser("breakers", help="circuit breakers: active trips, history, gauges; reset a trip")
    _common(b, top=False)
    b.add_argument("--json", action="store_true", help="machine-readable output")
    b.add_argument(
        "--limit", type=_count, default=20, metavar="N", help="trips of history shown (newest first)"
    )
    bsub = b.add_subparsers(dest="breakers_command", metavar="ACTION", parser_class=_Parser)
    br = bsub.add_parser("reset", help="reset an active trip (recorded: who, when, why)")
    _common(br, top=False)
    br.add_argument("trip_id", type=int, metavar="ID", help="the trip's id (see `amarktai breakers`)")
    br.add_argument("--reason", required=True, help="why it is safe to trade again (recorded)")
    br.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    br.add_argument("--totp", metavar="CODE", help=TOTP_HELP)

    h = sub.add_parser("halt", help="emergency stop: no bot opens anything until `amarktai resume`")
    _common(h, top=False)
    h.add_argument("--reason", help="why (recorded with the halt)")
    h.add_argument("--json", action="store_true", help="machine-readable output")
    u = sub.add_parser("resume", help="clear an emergency stop (recorded as a reset of the halt)")
    _common(u, top=False)
    u.add_argument("--reason", help="why (recorded with the reset)")
    u.add_argument("--totp", metavar="CODE", help=TOTP_HELP)
    u.add_argument("--json", action="store_true", help="machine-readable output")
    _keys_parser(sub)
    _bots_parser(sub)
    _doctor_totp_parsers(sub)
    m = sub.add_parser("mode", help="the account's trading mode: show it, or switch to paper or live")
    _common(m, top=False)
    m.add_argument("target", nargs="?", choices=["paper", "live"], help="switch to this mode")
    m.add_argument(
        "--confirm", metavar="PHRASE", help="the confirmation phrase for live (CONFIRM_LIVE_TRADING)"
    )
    m.add_argument("--totp", metavar="CODE", help=TOTP_HELP)
    m.add_argument("--reason", help="why (recorded with the switch)")
    m.add_argument("--json", action="store_true", help="machine-readable output (show only)")
    c = sub.add_parser(
        "chat", help="the AI console in this terminal (no TUI); opens the engine when none is running"
    )
    _common(c, top=False)
    bal = sub.add_parser("balances", help="balances per exchange, valued in the quote currency")
    _common(bal, top=False)
    bal.add_argument("--json", action="store_true", help="machine-readable output")
    bal.add_argument("--exchange", action="extend", nargs="+", metavar="ID", help="only these exchanges")
    _audit_parser(sub)
    _backup_parsers(sub)
    _backtest_parser(sub)
    from amarktai_tui.ops.autonomy_commands import add_parser as autonomy_parser  # a light import

    autonomy_parser(sub, _common)
    _optimize_parser(sub)
    _evolve_parser(sub)
    lrn = sub.add_parser("learn", help="a bot's self-learning review: win rate, W/L ratio, hours, changes")
    _common(lrn, top=False)
    lrn.add_argument("bot", metavar="NAME_OR_ID", help="the bot's name or id")
    lrn.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _backtest_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    bt = sub.add_parser(
        "backtest", help="run a strategy over candle files at full speed (a fresh ledger, not yours)"
    )
    _common(bt, top=False)
    bt.add_argument(
        "--strategy", required=True, metavar="NAME", help="sma_cross, rsi_reversion, donchian_breakout"
    )
    bt.add_argument("--params", metavar="JSON", help='strategy parameters, e.g. \'{"fast": 10, "slow": 30}\'')
    bt.add_argument("--data", required=True, metavar="FILE[,FILE]", help="candle files, one bot per file")
    bt.add_argument("--pair", dest="bt_pair", metavar="P", help="pair of the file(s) when the name lacks it")
    bt.add_argument(
        "--timeframe", dest="bt_timeframe", metavar="T", help="timeframe of the file(s) if the name lacks it"
    )
    bt.add_argument("--capital", type=_capital, metavar="Q", help="capital per bot in quote (default 1000)")
    bt.add_argument("--keep", type=Path, metavar="DIR", help="keep the ledger in DIR (one without a ledger)")
    bt.add_argument("--json", action="store_true", help="machine-readable output")
    bt.add_argument("--html", metavar="FILE", help="also write an HTML report with an equity chart to FILE")


def _evolve_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    ev = sub.add_parser("evolve", help="evolve bot DNA on candle files; show runs; a bot's lineage")
    _common(ev, top=False)
    ev.add_argument("--data", metavar="FILE[,FILE]", help="candle files, one per pair")
    ev.add_argument("--population", type=_count, metavar="N", help="DNAs per generation (4-200)")
    ev.add_argument("--generations", type=_count, metavar="G", help="generations, the first included")
    ev.add_argument("--seed", type=int, metavar="S", help="random seed (same seed + data = same run)")
    ev.add_argument("--strategies", metavar="NAME[,NAME]", help="strategies to evolve (default all)")
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    esub = ev.add_subparsers(dest="evolve_command", metavar="ACTION", parser_class=_Parser)
    es = esub.add_parser("show", help="recorded runs; each generation's best and mean fitness")
    _common(es, top=False)
    es.add_argument("--run", metavar="R", help="the run to show (default the newest)")
    el = esub.add_parser("lineage", help="a member's or a bot's ancestors (parents, recursively)")
    _common(el, top=False)
    el.add_argument("target", metavar="MEMBER|BOT", help="<run>/g<gen>/m<idx>, or a bot's name or id")
    for action in (es, el):
        action.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable")


def _optimize_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    op = sub.add_parser(
        "optimize", help="search a strategy's parameters with optuna, validated walk-forward on candle files"
    )
    _common(op, top=False)
    op.add_argument("--strategy", required=True, metavar="NAME", help="a built-in strategy, e.g. sma_cross")
    op.add_argument("--data", required=True, metavar="FILE[,FILE]", help="candle files, one bot per file")
    op.add_argument("--pair", dest="opt_pair", metavar="P", help="pair of the file(s) when the name lacks it")
    op.add_argument("--timeframe", dest="opt_timeframe", metavar="T", help="timeframe if the name lacks it")
    op.add_argument("--trials", type=int, metavar="N", help="trials this run adds (default from config)")
    op.add_argument("--sampler", choices=("tpe", "nsga2"), default="tpe", help="tpe (default) or nsga2")
    op.add_argument("--seed", type=int, metavar="S", help="sampler seed (default from config)")
    op.add_argument("--folds", type=int, metavar="K", help="walk-forward folds ([autonomy.optimize] folds)")
    op.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes sharing the study")
    op.add_argument("--storage", metavar="URL", help="optuna storage URL (default sqlite in the data dir)")
    op.add_argument("--study", metavar="NAME", help="create or join this study (default a new one)")
    op.add_argument("--exits", action="store_true", help="also search stop-loss, take-profit")
    op.add_argument("--capital", type=_capital, metavar="Q", help="capital per bot in quote (default 1000)")
    op.add_argument("--apply", metavar="BOT", help="submit the best params to this bot (proposal or change)")
    op.add_argument("--json", action="store_true", help="machine-readable output")


def _capital(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"expected an amount > 0, got {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"expected an amount > 0, got {text!r}")
    return value


def _backup_parsers(sub: argparse._SubParsersAction[_Parser]) -> None:
    bk = sub.add_parser("backup", help="copy the ledger into backups/ (safe while an engine runs)")
    _common(bk, top=False)
    bk.add_argument("--json", action="store_true", help="machine-readable output")
    rs = sub.add_parser(
        "restore", help="replace the ledger with a backup (checked first; refused while an engine runs)"
    )
    _common(rs, top=False)
    rs.add_argument("file", type=Path, metavar="FILE", help="a backup listed in backups/manifest.json")
    rs.add_argument("--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")


def _audit_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    when = "an ISO date or date-time, UTC (2024-05-01, 2024-05-01T12:30)"
    a = sub.add_parser(
        "audit", help="the audit log: entries by time, type, severity, bot; a compliance report"
    )
    _common(a, top=False)
    a.add_argument("--since", metavar="WHEN", help=f"entries from this moment on: {when}")
    a.add_argument("--until", metavar="WHEN", help="entries before this moment (a date includes that day)")
    a.add_argument("--type", action="append", metavar="TYPE[,TYPE]", help="only these types (repeatable)")
    a.add_argument(
        "--severity", action="append", metavar="LEVEL[,LEVEL]", help="info, warning, critical (repeatable)"
    )
    a.add_argument("--bot", metavar="NAME_OR_ID", help="only entries about this bot")
    a.add_argument("--limit", type=_count, default=100, metavar="N", help="the newest N entries (0 = all)")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    asub = a.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=_Parser)
    ar = asub.add_parser("report", help="compliance report for a date range (Markdown, HTML, CSV)")
    _common(ar, top=False)
    ar.add_argument("--from", dest="date_from", required=True, metavar="DATE", help=f"first day: {when}")
    ar.add_argument("--to", dest="date_to", required=True, metavar="DATE", help="last day (included)")
    ar.add_argument("--format", choices=("md", "html", "csv", "json"), default="md", help="default md")
    ar.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="same as --format json")
    ar.add_argument("--output", type=Path, metavar="FILE", help="write here instead of stdout")


def _keys_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    from amarktai_tui.vault.providers import PROVIDERS

    which = f"one of {', '.join(PROVIDERS)}"
    k = sub.add_parser("keys", help="API keys in the OS keyring: set, list, test, delete")
    _common(k, top=False)
    ksub = k.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=_Parser, required=True)
    ks = ksub.add_parser(
        "set", help="save a provider's key (prompts without echo; or one field per line on stdin)"
    )
    kl = ksub.add_parser("list", help="providers, status, last test, masked key (never the secret)")
    kt = ksub.add_parser(
        "test", help="a real authenticated call with the saved key; warns if it can withdraw"
    )
    kd = ksub.add_parser("delete", help="remove a provider's key from the keyring")
    for action in (ks, kl, kt, kd):
        _common(action, top=False)
    for action in (ks, kt, kd):
        action.add_argument("provider", metavar="PROVIDER", help=which)
    for action in (kl, kt):
        action.add_argument("--json", action="store_true", help="machine-readable output")
    kd.add_argument("--totp", metavar="CODE", help=TOTP_HELP)


def _doctor_totp_parsers(sub: argparse._SubParsersAction[_Parser]) -> None:
    d = sub.add_parser("doctor", help="readiness checks for live trading; exit 0 only when all pass")
    _common(d, top=False)
    d.add_argument("--json", action="store_true", help="machine-readable output")
    t = sub.add_parser("totp", help="the optional TOTP second factor: enroll, status, disable")
    _common(t, top=False)
    tsub = t.add_subparsers(dest="totp_command", metavar="ACTION", parser_class=_Parser, required=True)
    te = tsub.add_parser("enroll", help="show a QR code and the secret once, then confirm a first code")
    ts = tsub.add_parser("status", help="whether TOTP is enabled")
    td = tsub.add_parser("disable", help="remove the TOTP secret (needs a current code)")
    for action in (te, ts, td):
        _common(action, top=False)
    ts.add_argument("--json", action="store_true", help="machine-readable output")
    td.add_argument("--totp", metavar="CODE", help=TOTP_HELP)


def _bots_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    bt = sub.add_parser("bots", help="bot lifecycle stages: progress, promote to live, demote to paper")
    _common(bt, top=False)
    bsub = bt.add_subparsers(dest="bots_command", metavar="ACTION", parser_class=_Parser, required=True)
    st = bsub.add_parser("stages", help="each bot's stage and its progress on every promotion criterion")
    pr = bsub.add_parser("promote", help="eligible_for_live -> live (asks to confirm; recorded)")
    de = bsub.add_parser("demote", help="live or eligible_for_live -> paper_training (recorded)")
    for action in (st, pr, de):
        _common(action, top=False)
        action.add_argument("--json", action="store_true", help="machine-readable output")
    for action in (pr, de):
        action.add_argument("bot", metavar="NAME_OR_ID", help="the bot's name or id (`amarktai bots stages`)")
    pr.add_argument("--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")
    pr.add_argument("--reason", help="why (recorded; default: confirmed on the command line)")
    de.add_argument("--reason", required=True, help="why (recorded)")


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return n


def _check_reason(args: argparse.Namespace) -> None:
    """A recorded reason must say something: ``--reason ""`` is bad usage, not a runtime failure."""
    reason = getattr(args, "reason", None)
    if reason is not None and not reason.strip():
        raise UsageError(f"amarktai {args.command}: --reason must not be empty")


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        settings = _settings(args)
        data_dir = _data_dir(args)
        replay = _replay(args)
        if args.command is None:
            if args.daemon:
                return _daemon(settings, data_dir, replay)
            from amarktai_tui.tui.app import run_tui

            return run_tui(settings, data_dir, replay)
        _check_reason(args)
        if args.command in ("doctor", "totp"):
            from amarktai_tui.ops.doctor_commands import run_doctor_command
            from amarktai_tui.ops.totp_commands import run_totp

            return (run_doctor_command if args.command == "doctor" else run_totp)(args, settings, data_dir)
        if args.command == "mode":
            from amarktai_tui.ops.mode_commands import run_mode

            return run_mode(args, settings, data_dir)
        if args.command == "keys":
            from amarktai_tui.ops.key_commands import run_keys

            return run_keys(args, settings, data_dir)
        if args.command == "bots":
            from amarktai_tui.ops.stage_commands import run_bots

            return run_bots(args, settings, data_dir)
        if args.command == "chat":
            from amarktai_tui.ops.chat_commands import run_chat

            return run_chat(args, settings, data_dir)
        if args.command in ("backup", "restore"):
            from amarktai_tui.ops.backup_commands import run_backup, run_restore

            return (run_backup if args.command == "backup" else run_restore)(args, settings, data_dir)
        if args.command == "audit":
            from amarktai_tui.ops.audit_commands import run_audit

            return run_audit(args, settings, data_dir)
        if args.command == "backtest":
            from amarktai_tui.ops.backtest_commands import run_backtest_command

            return run_backtest_command(args, settings, data_dir)
        if args.command == "optimize":
            from amarktai_tui.ops.optimize_commands import run_optimize

            return run_optimize(args, settings, data_dir)
        if args.command == "evolve":
            from amarktai_tui.ops.evolve_commands import run_evolve

            return run_evolve(args, settings, data_dir)
        if args.command == "learn":
            from amarktai_tui.ops.learn_commands import run_learn

            return run_learn(args, settings, data_dir)
        if args.command == "autonomy":
            from amarktai_tui.ops.autonomy_commands import run_autonomy

            return run_autonomy(args, settings, data_dir)
        if args.command == "balances":
            from amarktai_tui.ops.balance_commands import run_balances

            return run_balances(args, settings, data_dir)
        from amarktai_tui.ops import commands

        return commands.dispatch(args, settings, data_dir)
    except (UsageError, ConfigError) as exc:
        print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # `amarktai ledger export | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _settings(args: argparse.Namespace) -> Settings:
    explicit = args.config is not None or "AMARKTAI_CONFIG" in os.environ
    path = args.config if args.config is not None else default_config_file()
    return load_settings(path, required=explicit)


def _data_dir(args: argparse.Namespace) -> Path:
    d: Path = args.data_dir if args.data_dir is not None else default_data_dir()
    if d.exists() and not d.is_dir():
        raise UsageError(f"--data-dir {d} is not a directory")
    return d


def _replay(args: argparse.Namespace) -> ReplayArgs | None:
    from amarktai_tui.engine.setup import ReplayArgs

    if args.speed is not None and not (math.isfinite(args.speed) and args.speed >= 0):
        raise UsageError(f"--speed must be a number >= 0 (0 = as fast as possible), got {args.speed}")
    if not args.replay:
        for flag in ("pair", "timeframe"):
            if getattr(args, flag):
                raise UsageError(f"--{flag} needs --replay")
        return None
    files = [f for f in args.replay.split(",") if f]
    if args.timeframe:
        from amarktai_tui.domain.types import timeframe_to_ms

        try:
            timeframe_to_ms(args.timeframe)
        except ValueError as exc:
            raise UsageError(f"--timeframe: {exc}") from None
    return ReplayArgs(files, args.pair, args.timeframe, args.speed or 0.0, args.until_end)


def _daemon(settings: Settings, data_dir: Path, replay: ReplayArgs | None) -> int:
    from amarktai_tui.engine.live_setup import LiveSetupError
    from amarktai_tui.engine.reconcile import ReconcileError
    from amarktai_tui.market.loaders import CandleFileError
    from amarktai_tui.ops.daemon import ControlSocketError, run_daemon, setup_logging
    from amarktai_tui.ops.lock import EngineLockedError
    from amarktai_tui.vault.errors import VaultUnavailable

    setup_logging(data_dir)
    try:
        return asyncio.run(run_daemon(settings, data_dir, replay))
    except (CandleFileError, EngineLockedError, ControlSocketError) as exc:
        print(f"amarktai: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, CandleFileError) else EXIT_FAIL
    except (LiveSetupError, ReconcileError, VaultUnavailable) as exc:  # live refused; paper is unaffected
        print(f"amarktai: live trading refused to start: {exc}", file=sys.stderr)
        return EXIT_FAIL

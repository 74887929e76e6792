"""Secrets never reach the log file in clear: marker secrets saved in and loaded from a real Secret
Service (gnome-keyring on a private D-Bus bus), logged through the daemon's own logging setup into
a real file in tmp_path, which is then read back; and the log tail masks them again on display."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from amarktai_tui.ops.daemon import setup_logging
from amarktai_tui.ops.logtail import LogTail, log_file, tail_lines
from amarktai_tui.ops.redact import MASK, SECRETS, RedactFilter, SecretRegistry, redact
from amarktai_tui.vault.backend import auto_backend
from amarktai_tui.vault.providers import get_provider
from amarktai_tui.vault.store import SecretStore

# markers: strings that appear nowhere else, so finding one in a file means it leaked
KEY = "MARKERkey-7f3e9c1a2b4d"
SECRET = "MARKERsecret-0c8d6e2f9a1b"
HEADER_ONLY = "MARKERhdr-5a5a5a5a5a"  # never registered: only the header pattern can catch it
BEARER = "MARKERbearer-e1e2e3e4e5"
PAIR_ONLY = "MARKERpair-9b9b9b9b"
SK = "sk-MARKERsk0123456789abcdef"
MARKERS = (KEY, SECRET, HEADER_ONLY, BEARER, PAIR_ONLY, SK)


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    """Each test starts as a new process would: no secret registered."""
    SECRETS.clear()
    yield
    SECRETS.clear()


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Give the root logger back as it was (``setup_logging`` replaces its handlers)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_a_logged_secret_from_the_vault_and_credential_headers_never_reach_the_file(
    secret_service: str, tmp_path: Path, root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    binance = get_provider("binance")
    SecretStore(auto_backend()).save(binance, {"api_key": KEY, "api_secret": SECRET})
    SECRETS.clear()  # a new process: it knows the secrets only once it loads them from the vault
    loaded = SecretStore(auto_backend()).load(binance)
    assert loaded == {"api_key": KEY, "api_secret": SECRET}

    data_dir = tmp_path / "data"
    setup_logging(data_dir)  # the daemon's: the file and stderr
    log = logging.getLogger("amarktai.test")
    log.info("binance client built with key %s and secret %s", loaded["api_key"], loaded["api_secret"])
    log.warning(
        "request failed: GET https://api.binance.com/api/v3/account headers %s",
        {"X-MBX-APIKEY": HEADER_ONLY, "Authorization": f"Bearer {BEARER}", "Accept": "application/json"},
    )
    log.warning("config apiKey=%s&password=%s", PAIR_ONLY, PAIR_ONLY)
    log.info("openai key %s in use", SK)
    try:
        raise RuntimeError(f"binance 401 {{'code': -2015, 'msg': 'Invalid API-key {SECRET}'}}")
    except RuntimeError:
        log.exception("order failed")
    for h in logging.getLogger().handlers:
        h.flush()

    text = log_file(data_dir).read_text()
    err = capsys.readouterr().err
    for marker in MARKERS:
        assert marker not in text, f"{marker} leaked into the log file"
        assert marker not in err, f"{marker} leaked to stderr"
    assert f"binance client built with key {MASK} and secret {MASK}" in text
    assert f"'X-MBX-APIKEY': '{MASK}', 'Authorization': '{MASK}', 'Accept': 'application/json'" in text
    assert f"config apiKey={MASK}&password={MASK}" in text
    assert f"openai key sk-{MASK} in use" in text
    assert f"RuntimeError: binance 401 {{'code': -2015, 'msg': 'Invalid API-key {MASK}'}}" in text
    assert "Traceback (most recent call last)" in text  # the traceback is kept, masked
    assert all(isinstance(f, RedactFilter) for h in logging.getLogger().handlers for f in h.filters)


def test_the_log_tail_masks_lines_written_without_the_filter(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "amarktai.log"
    path.parent.mkdir()
    path.write_text("".join(f"line {i}\n" for i in range(300)))
    tail = LogTail(path, initial=5)
    assert tail.read_new() == [f"line {i}" for i in range(295, 300)]
    SECRETS.register([SECRET])
    with path.open("a") as f:  # another process, or an older version, wrote the secret in clear
        f.write(f"leaked {SECRET} here\nheaders {{'KC-API-PASSPHRASE': '{HEADER_ONLY}'}}\npartial")
    assert tail.read_new() == [f"leaked {MASK} here", f"headers {{'KC-API-PASSPHRASE': '{MASK}'}}"]
    with path.open("a") as f:
        f.write(" line done\n")
    assert tail.read_new() == ["partial line done"]
    assert tail.read_new() == []
    assert tail_lines(path, 3) == [f"leaked {MASK} here", f"headers {{'KC-API-PASSPHRASE': '{MASK}'}}",
                                   "partial line done"]  # fmt: skip
    path.write_text("rotated\n")  # truncated (or replaced): read again from the start
    assert tail.read_new() == ["rotated"]
    assert tail_lines(tmp_path / "missing.log") == []


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("Authorization: Bearer abc.def.ghi", f"Authorization: Bearer {MASK}"),
        ('{"KC-API-KEY": "k1", "KC-API-SIGN": "c2lnbg==", "KC-API-KEY-VERSION": "2"}',
         f'{{"KC-API-KEY": "{MASK}", "KC-API-SIGN": "{MASK}", "KC-API-KEY-VERSION": "2"}}'),
        ("GET /api/v3/order?symbol=BTCUSDT&timestamp=1&signature=9f86d08", f"GET /api/v3/order?symbol=BTCUSDT&timestamp=1&signature={MASK}"),
        ("{'apiKey': 'a1', 'secret': 's2', 'password': 'p 3', 'enableRateLimit': True}",
         f"{{'apiKey': '{MASK}', 'secret': '{MASK}', 'password': '{MASK}', 'enableRateLimit': True}}"),
        ("smtp_password=hunter22 user=me", f"smtp_password={MASK} user=me"),
        ("key sk-proj-ABCDEFGHIJKLMNOPQRSTUV ok", f"key sk-{MASK} ok"),
        ("X-VALR-API-KEY: abcdef", f"X-VALR-API-KEY: {MASK}"),
        # ordinary lines stay as they are
        ("binance: API secret must not be empty", "binance: API secret must not be empty"),
        ("engine started: 3 bots, replay, data dir /tmp/x", "engine started: 3 bots, replay, data dir /tmp/x"),
        ("breaker halt tripped (account): emergency stop", "breaker halt tripped (account): emergency stop"),
        ("designation=3 signal=buy", "designation=3 signal=buy"),
    ],
)  # fmt: skip
def test_credential_shapes_are_masked_and_other_text_is_kept(line: str, shown: str) -> None:
    assert redact(line) == shown
    assert redact(shown) == shown  # idempotent: masking again changes nothing


def test_registered_values_are_masked_anywhere_longest_first_and_short_ones_are_not_registered() -> None:
    reg = SecretRegistry()
    reg.register(["abcdefgh", "abcdefgh-longer", "", None, "abc"])
    assert len(reg) == 2
    assert redact("x abcdefgh-longer y abcdefghz abc", reg) == f"x {MASK} y {MASK}z abc"


def test_the_filter_formats_arguments_and_keeps_records_it_cannot_format() -> None:
    reg = SecretRegistry()
    reg.register([SECRET])
    f = RedactFilter(reg)
    rec = logging.LogRecord("t", logging.INFO, __file__, 1, "got %s and %d", (SECRET, 7), None)
    assert f.filter(rec) and rec.getMessage() == f"got {MASK} and 7"
    bad = logging.LogRecord("t", logging.INFO, __file__, 1, "%d", ("not a number",), None)
    assert f.filter(bad) and bad.args == ("not a number",)  # logging reports it as usual
    try:
        raise ValueError(SECRET)
    except ValueError:
        exc = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    assert f.filter(exc) and exc.exc_text is not None
    assert SECRET not in exc.exc_text and f"ValueError: {MASK}" in exc.exc_text

"""Secret-free, one-line error text.

Error messages from HTTP clients can carry what was sent: ccxt puts the request URL (with
Binance's ``signature=`` query) and the response body in its exceptions, and some APIs echo
the key back. ``scrub`` replaces every known secret value with ``****``, cuts URL query
strings, masks signature, key and token parameters elsewhere, and flattens the text to one line of at most ``limit`` characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "****"
_PARAMS = re.compile(
    r"(?i)\b(signature|sign|api[_-]?key|apikey|secret|passphrase|password|token|access_token)=([^&\s\"']+)"
)
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+")
_QUERY = re.compile(r"(https?://[^\s?#\"']+)\?[^\s\"']*")


def scrub(text: str, secrets: Iterable[str], *, limit: int = 240) -> str:
    """``text`` with every value of ``secrets`` replaced by ``****``, query-string credentials
    and bearer tokens masked, whitespace runs (newlines included) collapsed to one space, and
    cut to ``limit`` characters (an ellipsis marks the cut)."""
    for value in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _QUERY.sub(r"\1?…", text)  # signed query strings: long, and nothing a reader needs
    text = _PARAMS.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    text = _BEARER.sub(f"Bearer {REDACTED}", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

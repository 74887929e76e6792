"""What the two loopback SMTP servers of the mail tests share (``services_helpers.SmtpThread``, a
server in a thread of its own; ``test_mailer.Inbox``, one on the test's loop): AUTH LOGIN/PLAIN
required against one login, and each message taken parsed with the ``email`` package."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword


def check_login(data: object, user: str, password: str, logins: list[tuple[bytes, bytes]]) -> AuthResult:
    """aiosmtpd's authenticator answer: success only for ``user``/``password`` (then recorded in
    ``logins``)."""
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (user.encode(), password.encode())
    if ok:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
    return AuthResult(success=ok, handled=False)


def parse(envelope: Envelope) -> EmailMessage:
    """The message of a DATA command, parsed (``email.policy.default``)."""
    assert isinstance(envelope.content, bytes)
    msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def session(handler: Any, authenticator: Callable[..., AuthResult]) -> SMTP:
    """One SMTP session on loopback: AUTH required, plain text allowed (no TLS on loopback)."""
    return SMTP(
        handler, hostname="localhost", authenticator=authenticator, auth_required=True, auth_require_tls=False
    )

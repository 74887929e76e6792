"""A private, real Secret Service for tests: gnome-keyring-daemon on a private D-Bus session bus.

``private_secret_service(tmp)`` starts ``dbus-daemon --session`` (its address read from
``--print-address``), then ``gnome-keyring-daemon --foreground --unlock
--components=secrets`` on that bus with a fresh keyring folder (``XDG_DATA_HOME`` in
``tmp``) and the login password on stdin, so the login keyring is created unlocked and
nothing ever prompts. Ready means: the daemon owns ``org.freedesktop.secrets`` on the bus
(waited for on D-Bus's own NameOwnerChanged signal, not with a sleep). On exit both
processes are terminated by their pids.

The caller points clients at it with ``DBUS_SESSION_BUS_ADDRESS`` (in-process: set the
variable; subprocesses: put it in their environment).

Debian packages: ``dbus`` (dbus-daemon) and ``gnome-keyring``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

SECRETS_NAME = "org.freedesktop.secrets"
READY_TIMEOUT_S = 60.0  # a guard against a hang, not a wait: the daemon is up in well under a second
BINARIES = ("dbus-daemon", "gnome-keyring-daemon")


def missing_binaries() -> list[str]:
    """The programs this needs that are not on PATH (tests skip, naming them)."""
    return [b for b in BINARIES if shutil.which(b) is None]


@contextlib.contextmanager
def private_secret_service(tmp: Path, password: str = "amarktai-test") -> Iterator[str]:
    """Run a private Secret Service; yields the bus address (``unix:path=...``)."""
    from jeepney.bus_messages import MatchRule, message_bus
    from jeepney.io.blocking import open_dbus_connection

    tmp.mkdir(parents=True, exist_ok=True)
    runtime = tmp / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    (tmp / "data").mkdir(exist_ok=True)
    read_fd, write_fd = os.pipe()
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--print-address={write_fd}"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # "Failed to set fd limit" in containers: harmless
    )
    os.close(write_fd)
    keyring: subprocess.Popen[bytes] | None = None
    try:
        with os.fdopen(read_fd) as f:
            address = f.readline().strip()
        if not address:
            raise RuntimeError(f"dbus-daemon exited ({bus.wait()}) without printing its address")
        env = {
            **os.environ,
            "DBUS_SESSION_BUS_ADDRESS": address,
            "XDG_DATA_HOME": str(tmp / "data"),
            "XDG_RUNTIME_DIR": str(runtime),
            "HOME": str(tmp),
        }
        with open_dbus_connection(address) as conn:
            rule = MatchRule(
                type="signal",
                sender="org.freedesktop.DBus",
                interface="org.freedesktop.DBus",
                member="NameOwnerChanged",
                path="/org/freedesktop/DBus",
            )
            rule.add_arg_condition(0, SECRETS_NAME)
            conn.send_and_get_reply(message_bus.AddMatch(rule))
            with conn.filter(rule) as queue:
                keyring = subprocess.Popen(
                    ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                assert keyring.stdin is not None
                keyring.stdin.write(password.encode())
                keyring.stdin.close()
                owned = conn.send_and_get_reply(message_bus.NameHasOwner(SECRETS_NAME)).body[0]
                while not owned:
                    signal = conn.recv_until_filtered(queue, timeout=READY_TIMEOUT_S)
                    owned = bool(signal.body[2])  # (name, old owner, new owner)
        yield address
    finally:
        for proc in (keyring, bus):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

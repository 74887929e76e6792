"""Fixtures of the ops tests: a private, real Secret Service (gnome-keyring on a private D-Bus
bus) per test, and an environment free of the developer's keyring and config choices."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback.secret_service import missing_binaries, private_secret_service


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AMARKTAI_* variable, no $PYTHON_KEYRING_BACKEND, no keyringrc.cfg of the developer."""
    for key in list(os.environ):
        if key.startswith("AMARKTAI_") or key == "PYTHON_KEYRING_BACKEND":
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


@pytest.fixture
def secret_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh gnome-keyring Secret Service; DBUS_SESSION_BUS_ADDRESS points at it (this process
    and, through ``os.environ``, the CLI subprocesses). Yields the bus address."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages: dbus gnome-keyring)")
    with private_secret_service(tmp_path / "secret-service") as address:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        yield address

"""Fixtures of the CLI tests: no AMARKTAI_* variable of the developer leaks into a test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_amarktai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("AMARKTAI_"):
            monkeypatch.delenv(key)

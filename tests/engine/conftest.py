"""Fixtures of the engine tests: a clean AMARKTAI_* environment and one shared full 1h run."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from engine_helpers import BTC_1H, ETH_1H, replay, settings_from


def _clear_env(mp: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("AMARKTAI_"):
            mp.delenv(key)


@pytest.fixture(autouse=True)
def _no_amarktai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's AMARKTAI_* variables must not leak into the settings under test."""
    _clear_env(monkeypatch)


@pytest.fixture(scope="session")
def full_1h_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data dir of one uninterrupted default (demo bots) replay of BTC and ETH 1h, start to end."""
    data_dir = tmp_path_factory.mktemp("full-1h")
    with pytest.MonkeyPatch.context() as mp:
        _clear_env(mp)
        asyncio.run(replay(settings_from(data_dir), data_dir, [BTC_1H, ETH_1H]))
    return data_dir

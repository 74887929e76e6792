"""Every path the app uses, in one place (platformdirs / XDG)."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_config_path, user_data_path

APP = "amarktai"


def default_config_file() -> Path:
    """``$AMARKTAI_CONFIG``, else the user config dir's ``config.toml``."""
    env = os.environ.get("AMARKTAI_CONFIG")
    return Path(env) if env else user_config_path(APP) / "config.toml"


def default_data_dir() -> Path:
    """``$AMARKTAI_DATA_DIR``, else the platformdirs user data dir."""
    env = os.environ.get("AMARKTAI_DATA_DIR")
    return Path(env) if env else user_data_path(APP)


def db_path(data_dir: Path) -> Path:
    return data_dir / "amarktai.sqlite3"


def lock_path(data_dir: Path) -> Path:
    return data_dir / "amarktai.lock"


def logs_dir(data_dir: Path) -> Path:
    return data_dir / "logs"


def backups_dir(data_dir: Path) -> Path:
    return data_dir / "backups"


def user_themes_dir() -> Path:
    """User theme files (``*.toml``) beside the config file, loaded after the built-ins."""
    return user_config_path(APP) / "themes"

"""Themes from TOML files, converted to ``textual.theme.Theme``.

The built-in themes live in the top-level ``themes/`` folder of the repository
(shipped in the wheel as ``amarktai_tui/tui/theme_files/``; in the repository that folder is a
symlink to ``themes/``); user themes are read
from ``locations.user_themes_dir()`` afterwards, so a user file with a
built-in's name replaces it. A file looks like::

    name = "my-theme"
    dark = true
    primary = "#2f81f7"
    background = "#0d1117"   # any other textual.theme.Theme colour field
    [variables]
    pnl-up = "#3fb950"       # the app's own variables (see THEME_VARIABLES)

A broken file never stops the app: ``load_themes`` returns it as an error
message and the caller shows a notification.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

BUILTIN_DIR = Path(__file__).resolve().parent / "theme_files"
DEFAULT_THEME = "amarktai-dark"
FALLBACK_THEME = "textual-dark"  # Textual's own, used only when our default theme file is broken

THEME_VARIABLES: dict[str, str] = {
    "pnl-up": "#3fb950",
    "pnl-down": "#f85149",
    "breaker-tripped": "#ff7b72",
    "mode-live": "#da3633",
}
"""The app's theme variables and their defaults (for themes that do not set them)."""

_COLOURS: tuple[str, ...] = (
    *("primary", "secondary", "warning", "error", "success", "accent"),
    *("foreground", "background", "surface", "panel", "boost"),
)


class ThemeFileError(ValueError):
    """A theme file that cannot be used; the message names the file and the problem."""


@dataclass
class LoadedThemes:
    """Themes read from the theme folders, and one message per file that failed."""

    themes: dict[str, Theme] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def theme_from_toml(path: Path) -> Theme:
    """Parse one theme file. Raises ThemeFileError (one line, naming ``path``)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ThemeFileError(f"{path.name}: {exc}".replace("\n", " ")) from None
    return theme_from_dict(data, path.name, default_name=path.stem)


def theme_from_dict(data: dict[str, object], source: str, default_name: str) -> Theme:
    """Build a Theme from a parsed TOML table. Raises ThemeFileError naming ``source`` and the key."""
    known = {"name", "dark", "variables", "luminosity_spread", "text_alpha", *_COLOURS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ThemeFileError(f"{source}: unknown key {unknown[0]!r}")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise ThemeFileError(f"{source}: name must be a non-empty string")
    colours: dict[str, str] = {}
    for key in _COLOURS:
        if key in data:
            colours[key] = _colour(data[key], source, key)
    if "primary" not in colours:
        raise ThemeFileError(f"{source}: primary colour is missing")
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ThemeFileError(f"{source}: dark must be true or false")
    raw_vars = data.get("variables", {})
    if not isinstance(raw_vars, dict):
        raise ThemeFileError(f"{source}: [variables] must be a table")
    variables = {str(k): _colour(v, source, f"variables.{k}") for k, v in raw_vars.items()}
    extra: dict[str, float] = {}
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ThemeFileError(f"{source}: {key} must be a number")
            extra[key] = float(value)
    return Theme(name=name, dark=dark, variables=variables, **colours, **extra)  # type: ignore[arg-type]


def _colour(value: object, source: str, key: str) -> str:
    if not isinstance(value, str):
        raise ThemeFileError(f'{source}: {key} must be a colour string like "#2f81f7"')
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeFileError(f"{source}: {key} = {value!r} is not a colour") from None
    return value


def load_themes(*folders: Path | None) -> LoadedThemes:
    """Every ``*.toml`` theme in ``folders``, in order (later files replace earlier names).

    Missing folders are skipped; a bad file becomes a message in ``errors``.
    """
    out = LoadedThemes()
    for folder in folders:
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = theme_from_toml(path)
            except ThemeFileError as exc:
                out.errors.append(f"theme file {exc}")
                continue
            out.themes[theme.name] = theme
    return out


def choose_theme(wanted: str, available: set[str]) -> tuple[str, str | None]:
    """The theme to use for ``wanted`` and, when it is not available, a message saying what was used."""
    if wanted in available:
        return wanted, None
    fallback = DEFAULT_THEME if DEFAULT_THEME in available else FALLBACK_THEME
    return fallback, f"theme {wanted!r} not found; using {fallback}"

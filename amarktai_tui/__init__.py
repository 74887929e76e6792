"""Amarktai TUI: a terminal trading application for self-run crypto bots."""

__version__ = "0.1.0"

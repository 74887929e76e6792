"""The vault's errors. Every message is one line and never contains a secret."""

from __future__ import annotations


class VaultError(Exception):
    """Base of the vault's errors."""


class VaultUnavailable(VaultError):
    """No usable keyring (no Secret Service, a locked or disabled keyring, a missing passphrase).

    Runtime failure: the CLI prints the message and exits 1.
    """


class KeyInputError(VaultError, ValueError):
    """Bad input from the user (an unknown provider, an empty required field): the CLI exits 2."""


class NotConfiguredError(VaultError):
    """``keys test`` on a provider with nothing saved: the CLI exits 1."""


class NotTestableError(KeyInputError):
    """``keys test`` on a provider without a test (fetchai, flokx), or one whose settings are
    missing (SMTP without ``[smtp] host``): the CLI exits 2."""

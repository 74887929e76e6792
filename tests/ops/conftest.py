"""Fixtures of the ops tests: the vault tests' own (``tests/vault/conftest.py``): a private, real
Secret Service per test (``secret_service``) and an environment free of the developer's keyring and
config choices (``_clean_env``, autouse)."""

from __future__ import annotations

from vault.conftest import _clean_env, secret_service

__all__ = ["_clean_env", "secret_service"]

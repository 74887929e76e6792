"""Secrets in the OS keyring, status in the ledger: the provider registry, the keyring backend,
key tests against the providers' real APIs.

Layout (one job per module): ``providers`` (who needs which fields), ``backend`` (which
keyring), ``store`` (read/write/delete secrets), ``status`` (the ``api_keys`` table),
``tester`` and ``permissions`` (an authenticated call per provider), ``manager`` (the
three together, for the CLI and the TUI), ``scrub`` (secret-free error text).

Secrets never leave the keyring except into the client that needs them: never in the
database, a log line or an exception message.
"""

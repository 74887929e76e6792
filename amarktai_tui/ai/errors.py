"""The AI layer's errors. Every message is one line and never contains a secret.

The console catches ``AIError`` and falls back to commands only, saying why (the message).
"""

from __future__ import annotations


class AIError(RuntimeError):
    """A model call failed in a way the user should read (HTTP 400/401/5xx, a malformed reply)."""


class AIUnavailable(AIError):
    """No model access at all: no OpenAI key saved, or the keyring cannot be read."""


class BudgetExceeded(AIError):
    """Today's token budget is used up; the call was refused before any request was sent."""


class AllModelsFailed(AIError):
    """Every model of the mode's fallback chain was missing, rate limited, timed out or unreachable."""

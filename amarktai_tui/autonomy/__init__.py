"""Autonomy (issue 8): bots that improve themselves within bounds the user sets.

Every automatic change goes through one door (``autonomy.changes.Adjuster``): in
expert mode it becomes a proposal the user confirms; in autonomous mode it is
clamped to ``autonomy.bounds`` and applied. Protected parameters (max daily loss,
max drawdown, total capital, trading mode) are never changed by any of it.
Each change is a row of the append-only ``bot_adjustments`` table, revertible.
"""

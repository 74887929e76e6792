"""Adapters for platforms ccxt does not ship: ccxt.async_support.Exchange subclasses."""

"""Loopback servers that speak real exchange APIs (aiohttp on 127.0.0.1), for real ccxt in tests."""

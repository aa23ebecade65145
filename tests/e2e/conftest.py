"""A real `ledgerd serve` process per test module, on a fresh migrated database, with API keys for
two accounts in both modes. Tests drive it over HTTP (the official stripe SDK, aiohttp, raw sockets).
The fixture and its helpers live in tests/support/server.py (the fault tests use it too)."""

from tests.support.server import server as server

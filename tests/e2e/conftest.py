"""The ledgerd API per test module, on a fresh migrated database, with API keys for two accounts in both
modes. Tests drive it over HTTP (the official stripe SDK, aiohttp, raw sockets). `server` is the app served
in this process; `server_process` a real `ledgerd serve` (modules where the process matters ask for it).
The fixtures and their helpers live in tests/support/server.py (the fault tests use them too)."""

from tests.support.server import server as server
from tests.support.server import server_process as server_process

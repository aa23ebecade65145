"""What the app and each request carry, as typed keys (aiohttp's `web.AppKey` / `web.RequestKey`), each
declared once here: a reader finds every piece of shared state in one place, and mypy checks each use.

The types are imported for the checker only: the modules holding them import this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

if TYPE_CHECKING:
    from ledgerd.service.accounts import AccountSettings
    from ledgerd.service.app import Database
    from ledgerd.service.commands.group_commit import GroupCommitter
    from ledgerd.service.commands.runner import Runner
    from ledgerd.service.config import Config
    from ledgerd.service.observability import Metrics
    from ledgerd.service.testmode import TestMode
    from ledgerd.service.webhooks.config import WebhookConfig
    from ledgerd.service.webhooks.delivery import Deliverer

# -- the app's: set by create_app ------------------------------------------------------------------
CONFIG: web.AppKey[Config] = web.AppKey("config")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
DATABASE: web.AppKey[Database] = web.AppKey("database")
POOL: web.AppKey[asyncpg.Pool | None] = web.AppKey("pool")  # None until the database is reachable
# The lists' pool: its connections plan each statement for its values (service/routes/paging.py).
LIST_POOL: web.AppKey[asyncpg.Pool | None] = web.AppKey("list_pool")  # set with POOL
WEBHOOK_CONFIG: web.AppKey[WebhookConfig] = web.AppKey("webhook_config")
TEST_MODE: web.AppKey[TestMode] = web.AppKey("test_mode")  # only on an ephemeral ledger
# -- set once the database is reachable (service.app.establish), before the pool -----------------
RUNNER: web.AppKey[Runner] = web.AppKey("runner")
COMMITTER: web.AppKey[GroupCommitter | None] = web.AppKey("committer")  # None without group commit
# -- set while the webhook workers run -------------------------------------------------------------
WEBHOOK_DELIVERER: web.AppKey[Deliverer] = web.AppKey("webhook_deliverer")

# -- each request's --------------------------------------------------------------------------------
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")  # access_middleware, on every request
# The API key's (auth_middleware): absent on the public paths.
ACCOUNT: web.RequestKey[str] = web.RequestKey("account")
LIVEMODE: web.RequestKey[bool] = web.RequestKey("livemode")
API_KEY_ID: web.RequestKey[str] = web.RequestKey("api_key_id")
ACCOUNT_SETTINGS: web.RequestKey[AccountSettings] = web.RequestKey("account_settings")  # fidelity_middleware
API_VERSION: web.RequestKey[str] = web.RequestKey("api_version")  # fidelity_middleware
REPLAYED: web.RequestKey[bool] = web.RequestKey("replayed")  # answered from an idempotency record
ERROR_CODE: web.RequestKey[str | None] = web.RequestKey("error_code")  # error_middleware, for the access log


def pool_of(request: web.Request) -> asyncpg.Pool:
    """The app's database pool, for a handler: the auth middleware answers 503 before any handler that
    needs it runs without one."""
    pool = request.app[POOL]
    if pool is None:
        raise RuntimeError("the app has no database pool yet")
    return pool


def list_pool_of(request: web.Request) -> asyncpg.Pool:
    """The pool the list pages are read from (set before `POOL`, so a handler that runs has it)."""
    pool = request.app[LIST_POOL]
    if pool is None:
        raise RuntimeError("the app has no database pool yet")
    return pool

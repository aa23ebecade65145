"""structlog configuration (once, by the CLI or the app factory), the canonical request log line,
request ids, and the Prometheus metrics of one app."""

from __future__ import annotations

import datetime as dt
import json
import logging
import string
import sys
import time
from typing import Any, TextIO

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram

from ledgerd.service.appkeys import ACCOUNT, ERROR_CODE, LIVEMODE, REPLAYED, REQUEST_ID
from ledgerd.service.ids import random_token

REQUEST_ID_ALPHABET = string.ascii_letters + string.digits
_configured = False


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """`stream` defaults to stdout; `serve --ephemeral` logs to stderr, its stdout holds only its facts."""
    global _configured
    if _configured:
        return
    _configured = True
    stream = stream if stream is not None else sys.stdout
    if hasattr(stream, "reconfigure"):
        stream.reconfigure(line_buffering=True)  # one request, one line, visible at once
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter())
    logging.basicConfig(handlers=[handler], level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )


class JsonLineFormatter(logging.Formatter):
    """Records of the standard library's loggers (aiohttp's among them) as one JSON line each, like
    structlog's. A malformed request makes aiohttp log "Error handling request" with the parser's
    exception: its type and message are kept, its traceback (aiohttp's internals, many lines) is not."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "event": record.getMessage(),
            "logger": record.name,
            "level": record.levelname.lower(),
            "timestamp": self.formatTime(record),
        }
        if record.exc_info and record.exc_info[1] is not None:
            line["error"] = repr(record.exc_info[1])[:2000]
        return json.dumps(line, default=str)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = dt.datetime.fromtimestamp(record.created, dt.UTC)
        return moment.isoformat().replace("+00:00", "Z")


def new_request_id() -> str:
    return "req_" + random_token(14, REQUEST_ID_ALPHABET)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ledger_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ledger_http_request_duration_seconds",
            "Request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.events_appended = Counter(
            "ledger_events_appended", "Domain events appended to the log", registry=self.registry
        )
        self.idempotent_replays = Counter(
            "ledger_idempotent_replays",
            "Requests answered from an idempotency record",
            registry=self.registry,
        )
        self.group_commit_batch = Histogram(
            "ledger_group_commit_batch_size",
            "Commands per group-commit transaction",
            buckets=(1, 2, 4, 8, 16, 32),
            registry=self.registry,
        )
        self.group_commit_fallbacks = Counter(
            "ledger_group_commit_fallbacks",
            "Shared transactions rolled back and re-run one command per transaction",
            registry=self.registry,
        )


def route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def access_middleware(metrics: Metrics, log_requests: bool) -> Any:
    log = structlog.get_logger("ledger.http")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = new_request_id()
        request[REQUEST_ID] = request_id
        started = time.perf_counter()
        response = await handler(request)
        elapsed = time.perf_counter() - started
        response.headers["Request-Id"] = request_id
        response.headers.setdefault("Cache-Control", "no-cache, no-store")
        route = route_name(request)
        metrics.requests.labels(request.method, route, str(response.status)).inc()
        metrics.latency.labels(request.method, route).observe(elapsed)
        if log_requests:
            log.info(
                "request",
                request_id=request_id,
                account=request.get(ACCOUNT),
                livemode=request.get(LIVEMODE),
                method=request.method,
                route=route,
                status=response.status,
                latency_ms=round(elapsed * 1000, 2),
                replayed=request.get(REPLAYED, False),
                error_code=request.get(ERROR_CODE),
            )
        return response

    return middleware

"""Stripe-shaped errors and the one middleware that maps every failure to them.

Handlers hold no try/except: domain rejections, idempotency conflicts, database trouble and unknown
routes all become `{"error": {type, code, message, param, doc_url}}` here. No stack trace or SQL
ever reaches a client; a 500 is logged with its request id.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Final

import asyncpg
import msgspec
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from msgspec import UNSET, Meta, UnsetType

from ledgerd.domain.errors import Conflict, DomainError, ResourceMissing
from ledgerd.service.appkeys import ERROR_CODE, REQUEST_ID
from ledgerd.service.commands.errors import ConflictRetriesExhausted, IdempotencyConflict

log = structlog.get_logger("ledger.errors")

INVALID_REQUEST = "invalid_request_error"


class StripeError(Exception):
    """An error response decided by the HTTP layer (auth, limits, routing)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        should_retry: bool | None = None,
        close_connection: bool = False,
    ) -> None:
        super().__init__(message)
        self.close_connection = close_connection  # e.g. a body that is not read is not drained either
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        if should_retry is not None:
            self.headers["Stripe-Should-Retry"] = "true" if should_retry else "false"


ERROR_TYPES: Final[list[str]] = ["api_error", "idempotency_error", "invalid_request_error"]


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    """What went wrong; `code`, `doc_url` and `param` are left out when they do not apply."""

    type: Annotated[str, Meta(extra_json_schema={"enum": ERROR_TYPES})]
    message: Annotated[str, Meta(min_length=1)]
    code: Annotated[str, Meta(pattern="^[a-z0-9_]+$")] | UnsetType = UNSET
    doc_url: Annotated[str, Meta(pattern="^https://stripe\\.com/docs/error-codes/")] | UnsetType = UNSET
    param: str | UnsetType = UNSET


class ErrorObject(msgspec.Struct, frozen=True, kw_only=True):
    """Stripe's error shape."""

    error: ErrorDetail


def error_body(type: str, message: str, code: str | None = None, param: str | None = None) -> bytes:
    detail = ErrorDetail(
        type=type,
        message=message,
        code=UNSET if code is None else code,
        doc_url=UNSET if code is None else f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
        param=UNSET if param is None else param,
    )
    return msgspec.json.encode(ErrorObject(error=detail))


def domain_error_response(error: DomainError) -> tuple[int, bytes]:
    if isinstance(error, ResourceMissing):
        status = 404
    elif isinstance(error, Conflict):
        status = 409
    else:
        status = 400
    return status, error_body(INVALID_REQUEST, error.message, error.code, error.param)


def idempotency_conflict_error(error: IdempotencyConflict) -> StripeError:
    if error.other_path is not None:
        message = (
            f"Keys for idempotent requests can only be used for the same endpoint they were first used for "
            f"('{error.other_path}'). Try using a key other than '{error.key}' if you meant to execute a "
            "different request."
        )
    else:
        differing = ", ".join(error.differences) or "the parameters"
        message = (
            "Keys for idempotent requests can only be used with the same parameters they were first used "
            f"with (these differ: {differing}). Try using a key other than '{error.key}' if you meant to "
            "execute a different request."
        )
    return StripeError(400, message, type="idempotency_error", should_retry=False)


RETRY_AFTER_S = "1"


def unavailable(message: str) -> StripeError:
    return StripeError(
        503,
        message,
        type="api_error",
        code="service_unavailable",
        headers={"Retry-After": RETRY_AFTER_S},
        should_retry=True,
    )


# The command did not run because of contention (a lock not granted within lock_timeout, a statement
# cancelled by statement_timeout, a deadlock or serialization failure): its transaction rolled back, so
# the same request may simply be sent again.
DATABASE_CONTENTION = (
    asyncpg.QueryCanceledError,  # 57014: statement_timeout
    asyncpg.LockNotAvailableError,  # 55P03: lock_timeout
    asyncpg.TransactionRollbackError,  # 40001 serialization failure, 40P01 deadlock, 40003 ...
)

# The database cannot be used right now (down, restarting, shutting down, failed over to a standby,
# out of connections or resources) or did not answer in time. Whatever was in flight rolled back, or,
# if the connection broke during COMMIT, may have committed: either way a retry with the same
# Idempotency-Key gives the one outcome.
DATABASE_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.OperatorInterventionError,  # class 57 (57P01 admin shutdown, 57P02 crash, 57P03 starting up)
    asyncpg.InsufficientResourcesError,  # class 53 (too many connections, disk full, out of memory)
    asyncpg.ReadOnlySQLTransactionError,  # 25006: connected to a standby (during a failover)
    asyncpg.IdleInTransactionSessionTimeoutError,  # 25P03
    asyncpg.InterfaceError,  # the connection closed under us, the pool is closing
    # A session the server terminated (its FATAL message processed, the end of the socket not yet) can be
    # handed out by the pool: its next statement fails with "cannot switch to state ...; another
    # operation is in progress". The pool discards it on release.
    asyncpg.InternalClientError,
    ConnectionError,
    OSError,  # includes TimeoutError: a pool acquire or a client-side command timeout
)


def translate(error: BaseException, request: web.Request) -> StripeError | None:
    """The StripeError for a known failure; None for an unexpected one (a 500)."""
    if isinstance(error, StripeError):
        return error
    if isinstance(error, DomainError):
        status, _ = domain_error_response(error)
        return StripeError(
            status, error.message, code=error.code, param=error.param, should_retry=status == 409
        )
    if isinstance(error, IdempotencyConflict):
        return idempotency_conflict_error(error)
    if isinstance(error, ConflictRetriesExhausted):
        return StripeError(
            409,
            "Too many concurrent changes to this object; please retry.",
            code="lock_timeout",
            should_retry=True,
        )
    if isinstance(error, web.RequestPayloadError):  # e.g. a corrupt gzip body or a broken chunked encoding
        return StripeError(400, "The request body could not be read (bad Content-Encoding or framing).")
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        return StripeError(413, "The request body is larger than the 1 MiB limit.", code="request_too_large")
    if isinstance(error, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(error.allowed_methods))
        return StripeError(
            405,
            f"The method {request.method[:20]} is not allowed for {request.path} (allowed: {allowed}).",
            headers={"Allow": allowed},
        )
    if isinstance(error, web.HTTPNotFound):
        return StripeError(404, f"Unrecognized request URL ({request.method}: {request.path}).")
    if isinstance(error, DATABASE_CONTENTION):  # before DATABASE_UNAVAILABLE: 57014 is in class 57
        return StripeError(
            429,
            "The request timed out waiting for the database; please retry.",
            type=INVALID_REQUEST,
            code="lock_timeout",
            headers={"Retry-After": RETRY_AFTER_S},
            should_retry=True,
        )
    if isinstance(error, (*DATABASE_UNAVAILABLE, asyncio.TimeoutError)):
        return unavailable("The ledger's database is unavailable right now; please retry shortly.")
    return None


def json_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as http_error:
        if http_error.status < 400:
            raise
        error = translate(http_error, request) or StripeError(http_error.status, http_error.reason)
    except Exception as exc:  # the one place every failure is mapped
        mapped = translate(exc, request)
        if mapped is None:
            log.error("unhandled_error", request_id=request.get(REQUEST_ID), exc_info=exc)
            mapped = StripeError(500, "An unexpected error occurred; it has been logged.", type="api_error")
        error = mapped
    request[ERROR_CODE] = error.code
    body = error_body(error.type, error.message, error.code, error.param)
    response = json_response(error.status, body, error.headers)
    if error.close_connection:
        response.force_close()
    return response

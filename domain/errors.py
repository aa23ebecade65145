"""Rejections raised by validation and by `decide`. The HTTP layer maps each kind to a Stripe error."""

from __future__ import annotations


class DomainError(Exception):
    """A command was rejected; nothing is appended."""

    code: str = "parameter_invalid"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidParameter(DomainError):
    """The request names a bad value (400 invalid_request_error)."""


class MissingParameter(DomainError):
    code = "parameter_missing"


class ResourceMissing(DomainError):
    """The object does not exist for this account and mode, or was deleted (404)."""

    code = "resource_missing"


class CurrencyMismatch(InvalidParameter):
    code = "currency_mismatch"


class BalanceOverflow(InvalidParameter):
    code = "balance_overflow"


class Conflict(DomainError):
    """The state changed in a way a retry may resolve (e.g. a concurrent create)."""

    code = "conflict"

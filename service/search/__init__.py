"""Customer search (GET /v1/customers/search): the query language (language.py: parse, page tokens) and
its compilation to SQL over the customers projection (sql.py: compile, find)."""

from ledgerd.service.search.language import (
    BIGINT_MAX,
    BIGINT_MIN,
    MAX_CLAUSES,
    MAX_QUERY_LENGTH,
    Clause,
    Query,
    decode_page,
    encode_page,
    parse,
)
from ledgerd.service.search.sql import Found, compile, escape_like, find

__all__ = [
    "BIGINT_MAX",
    "BIGINT_MIN",
    "MAX_CLAUSES",
    "MAX_QUERY_LENGTH",
    "Clause",
    "Found",
    "Query",
    "compile",
    "decode_page",
    "encode_page",
    "escape_like",
    "find",
    "parse",
]

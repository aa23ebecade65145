"""The document: its paths built from the table of operations (`operations.py`), its components from
the generated schemas (`responses.py`, `requests.py`) and the shared parameters (`parameters.py`).
Built once; ``GET /openapi.json`` serves the encoded bytes."""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from typing import Any, Final

import msgspec
from aiohttp import web

from ledgerd.service import forms
from ledgerd.service.config import Config
from ledgerd.service.openapi import parameters
from ledgerd.service.openapi.operations import Operation, operations
from ledgerd.service.openapi.parameters import (
    JSON,
    error_refs,
    header_refs,
    idempotency_header,
    path_parameter,
)
from ledgerd.service.openapi.requests import REQUEST_TYPES, request_schemas
from ledgerd.service.openapi.responses import RESPONSE_TYPES, response_schemas
from ledgerd.service.openapi.schemas import Schema, ref

OPENAPI_VERSION: Final[str] = "3.1.0"
JSON_SCHEMA_DIALECT: Final[str] = "https://json-schema.org/draft/2020-12/schema"
FORM: Final[str] = "application/x-www-form-urlencoded"

DESCRIPTION: Final[str] = """The OpenAPI 3.1 document of the whole HTTP API, served at ``GET /openapi.json`` (no auth).

Generated from the service's wire types (request params, response objects, list and search envelopes,
errors) with `msgspec.json.schema_components`, and from a table of operations. Limits come from the
modules that enforce them (`domain.validation`, `domain.money`, `service.params`, `service.forms`), so the
document cannot drift from the code silently: `tests/e2e/test_openapi.py` checks it against the router
and real responses, and `tests/e2e/test_schemathesis.py` fuzzes the running service with it.

Conventions of the wire format the document encodes:

* Request bodies are ``application/x-www-form-urlencoded`` with Stripe's bracket notation
  (``metadata[plan]=pro``, ``preferred_locales[0]=en``, ``expand[]=x``) or ``application/json``; both
  media types share one schema. In a form every value is a string (integers as decimal strings,
  booleans as ``true``/``false``); in JSON they may also be numbers and booleans.
* ``""`` (form) and ``null`` (JSON) mean *unset*: on create the parameter is ignored, on update a
  nullable field is cleared. Schemas therefore accept ``""`` and ``null`` exactly where the service does.
* Query parameters use the same bracket notation: ``created[gte]=...``, ``types[]=...``, ``expand[]=...``.

Stripe fidelity (issue 13):

* ``Stripe-Version`` (request header) selects the API version a request is answered at; without it the
  account's default (``ledgerd api-keys create --api-version``), else the latest. An unknown version is a
  400 "Invalid Stripe API version: X". Responses carry ``Stripe-Version``. This document shows the latest
  version's shapes; older versions differ as `service/versions.py` declares (before 2019-10-17 a
  customer's ``balance`` is ``account_balance``, in params too; before 2020-08-27 customers carry
  ``sources``, ``subscriptions`` and ``tax_ids``; before 2025-03-31.basil lists expand ``total_count``).
* ``Stripe-Account`` naming another account is a 403 ``platform_account_required`` (no Connect here).
* ``expand[]`` takes the paths each operation lists; others are 400 "This property cannot be expanded".
"""

# Nested objects and arrays use Stripe's bracket notation in a form: a[b]=1, a[0]=x, a[]=x.
BRACKET_PARAMS: Final[tuple[str, ...]] = (
    "address",
    "shipping",
    "invoice_settings",
    "metadata",
    "preferred_locales",
    "expand",
)
TAGS: Final[list[Schema]] = [
    {"name": "Customers"},
    {"name": "Customer balance transactions"},
    {"name": "Events"},
    {"name": "Webhook endpoints"},
    {"name": "Operations", "description": "Public: no API key needed."},
]
COMPONENT_NAMES: Final[dict[type[msgspec.Struct], str]] = {
    cls: name for name, cls in {**RESPONSE_TYPES, **REQUEST_TYPES}.items()
}


def request_body(op: Operation, request: type[msgspec.Struct], schemas: dict[str, Schema]) -> Schema:
    name = COMPONENT_NAMES[request]
    properties = schemas[name]["properties"]
    encoding = {param: {"style": "deepObject", "explode": True} for param in BRACKET_PARAMS if param in properties}
    form: Schema = {"schema": ref(name), "encoding": encoding}
    json: Schema = {"schema": ref(name)}
    if op.example is not None:
        form["examples"] = json["examples"] = {"typical": {"value": op.example}}
    return {"required": op.request_required, "content": {FORM: form, JSON: json}}


def ok_response(op: Operation) -> Schema:
    if isinstance(op.response, dict):
        schema = op.response
    else:
        schema = ref(op.response if isinstance(op.response, str) else COMPONENT_NAMES[op.response])
    return {
        "description": op.response_description,
        "headers": header_refs(*(parameters.REPLAY_HEADERS if op.idempotent else ())),
        "content": {op.media: {"schema": schema}},
    }


def operation_object(op: Operation, schemas: dict[str, Schema]) -> Schema:
    result: Schema = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    headers = [idempotency_header()] if op.idempotent else []
    if headers or op.query:
        result["parameters"] = [*headers, *op.query]
    if op.request is not None:
        result["requestBody"] = request_body(op, op.request, schemas)
    result["responses"] = {"200": ok_response(op), **error_refs(*op.errors)}
    if op.public:
        result["security"] = []
    return result


def paths(schemas: dict[str, Schema]) -> dict[str, Schema]:
    """The paths object, from the table: a path's parameters come from its template's ``{names}``."""
    result: dict[str, Schema] = {}
    for op in operations():
        if op.path not in result:
            names = re.findall(r"\{(\w+)\}", op.path)
            result[op.path] = {"parameters": [path_parameter(name) for name in names]} if names else {}
        if op.method in result[op.path]:
            raise ValueError(f"{op.method} {op.path} is in the table twice")
        result[op.path][op.method] = operation_object(op, schemas)
    return result


def build() -> dict[str, Any]:
    """A fresh copy of the document (`document()` caches one)."""
    requests = request_schemas()
    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": JSON_SCHEMA_DIALECT,
        "info": {
            "title": "ledgerd",
            "version": "0.1.0",
            "summary": "Event-sourced customer ledger, wire-compatible with Stripe's Customers, Customer "
            "Balance Transactions and Events API.",
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:8080", "description": "`make serve`"}],
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "tags": TAGS,
        "paths": paths(requests),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer sk_test_…` (a secret key; the mode follows the key).",
                },
                "basicAuth": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "HTTP Basic with the secret key as the user name and an empty password.",
                },
            },
            "schemas": {**response_schemas(), **requests},
            "responses": parameters.error_responses(),
            "headers": parameters.headers_component(),
        },
        "x-limits": {
            "max_body_bytes": next(f.default for f in dataclasses.fields(Config) if f.name == "max_body_bytes"),
            "max_params": forms.MAX_PARAMS,
            "max_depth": forms.MAX_DEPTH,
        },
    }


@functools.cache
def _cached() -> tuple[dict[str, Any], bytes]:
    doc = build()
    return doc, msgspec.json.encode(doc)


def document() -> dict[str, Any]:
    """The OpenAPI document (built once; a deep copy, so callers may mutate it)."""
    return copy.deepcopy(_cached()[0])


async def openapi_view(request: web.Request) -> web.Response:
    """``GET /openapi.json``: public, no API key."""
    return web.Response(body=_cached()[1], content_type=JSON)

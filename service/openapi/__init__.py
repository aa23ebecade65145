"""The OpenAPI 3.1 document of the whole HTTP API, served at ``GET /openapi.json`` (no auth).

Generated, not written: every schema comes from a wire type with `msgspec.json.schema_components`
(request params in `service.wire` and `service.webhooks.wire`, response objects in `projections.objects`
and `service.webhooks.wire`, the envelopes around them in `envelopes.py`, the error in `service.errors`),
and the paths from the table of operations in `operations.py`.

* envelopes.py   list pages, search result, customer history, status: frozen msgspec Structs
* schemas.py     schema building blocks; generation from types (renamed, tidied)
* responses.py   the response components, and which event type carries which `data`
* requests.py    the request body components, and what each body's `expand` can name
* parameters.py  path/query parameters, headers, error responses the operations share
* operations.py  the table: path, method, operationId, summary, request and response types, query, errors
* document.py    the document built from all of the above, and its view
"""

from __future__ import annotations

from ledgerd.service.openapi.document import document, openapi_view
from ledgerd.service.openapi.operations import OPENAPI_PATH
from ledgerd.service.openapi.parameters import MAX_IDEMPOTENCY_KEY

__all__ = ["MAX_IDEMPOTENCY_KEY", "OPENAPI_PATH", "document", "openapi_view"]

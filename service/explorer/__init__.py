"""The API explorer: a "Try it" page at ``GET /docs``, driven by ``/openapi.json`` at load time.

Static files (HTML, vanilla ES modules, CSS) live beside this module and ship in the wheel as package data;
`service.explorer.views` serves them under a strict Content-Security-Policy. No API key is needed to load
the page; the page itself sends the key the person types, to this service's own origin only.
"""

from ledgerd.service.explorer.views import DOCS_PATH, DOCS_PREFIX, add_routes

__all__ = ["DOCS_PATH", "DOCS_PREFIX", "add_routes"]

"""Serve the explorer page and its assets: exact content types, a strict CSP, ETag revalidation.

The page is ``GET /docs``; its assets are ``GET /docs/<name>`` for the files beside this module with a
known suffix (nothing else is reachable: names are looked up in a table, never joined onto a path).
The HTML refers to its assets relatively (``docs/explorer.js``), so the page also works behind a gateway
that mounts the service under a path prefix.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Final

from aiohttp import web

__all__ = ["CSP", "DOCS_PATH", "DOCS_PREFIX", "SECURITY_HEADERS", "add_routes", "assets"]

DOCS_PATH: Final[str] = "/docs"
DOCS_PREFIX: Final[str] = "/docs/"
INDEX: Final[str] = "index.html"

CONTENT_TYPES: Final[dict[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# Everything from this origin only, and nothing inline: no inline <script>, no style="" attributes, no
# eval. Trusted Types with no policy allowed means the page cannot assign HTML strings to the DOM at all
# (it builds every node with createElement/textContent). The page may not be framed, nor submit forms.
CSP: Final[str] = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)

SECURITY_HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
    # Revalidate every time (a 304 costs one round trip): asset names carry no version, and an upgraded
    # service must never run an old explorer.js against a new openapi.json.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@functools.cache
def assets() -> dict[str, Asset]:
    """Every servable file beside this module, read once on first use (never at import time)."""
    found: dict[str, Asset] = {}
    for entry in resources.files(__package__ or "ledgerd.service.explorer").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in CONTENT_TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            found[entry.name] = Asset(body, CONTENT_TYPES[suffix], etag)
    return found


def respond(request: web.Request, asset: Asset) -> web.Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    if asset.etag in (tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    return web.Response(body=asset.body, headers=headers)


async def docs_page(request: web.Request) -> web.Response:
    return respond(request, assets()[INDEX])


async def docs_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    asset = assets().get(name) if name != INDEX else None
    if asset is None:
        raise web.HTTPNotFound(reason=f"No such explorer file: {name!r}")
    return respond(request, asset)


def add_routes(app: web.Application) -> None:
    app.router.add_get(DOCS_PATH, docs_page)
    app.router.add_get(DOCS_PREFIX + "{name}", docs_asset)

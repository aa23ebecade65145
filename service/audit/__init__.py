"""Audit: prove from the log alone that every balance is right and that no event was altered, removed,
reordered or inserted.

`verify(pool)` (the `ledgerd verify` command) runs four checks and is clean only if all of them are:

* **chains** (chains.py) - in one REPEATABLE READ snapshot, every stream's hash chain and versions, set-based
  in the server from the stored canonical bytes (domain/log.py), and every stream row's head; in the same
  snapshot:
* **invariants** (invariants.py) - the ledger invariants in SQL, on the balance ledger and on the log itself.
* **digest** (digest.py; with `--digest FILE`) - the log up to the digest's position is exactly the log the
  digest was taken from.
* **drift** (drift.py) - the whole log replayed from zero into private tables and compared with the live
  projections row by row and field by field.

The findings are `Problem`s in `CheckResult`s (report.py). export.py writes the log as JSON Lines and checks
such a file offline; importer.py loads one into an empty store. The point-in-time reads (`as_of`, history,
`ledgerd balance-at`) are read models of one stream: service/pointintime.py and service/history.py.
"""

from __future__ import annotations

import os
import time

import asyncpg

from ledgerd.service.audit.chains import check_chains, check_stream_heads
from ledgerd.service.audit.digest import SQL_HORIZON, Digest, check_digest, take_digest
from ledgerd.service.audit.drift import check_drift
from ledgerd.service.audit.export import (
    ExportCheck,
    ExportLine,
    ExportSummary,
    ImportLine,
    export_jsonl,
    verify_export,
)
from ledgerd.service.audit.importer import ImportError_, ImportReport, import_jsonl
from ledgerd.service.audit.invariants import check_invariants
from ledgerd.service.audit.report import DEFAULT_LIMIT, CheckResult, Problem, Progress, VerifyReport

__all__ = [
    "DEFAULT_LIMIT",
    "SQL_HORIZON",
    "CheckResult",
    "Digest",
    "ExportCheck",
    "ExportLine",
    "ExportSummary",
    "ImportError_",
    "ImportLine",
    "ImportReport",
    "Problem",
    "Progress",
    "VerifyReport",
    "check_chains",
    "check_digest",
    "check_drift",
    "check_invariants",
    "check_stream_heads",
    "export_jsonl",
    "import_jsonl",
    "take_digest",
    "verify",
    "verify_export",
]


async def verify(
    pool: asyncpg.Pool,
    *,
    digest: Digest | None = None,
    drift: bool = True,
    limit: int = DEFAULT_LIMIT,
    progress: Progress | None = None,
    workers: int | None = None,
) -> VerifyReport:
    """All checks (see the module doc). `workers`: server processes for the set-based chain checks
    (default: one per CPU, at most 4; see `check_chains`)."""
    started = time.monotonic()
    report = VerifyReport()
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    workers = max(1, workers)
    async with pool.acquire() as conn:
        # One snapshot for the chains, the stream heads and the invariants; read-only, so it takes no
        # transaction id and never holds back anyone's gap-safe horizon.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            report.checks.append(await check_chains(conn, workers=workers, limit=limit, progress=progress))
            report.checks.append(await check_stream_heads(conn, limit=limit))
            report.checks.append(await check_invariants(conn, limit=limit))
        if digest is not None:
            report.checks.append(await check_digest(conn, digest, limit=limit, progress=progress))
    if drift:
        report.checks.append(await check_drift(pool, limit=limit, progress=progress))
    else:
        report.checks.append(CheckResult("drift", skipped=True))
    report.seconds = time.monotonic() - started
    return report



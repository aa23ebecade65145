"""Rebuild the projections from the event log; the replay that `verify`'s drift check also runs.

`rebuild(pool)` (the `ledgerd rebuild` command):

1. Shadow tables. `ledger_rebuild.<table>` for every projection table: `LIKE <live> INCLUDING ALL
   EXCLUDING INDEXES`, then the live table's indexes and index-backed constraints recreated under their
   **original names** (names are per schema, so they do not clash), so that after the swap the schema is
   exactly what the migrations built.
2. Bulk replay, while writers keep appending (`bulk_replay`): the whole log below the horizon
   (`(tx_id, position)` below the oldest running transaction, as `read_all` does), read from the
   canonical bytes, folded in memory by `projections.Fold` (the same `project` the live path runs on
   each command, one command at a time: see `projections.command_of`), the event feed copied into the
   shadow tables as it is produced and the folded tables at the end (COPY); then the indexes are built.
   What was appended meanwhile is folded on top of the same Fold and the rows it changed are upserted
   (`replay_into`).
3. Swap, in ONE transaction: `LOCK TABLE streams IN SHARE MODE` (every append takes ROW EXCLUSIVE on
   `streams` as its first write, so from here no append is in flight and none can start), then ACCESS
   EXCLUSIVE on the live projection tables; catch up every event appended since the bulk phase (no
   horizon needed: nothing is in flight); copy owner, grants and triggers; drop the live tables and move
   the shadow tables in. Writers block for the duration of this transaction only, and lose nothing: an
   event is either replayed here or appended after the swap, into the new tables.

   The locks are taken with a short `lock_timeout` and the whole swap is retried: a long read of a
   projection table must not hold writers back behind the swap's SHARE lock on `streams`, so the swap
   backs off and lets it finish.

Comparing the live projections with a fresh replay (bulk, then the tail, into a private schema) is
service/audit/drift.py's `check_drift`.

Modules: `shadow` (step 1), `bulk` (step 2's bulk replay), `replay` (the incremental replay through the
live rows: step 2's catch-up and step 3's tail), `swap` (`rebuild` itself and step 3).
"""

from __future__ import annotations

from ledgerd.service.rebuild.bulk import BULK_BATCH, bulk_replay
from ledgerd.service.rebuild.replay import (
    BATCH_SIZE,
    Progress,
    ReplayResult,
    apply_events,
    replay_into,
    replay_tail,
    write_changes,
)
from ledgerd.service.rebuild.shadow import (
    RebuildError,
    add_shadow_indexes,
    create_shadow_tables,
    live_schema,
    quote_ident,
)
from ledgerd.service.rebuild.swap import REBUILD_LOCK_ID, REBUILD_SCHEMA, RebuildReport, rebuild

__all__ = [
    "BATCH_SIZE",
    "BULK_BATCH",
    "REBUILD_LOCK_ID",
    "REBUILD_SCHEMA",
    "Progress",
    "RebuildError",
    "RebuildReport",
    "ReplayResult",
    "add_shadow_indexes",
    "apply_events",
    "bulk_replay",
    "create_shadow_tables",
    "live_schema",
    "quote_ident",
    "rebuild",
    "replay_into",
    "replay_tail",
    "write_changes",
]

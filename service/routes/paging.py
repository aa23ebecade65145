"""Cursor paging shared by the lists: newest first by log position, `limit` objects a page,
`starting_after` / `ending_before` an object of the same list. The statements are the projection's
(projections/reads.py `Listing`); this module only picks one and binds its arguments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from ledgerd.domain.errors import InvalidParameter
from ledgerd.projections.reads import Listing
from ledgerd.service import params

# Read from the lists' pool (service/app.py `create_pool(for_lists=True)`): the command path's connections
# plan every statement once, generically, which is wrong for a list statement whose filters and direction are
# parameters: a generic plan cannot drop a filter left out (`$3 IS NULL OR ...`) nor use the index of one
# given, and its guess at their selectivity traded the list's index order for a sort of every row matched.
# Planned for its values, a list statement gets the plan of the statement written for just this page.


@dataclass(frozen=True)
class Page:
    rows: list[asyncpg.Record]
    has_more: bool
    total_count: int | None  # what the filters match, whatever the page (when asked for)


def created_bounds(
    created: params.CreatedRange | None,
) -> tuple[int | None, int | None, int | None, int | None]:
    """The `created` filter as the statements take it: gt, gte, lt, lte (None: no bound)."""
    if created is None:
        return (None, None, None, None)
    return (created.gt, created.gte, created.lt, created.lte)


async def fetch_page(
    pool: asyncpg.Pool,
    listing: Listing,
    options: params.ListParams,
    where: Sequence[Any],
    cursor_scope: Sequence[Any] = (),
    *,
    with_total_count: bool = False,
) -> Page:
    """One page of the list and whether there is more beyond it, read from `pool` (the lists' pool). `where` is the statements' arguments
    before the sort key (account, livemode, then the filters); `cursor_scope` narrows which objects a
    cursor may name besides the account and mode (a cursor must be an object of this list)."""
    statements = listing.statements()
    backwards = options.ending_before is not None and options.starting_after is None
    cursor_id = options.ending_before if backwards else options.starting_after
    async with pool.acquire() as conn:
        total_count = (
            int(await conn.fetchval(statements[listing.count], *where)) if with_total_count else None
        )
        key: tuple[Any, ...] = (None,) * listing.key_width  # older than nothing: from the newest
        if cursor_id is not None:
            row = await conn.fetchrow(
                statements[listing.cursor], cursor_id, where[0], where[1], *cursor_scope
            )
            if row is None:
                raise InvalidParameter(
                    f"No such {listing.noun}: '{cursor_id}'",
                    param="ending_before" if backwards else "starting_after",
                    code="resource_missing",
                )
            key = tuple(row)
        rows = list(await conn.fetch(statements[listing.page], *where, *key, backwards, options.limit + 1))
    has_more = len(rows) > options.limit
    rows = rows[: options.limit]
    if backwards:
        rows.reverse()
    return Page(rows, has_more, total_count)


def within(created: int, bounds: params.CreatedRange) -> bool:
    return (
        (bounds.gt is None or created > bounds.gt)
        and (bounds.gte is None or created >= bounds.gte)
        and (bounds.lt is None or created < bounds.lt)
        and (bounds.lte is None or created <= bounds.lte)
    )


def page_of_items(
    items: list[dict[str, Any]], options: params.ListParams, noun: str
) -> tuple[list[dict[str, Any]], bool, int]:
    """The same paging over objects already in memory, newest first (the `as_of` lists, folded from the
    log): the page, whether there is more, and how many objects the `created` filter matches."""
    if options.created is not None:
        items = [item for item in items if within(item["created"], options.created)]
    ids = [item["id"] for item in items]
    start, stop = 0, len(items)
    if options.starting_after is not None:
        start = cursor_index(ids, options.starting_after, "starting_after", noun) + 1
    elif options.ending_before is not None:
        stop = cursor_index(ids, options.ending_before, "ending_before", noun)
        start = max(0, stop - options.limit)
    page = items[start : start + options.limit] if options.ending_before is None else items[start:stop]
    has_more = (start + len(page) < len(items)) if options.ending_before is None else start > 0
    return page, has_more, len(items)


def cursor_index(ids: list[str], cursor: str, param: str, noun: str) -> int:
    if cursor not in ids:
        raise InvalidParameter(f"No such {noun}: '{cursor}'", param=param, code="resource_missing")
    return ids.index(cursor)

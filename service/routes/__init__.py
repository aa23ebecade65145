"""HTTP mapping of the Stripe Customers, Customer Balance Transactions and Events endpoints, one module
per resource (customers, balance_transactions, events, operations), over the request plumbing they share
(plumbing.py) and the lists' cursor paging (paging.py). The SQL they run is the projections'
(projections/*.sql, projections/reads.py) or the search compiler's (service/search/sql.py)."""

from __future__ import annotations

from aiohttp import web

from ledgerd.service.routes import balance_transactions, customers, events, operations
from ledgerd.service.routes.balance_transactions import TRANSACTION_LIST_FILTERS
from ledgerd.service.routes.customers import CUSTOMER_LIST_FILTERS
from ledgerd.service.routes.events import EVENT_LIST_FILTERS
from ledgerd.service.routes.plumbing import MAX_IDEMPOTENCY_KEY

__all__ = [
    "CUSTOMER_LIST_FILTERS",
    "EVENT_LIST_FILTERS",
    "MAX_IDEMPOTENCY_KEY",
    "TRANSACTION_LIST_FILTERS",
    "routes",
]

# In this order: /v1/customers/search is matched before /v1/customers/{customer}.
routes: list[web.AbstractRouteDef] = [
    *customers.routes,
    *balance_transactions.routes,
    *operations.routes,
    *events.routes,
]

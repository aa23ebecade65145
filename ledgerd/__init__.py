"""ledgerd: an event-sourced customer ledger that speaks Stripe's wire protocol.

The code lives in four folders at the top of the repository (service/, domain/, projections/, migrations/);
this package holds a symlink to each, so they install and import as ledgerd.service, ledgerd.domain, ...
"""

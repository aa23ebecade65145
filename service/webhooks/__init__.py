"""Webhooks (issue 11): Stripe's /v1/webhook_endpoints, fan-out from the event log, signed at-least-once
delivery.

* endpoints.py   the Webhook Endpoints API (routes and params)
* dispatcher.py  feed -> one delivery row per (event, subscribed endpoint), gap-safe, one transaction
* delivery.py    workers: claim with a short lease, POST (no transaction open), record the attempt
* signing.py     Stripe-Signature and Standard Webhooks headers
* ssrf.py        which addresses may be delivered to (after DNS resolution and for IP literals)
* config.py      LEDGER_WEBHOOK_* settings
* service.py     the cleanup context that runs the dispatcher and the workers
"""

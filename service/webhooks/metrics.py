"""Webhook metrics, registered in the app's Prometheus registry (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SQL_OLDEST_UNDELIVERED = """
SELECT coalesce(extract(epoch FROM now() - min(event_recorded_at)), 0)::float8
FROM webhook_deliveries WHERE state = 'pending'
"""


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.fanned_out = Counter(
            "ledger_webhook_deliveries_created", "Deliveries fanned out from the event feed", registry=registry
        )
        self.attempts = Counter(
            "ledger_webhook_attempts",
            "Delivery attempts by outcome (succeeded, or the error class)",
            ["outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "ledger_webhook_attempt_duration_seconds",
            "Time from sending a webhook to its response (or error)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.oldest_undelivered = Gauge(
            "ledger_webhook_oldest_undelivered_seconds",
            "Age of the oldest event with a delivery still pending (delivery lag); 0 when none",
            registry=registry,
        )

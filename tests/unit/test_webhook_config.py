"""LEDGER_WEBHOOK_* settings: an ephemeral ledger's defaults (loopback receivers, retries within seconds)
apply to ephemeral mode only, and what the user sets wins."""

from __future__ import annotations

import ipaddress

import pytest

from ledgerd.service.webhooks.config import LIVE_SCHEDULE, TEST_SCHEDULE, WebhookConfig
from ledgerd.service.webhooks.ssrf import is_allowed

LOOPBACK_V4, LOOPBACK_V6 = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")


def test_production_defaults_refuse_loopback_and_retry_over_hours() -> None:
    config = WebhookConfig.from_env({})
    assert config.allow_cidrs == ()
    assert not is_allowed(LOOPBACK_V4, config.allow_cidrs) and not is_allowed(LOOPBACK_V6, config.allow_cidrs)
    assert (config.live_schedule, config.test_schedule) == (LIVE_SCHEDULE, TEST_SCHEDULE)


def test_ephemeral_defaults_allow_loopback_and_retry_within_seconds() -> None:
    config = WebhookConfig.from_env({}, ephemeral=True)
    assert is_allowed(LOOPBACK_V4, config.allow_cidrs) and is_allowed(LOOPBACK_V6, config.allow_cidrs)
    assert is_allowed(ipaddress.ip_address("127.8.9.10"), config.allow_cidrs)
    assert not is_allowed(ipaddress.ip_address("10.0.0.1"), config.allow_cidrs)
    assert config.schedule(livemode=False) == config.schedule(livemode=True) == (1, 2, 4)


@pytest.mark.parametrize("ephemeral", [False, True])
def test_what_the_user_sets_wins(ephemeral: bool) -> None:
    env = {"LEDGER_WEBHOOK_ALLOW_CIDRS": "10.0.0.0/8", "LEDGER_WEBHOOK_RETRY_SCHEDULE": "0.5,9"}
    config = WebhookConfig.from_env(env, ephemeral=ephemeral)
    assert config.allow_cidrs == (ipaddress.ip_network("10.0.0.0/8"),)
    assert config.schedule(livemode=False) == (0.5, 9)

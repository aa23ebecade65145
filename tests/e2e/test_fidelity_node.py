"""stripe-node 23.1.0, unmodified, exercising issue 13 against `ledgerd serve`: a client pinned to
2019-09-09 (`account_balance`), expand, total_count, an unknown version, Stripe-Account, email_invalid, a
test token. The SDK is installed from npm into tests/e2e/node (`npm ci --prefix tests/e2e/node`; .ci/run
does it). In CI (CI set) a missing node or SDK is a failure; elsewhere the test skips, saying why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ledgerd.service import versions
from tests.e2e.test_fidelity import new_key
from tests.support.server import Server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(server_process: Server) -> Server:
    """stripe-node drives a real `ledgerd serve` process (kept: these tests need node_modules, absent on the box where the rest of tests/e2e moved in-process)."""
    return server_process


NODE_DIR = Path(__file__).parent / "node"


def node_or_skip() -> str:
    node = shutil.which("node")
    missing = (
        "no node on PATH"
        if node is None
        else "stripe-node is not installed (npm ci --prefix tests/e2e/node)"
        if not (NODE_DIR / "node_modules" / "stripe" / "package.json").exists()
        else None
    )
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    assert node is not None
    return node


def test_stripe_node_pinned_to_an_old_version_and_the_fidelity_features(server: Server) -> None:
    node = node_or_skip()
    key = new_key(server, "--default-currency", "usd")
    done = subprocess.run(
        [node, str(NODE_DIR / "fidelity.mjs")],
        env={**os.environ, "LEDGER_BASE_URL": server.base_url, "LEDGER_KEY": key},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=NODE_DIR,
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout)
    old = seen["old"]
    assert old["version"] == "2019-09-09"
    assert old["customer"]["account_balance"] == -500 and "balance" not in old["customer"]
    assert old["customer"]["currency"] == "usd" and old["customer"]["sources"]["data"] == []
    latest = seen["latest"]
    assert latest["version"] == versions.LATEST and latest["customer"]["balance"] == -500
    assert latest["customer"]["invoice_credit_balance"] == {"usd": 500}
    assert latest["customer"]["tax"]["automatic_tax"] == "unrecognized_location"
    assert latest["customer"]["tax_ids"]["data"] == []
    assert seen["entry"]["customer"]["object"] == "customer" and seen["entry"]["customer"]["balance"] == -300
    assert seen["listed_customers"] == [old["customer"]["id"]] * 2
    assert seen["search_total"] == 1
    assert seen["bad_version"]["status"] == 400
    assert seen["bad_version"]["message"] == "Invalid Stripe API version: 2019-09-10"
    assert (seen["stripe_account"]["type"], seen["stripe_account"]["status"]) == (
        "StripePermissionError",
        403,
    )
    assert seen["stripe_account"]["code"] == "platform_account_required"
    assert (seen["email"]["code"], seen["email"]["param"]) == ("email_invalid", "email")
    assert seen["expand"]["param"] == "expand"
    assert seen["expand"]["message"] == "This property cannot be expanded (metadata)."
    assert seen["token"] == "customer"
    assert seen["count_after"] == 2  # the refused requests wrote nothing

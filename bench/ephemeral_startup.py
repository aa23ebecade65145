"""Start-up time of `ledgerd serve --ephemeral` and the per-test overhead of the pytest plugin.

    .venv/bin/python -m bench.ephemeral_startup [--warm-runs 5] [--tests 50] [--append bench/EPHEMERAL_RESULTS.md]

* cold: a fresh template cache (initdb + migrations + copy + start); warm: the cached template (copy +
  start). Measured from spawning the process to the first answered request (`LEDGER_URL` printed and a
  customer listed), then SIGTERM until the process has exited and deleted its directory.
* per test: one generated pytest session (the plugin's own server) of 2N interleaved tests that each
  create one customer through the SDK, half on `stripe_client` (a fresh account per test), half on one
  shared key (the baseline); each test's setup + call + teardown timed by a conftest hook.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

SUITE = '''
import pytest, stripe

@pytest.fixture(scope="session")
def shared_client(ledger):
    return stripe.StripeClient(ledger.key, base_addresses={{"api": ledger.url}})

@pytest.mark.parametrize("i", range({n}))
@pytest.mark.parametrize("kind", ["fresh", "shared"])
def test_one_customer(request, kind, i):
    client = request.getfixturevalue("stripe_client" if kind == "fresh" else "shared_client")
    assert client.v1.customers.create({{"name": str(i)}}).id.startswith("cus_")
'''


def start_once(cache: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["LEDGER_CACHE_DIR"] = str(cache)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "ledgerd.service.cli", "serve", "--ephemeral", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    facts: dict[str, str] = {}
    while len(facts) < 3:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("serve --ephemeral exited early")
        name, _, value = line.strip().partition("=")
        facts[name] = value
    request = urllib.request.Request(
        facts["LEDGER_URL"] + "/v1/customers", headers={"Authorization": f"Bearer {facts['LEDGER_KEY']}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        json.loads(response.read())
    elapsed = time.perf_counter() - started
    process.terminate()
    process.wait(timeout=30)
    return elapsed


TIMING = '''
import json, time, pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    started = time.perf_counter()
    yield
    with open({report!r}, "a") as out:
        out.write(json.dumps([item.name, time.perf_counter() - started]) + "\\n")
'''


def per_test_ms(n: int, workdir: Path) -> dict[str, list[float]]:
    """One pytest session of 2n interleaved tests; each test's setup + call + teardown time, by kind."""
    suite = Path(tempfile.mkdtemp(prefix="suite-", dir=workdir))
    report = suite / "times.jsonl"
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider -q -p no:asyncio\n")
    (suite / "conftest.py").write_text(TIMING.format(report=str(report)))
    (suite / "test_generated.py").write_text(SUITE.format(n=n))
    subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(suite / "pytest.ini"), str(suite)],
        check=True,
        stdout=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LEDGER_URL")},
    )
    times: dict[str, list[float]] = {"fresh": [], "shared": []}
    for line in report.read_text().splitlines():
        name, seconds = json.loads(line)
        times["fresh" if "fresh" in name else "shared"].append(seconds * 1000)
    return times


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warm-runs", type=int, default=5)
    parser.add_argument("--tests", type=int, default=50)
    parser.add_argument("--append", type=Path, help="append the results as a section of this Markdown file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ledgerd-bench-") as scratch:
        cache = Path(scratch) / "cache"
        cold = start_once(cache)
        warm = [start_once(cache) for _ in range(args.warm_runs)]
        os.environ["LEDGER_CACHE_DIR"] = str(cache)  # the suite starts warm too
        times = per_test_ms(args.tests, Path(scratch))
    fresh_ms = statistics.median(times["fresh"][1:])  # the first test of a session pays for imports
    base_ms = statistics.median(times["shared"][1:])

    lines = [
        "",
        "## Ephemeral ledger: start-up and per-test overhead (issue 15)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}, {platform.machine()} "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}. "
        "`python -m bench.ephemeral_startup` (bench/ephemeral_startup.py says what is timed).",
        "",
        "| start-up (spawn → first answered request) | seconds |",
        "|---|---|",
        f"| cold (template built: initdb + migrations) | {cold:.2f} |",
        f"| warm, median of {len(warm)} (min to max) | {statistics.median(warm):.2f} "
        f"({min(warm):.2f} to {max(warm):.2f}) |",
        "",
        f"| per test (one pytest session, {args.tests} of each kind, interleaved) | median ms | p90 ms |",
        "|---|---|---|",
        *(
            f"| {label} | {statistics.median(times[kind][1:]):.2f} | "
            f"{statistics.quantiles(times[kind][1:], n=10)[-1]:.2f} |"
            for kind, label in (("fresh", "`stripe_client` on a fresh key"), ("shared", "one shared key (baseline)"))
        ),
        "",
        f"Per-test time (setup + call + teardown: one customer created through the SDK), fresh account / "
        f"shared-key baseline, same session: {fresh_ms / base_ms:.2f}. A fresh account is a hash of its key, "
        "nothing is created for it; what a fresh key costs is a new StripeClient, i.e. a new HTTP connection. "
        "Other sessions shared the 2 CPUs.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.append:
        with open(args.append, "a") as out:
            out.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

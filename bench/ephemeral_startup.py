"""Start-up time of `ledgerd serve --ephemeral` and the per-test overhead of the pytest plugin.

    .venv/bin/python -m bench.ephemeral_startup [--warm-runs 5] [--tests 50] [--append bench/RESULTS.md]

* cold: a fresh template cache (initdb + migrations + copy + start); warm: the cached template (copy +
  start). Measured from spawning the process to the first answered request (`LEDGER_URL` printed and a
  customer listed), then SIGTERM until the process has exited and deleted its directory.
* per test: two generated suites of N tests that each create one customer through `stripe_client`, one on
  a fresh account per test (the plugin's `ledger_key`), the baseline on one shared key; each run with N and
  with 1 test, so (T_N - T_1) / (N - 1) is the cost of one test without pytest's and the server's start-up.
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

FRESH = '''
import pytest

@pytest.mark.parametrize("i", range({n}))
def test_one_customer(stripe_client, i):
    assert stripe_client.v1.customers.create({{"name": str(i)}}).id.startswith("cus_")
'''
SHARED = '''
import pytest, stripe

@pytest.fixture(scope="session")
def shared_client(ledger):
    return stripe.StripeClient(ledger.key, base_addresses={{"api": ledger.url}})

@pytest.mark.parametrize("i", range({n}))
def test_one_customer(shared_client, i):
    assert shared_client.v1.customers.create({{"name": str(i)}}).id.startswith("cus_")
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


def run_suite(source: str, n: int, workdir: Path) -> float:
    suite = workdir / f"suite_{abs(hash(source)) % 10_000}_{n}"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider -q\n")
    (suite / "test_generated.py").write_text(source.format(n=n))
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(suite / "pytest.ini"), str(suite)],
        check=True,
        stdout=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LEDGER_URL")},
    )
    return time.perf_counter() - started


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
        os.environ["LEDGER_CACHE_DIR"] = str(cache)  # the suites start warm too
        times = {}
        for label, source in (("fresh account per test", FRESH), ("one shared key (baseline)", SHARED)):
            one = statistics.median(run_suite(source, 1, Path(scratch)) for _ in range(2))
            many = run_suite(source, args.tests + 1, Path(scratch))
            times[label] = (one, many, (many - one) / args.tests * 1000)

    fresh_ms = times["fresh account per test"][2]
    base_ms = times["one shared key (baseline)"][2]
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
        f"| pytest suite (one worker) | 1 test, s | {args.tests + 1} tests, s | per test, ms |",
        "|---|---|---|---|",
        *(f"| {label} | {one:.2f} | {many:.2f} | {per:.1f} |" for label, (one, many, per) in times.items()),
        "",
        f"A fresh account per test costs {fresh_ms / base_ms:.2f} times the per-test time of the shared-key "
        "baseline (same run): an account is a hash of its key, nothing is created for it.",
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

"""Peer: the same command with the `eventsourcing` library (pyeventsourcing) on its PostgreSQL
persistence module (`eventsourcing.postgres`, default recorder), on the same PostgreSQL server.

The command is AdjustBalance as the library would have it: load the account aggregate from its
events (`repository.get`, no snapshots, no cache), call `adjust(...)`, `save()` the new event.
N threads run it back to back on accounts drawn at random from a pre-created set, for a fixed time.
A version conflict (two threads on one account) is retried, as our service retries, and counted.

    python -m bench.baselines.peer_eventsourcing seed --accounts 10000 --ids-file F   (env: POSTGRES_*)
    python -m bench.baselines.peer_eventsourcing run --ids-file F --threads N --duration S

Prints one line `BENCH_JSON {...}` with commands, duration, latency percentiles and errors. It runs
in-process (no HTTP, no JSON over the wire), which flatters the peer against our HTTP figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import threading
import time
import uuid
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import RecordConflictError


class Account(Aggregate):
    @event("Opened")
    def __init__(self, email: str, currency: str) -> None:
        self.email = email
        self.currency = currency
        self.balance = 0

    @event("BalanceAdjusted")
    def adjust(self, transaction_id: str, amount: int, currency: str, description: str) -> None:
        self.balance += amount


class Ledger(Application[uuid.UUID]):
    pass


def make_app(threads: int) -> Ledger:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_POOL_SIZE": str(max(threads, 1)),
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_PASSWORD": os.environ.get("POSTGRES_PASSWORD", ""),
        "CREATE_TABLE": "y",
    }
    return Ledger(env=env)


def seed(args: argparse.Namespace) -> None:
    app = make_app(1)
    ids: list[str] = []
    batch: list[Account] = []
    for n in range(args.accounts):
        account = Account(email=f"peer{n}@example.com", currency="usd")
        batch.append(account)
        ids.append(str(account.id))
        if len(batch) == 1000:
            app.save(*batch)
            batch = []
    if batch:
        app.save(*batch)
    with open(args.ids_file, "w") as fh:
        fh.write("\n".join(ids) + "\n")
    app.close()
    print(f"BENCH_JSON {json.dumps({'accounts': len(ids)})}", flush=True)


def run(args: argparse.Namespace) -> None:
    with open(args.ids_file) as fh:
        ids = [uuid.UUID(line.strip()) for line in fh if line.strip()]
    app = make_app(args.threads)
    latencies: list[list[float]] = [[] for _ in range(args.threads)]
    conflicts = [0] * args.threads
    errors = [0] * args.threads
    first_error: list[str] = []
    start = threading.Barrier(args.threads + 1)
    stop_at = [0.0]

    def worker(n: int) -> None:
        rng = random.Random(n * 7919 + os.getpid())
        mine = latencies[n]
        start.wait()
        while time.monotonic() < stop_at[0]:
            account_id = ids[rng.randrange(len(ids))]
            t0 = time.perf_counter()
            for _attempt in range(8):
                try:
                    account = app.repository.get(account_id)
                    account.adjust(
                        transaction_id=uuid.uuid4().hex, amount=100, currency="usd", description="bench"
                    )
                    app.save(account)
                    break
                except RecordConflictError:
                    conflicts[n] += 1
                except Exception as error:  # counted and reported
                    errors[n] += 1
                    if not first_error:
                        first_error.append(repr(error))
                    break
            else:
                errors[n] += 1
                continue
            mine.append(time.perf_counter() - t0)

    workers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(args.threads)]
    for thread in workers:
        thread.start()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    stop_at[0] = t0 + args.duration
    start.wait()
    for thread in workers:
        thread.join(args.duration + 30)
    wall = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    app.close()
    all_latencies = sorted(x for per in latencies for x in per)

    def pct(p: float) -> float:
        if not all_latencies:
            return 0.0
        return all_latencies[min(len(all_latencies) - 1, int(p / 100 * len(all_latencies)))] * 1e6

    result: dict[str, Any] = {
        "requests": len(all_latencies),
        "duration_us": int(wall * 1e6),
        "errors": sum(errors),
        "conflicts": sum(conflicts),
        "p50_us": pct(50),
        "p99_us": pct(99),
        "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "first_error": first_error[0] if first_error else None,
    }
    print(f"BENCH_JSON {json.dumps(result)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--accounts", type=int, default=10_000)
    s.add_argument("--ids-file", required=True)
    s.set_defaults(func=seed)
    r = sub.add_parser("run")
    r.add_argument("--ids-file", required=True)
    r.add_argument("--threads", type=int, required=True)
    r.add_argument("--duration", type=float, required=True)
    r.set_defaults(func=run)
    args = parser.parse_args()
    args.func(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

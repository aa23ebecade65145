"""py-spy's collapsed stacks of the profiled server: which library or code path each sample is in."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from bench.settings import ROOT

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short_file(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", str(ROOT) + "/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path


def parse_folded(text: str) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for raw in stack.split(";"):
            m = FRAME.match(raw.strip())
            if m:
                frames.append((m.group("func"), short_file(m.group("file"))))
            else:
                frames.append((raw.strip(), ""))
        stacks.append((frames, int(count)))
    return stacks


SEND_LEAVES = ("write", "_write_send", "writelines", "_write_sendmsg", "send", "sendall")


def active_bucket(frames: list[tuple[str, str]]) -> str:
    """What the server was doing in one sample: a socket syscall (by who made it), or the innermost
    library frame that is not asyncio's own plumbing."""
    func, file = frames[-1] if frames else ("?", "")
    name = func.rsplit(".", 1)[-1]
    files = [fl for _, fl in frames]
    if "selector_events.py" in file and name in SEND_LEAVES:
        if any("asyncpg/" in fl for fl in files):
            return "socket send to PostgreSQL (asyncpg; kernel time, incl. handing the core to the backend)"
        if any("aiohttp/" in fl for fl in files):
            return "socket send of the HTTP response (aiohttp; kernel loopback TCP)"
        return "socket send (other)"
    if "selector_events.py" in file and name.startswith("_read_ready"):
        return "socket receive (recv syscalls)"
    if file.endswith("selectors.py"):
        return "epoll_wait (event loop waiting)"
    for _, fl in reversed(frames):  # innermost frame that belongs to a library or to us decides
        owner = next((label for prefix, label in OWNERS if fl.startswith(prefix)), None)
        if owner:
            return owner
    return "asyncio event loop and other stdlib (scheduling, callbacks, task steps)"


OURS = "our code (service/, domain/, projections/; msgspec, hashlib, secrets calls included)"
OWNERS = (
    ("asyncpg/", "asyncpg in Python/Cython (protocol, statement cache, record decoding, pool)"),
    ("aiohttp/", "aiohttp (HTTP parsing, routing, response headers)"),
    ("multidict/", "aiohttp (HTTP parsing, routing, response headers)"),
    ("yarl/", "aiohttp (HTTP parsing, routing, response headers)"),
    ("structlog/", "structlog access log line (JSON rendering, write)"),
    ("prometheus_client/", "Prometheus metrics"),
    ("service/", OURS),
    ("domain/", OURS),
    ("projections/", OURS),
)


# Inclusive time of our own code paths: a sample counts if any frame matches (function name, file suffix).
CODE_PATHS = (
    (
        "command path in total (commands.handle: read, decide, write, respond)",
        "handle",
        "service/commands/handle.py",
    ),
    ("  round trip 1: the read statement (PostgresConnection.read)", "read", "service/store/postgres.py"),
    (
        "  customer state (plan.customer_state: snapshot decode, or a fold of events)",
        "customer_state",
        "service/commands/plan.py",
    ),
    ("    evolve (fold)", "evolve", "domain/customer.py"),
    (
        "  decide and plan (plan.decide_and_plan: decider, chain, projection rows)",
        "decide_and_plan",
        "service/commands/plan.py",
    ),
    ("    hash chain (chain_links: canonical bytes + sha256)", "chain_links", "domain/log.py"),
    ("    projection rows (projections.project)", "project", "projections/__init__.py"),
    ("  round trip 2: the write statement (PostgresConnection.write)", "write", "service/store/postgres.py"),
    ("    its arguments (postgres.write_arguments)", "write_arguments", "service/store/postgres.py"),
    ("  group commit batches (GroupCommitter.run_batch)", "run_batch", "service/commands/group_commit.py"),
    ("  pool acquire and release (PostgresEventStore.connection)", "connection", "service/store/postgres.py"),
    ("response (routes.plumbing.outcome_response)", "outcome_response", "service/routes/plumbing.py"),
    ("request body decoding (routes.plumbing.read_params)", "read_params", "service/routes/plumbing.py"),
    ("auth (authenticate)", "authenticate", "service/auth.py"),
    (
        "the route handler in total (routes.balance_transactions.create_balance_transaction)",
        "create_balance_transaction",
        "service/routes/balance_transactions.py",
    ),
)


def frame_name(func: str) -> str:
    return func.rsplit(".", 1)[-1]


def analyse_profile(folded: str) -> dict[str, Any]:
    stacks = parse_folded(folded)
    total = sum(count for _, count in stacks)
    if not total:
        return {"total": 0}
    leaf: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    paths: Counter[str] = Counter()
    for frames, count in stacks:
        func, file = frames[-1] if frames else ("?", "")
        leaf[f"{func} ({file})"] += count
        buckets[active_bucket(frames)] += count
        for label, fname, fsuffix in CODE_PATHS:
            if any(frame_name(f) == fname and fl.endswith(fsuffix) for f, fl in frames):
                paths[label] += count
    return {"total": total, "leaf": leaf.most_common(15), "libs": buckets.most_common(), "paths": paths}

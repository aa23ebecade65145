"""What a run has started and where: the database URLs, the processes and their ports, the API key, the
seeded ids. Filled in step by step by the harness; read by the cells, checks and the profile."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.processes import Children
from bench.settings import Settings


@dataclass
class Setup:
    settings: Settings
    tmp: Path
    pgbench: str
    children: Children = field(default_factory=Children)
    # database
    pg: Any = None  # EmbeddedPostgres when embedded
    pg_stop: Callable[[], None] | None = None
    external_dbs: list[str] = field(default_factory=list)
    admin_url: str = ""
    url: str = ""
    pgb_url: str = ""
    peer_url: str = ""
    postmaster_pid: int | None = None
    pgss: bool = False  # pg_stat_statements is available
    # services: `ledgerd serve`, the bare baseline app, a second `ledgerd serve` with group commit off
    server: subprocess.Popen[bytes] | None = None
    bare: subprocess.Popen[bytes] | None = None
    solo: subprocess.Popen[bytes] | None = None
    port: int = 0
    bare_port: int = 0
    solo_port: int = 0
    key: str = ""
    # seeded data
    ids: list[str] = field(default_factory=list)

    @property
    def ids_file(self) -> Path:
        return self.tmp / "customer_ids.txt"

    @property
    def peer_ids_file(self) -> Path:
        return self.tmp / "peer_ids.txt"

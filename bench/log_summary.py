"""Medians and same-run ratios from a `make bench` log (its per-cell lines), for a run whose report was not
written (the 2026-12-03 09:54 run crashed rendering its profile section: see bench/runs/).

    python -m bench.log_summary bench/runs/2026-12-03-0954-7d5eece.log
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import defaultdict

CELL = re.compile(
    r"rep (\d+) (\S+)\s+c=(\d+)\s+(\d+)/s\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms\s+errors (\d+).*box busy (\d+) %"
)
RATIOS = (
    ("spread", "bare_crud"),
    ("spread", "pgbench"),
    ("spread", "peer"),
    ("hot", "spread"),
    ("spread", "spread_solo"),
    ("hot", "hot_solo"),
    ("retrieve", "bare_select"),
    ("bare_crud", "pgbench"),
)
Cell = tuple[int, float, float, int, int]  # 2xx/s, p50 ms, p99 ms, errors, box busy %


def read(path: str) -> dict[tuple[str, int], list[Cell]]:
    cells: defaultdict[tuple[str, int], list[Cell]] = defaultdict(list)
    with open(path) as lines:
        for line in lines:
            if m := CELL.search(line):
                _, kind, clients, rate, p50, p99, errors, busy = m.groups()
                cells[(kind, int(clients))].append((int(rate), float(p50), float(p99), int(errors), int(busy)))
    return cells


def main(path: str) -> None:
    cells = read(path)

    def median(kind: str, clients: int, column: int = 0) -> float:
        return statistics.median(cell[column] for cell in cells[(kind, clients)])

    print("| scenario | clients | 2xx/s median (min-max) | p50 ms | p99 ms | errors | box busy |")
    print("|---|---|---|---|---|---|---|")
    for kind in sorted({kind for kind, _ in cells}):
        for clients in (1, 16, 64):
            if (kind, clients) in cells:
                rates = [cell[0] for cell in cells[(kind, clients)]]
                errors = sum(cell[3] for cell in cells[(kind, clients)])
                print(
                    f"| {kind} | {clients} | {median(kind, clients):,.0f} ({min(rates):,}-{max(rates):,})"
                    f" | {median(kind, clients, 1):.2f} | {median(kind, clients, 2):.1f} | {errors}"
                    f" | {median(kind, clients, 4):.0f} % |"
                )
    print()
    print("| ratio (same repetition, median (min-max)) | c=1 | c=16 | c=64 |")
    print("|---|---|---|---|")
    for a, b in RATIOS:
        row = []
        for clients in (1, 16, 64):
            pairs = zip(cells[(a, clients)], cells[(b, clients)], strict=True)
            ratios = [100 * x[0] / y[0] for x, y in pairs]
            row.append(f"{statistics.median(ratios):.0f} % ({min(ratios):.0f}-{max(ratios):.0f})")
        print(f"| {a} / {b} | " + " | ".join(row) + " |")
    print()
    for kind in ("create", "spread", "hot", "retrieve", "list"):
        if (kind, 64) in cells:
            tails = [cell[2] / cell[1] for cell in cells[(kind, 64)]]
            print(f"- p99 / p50 at 64 clients, {kind}: {statistics.median(tails):.1f}x ({min(tails):.1f}-{max(tails):.1f})")


if __name__ == "__main__":
    main(sys.argv[1])

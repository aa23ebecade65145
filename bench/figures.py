"""How figures are summarised and printed: medians over repetitions, min-max ranges, ms and per cent."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}{unit}"
    return f"{value:,.{digits}f}{unit}"


def fmt_ms(us: float | None) -> str:
    if us is None:
        return "n/a"
    ms = us / 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"


def fmt_pct(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f} %"


def med_range(values: Sequence[float | None], digits: int = 0, scale: float = 1.0, suffix: str = "") -> str:
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "n/a"
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt(m, digits) + suffix
    return f"{fmt(m, digits)}{suffix} ({fmt(min(vals), digits)}-{fmt(max(vals), digits)})"

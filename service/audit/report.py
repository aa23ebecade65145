"""What the audit checks report: a `Problem` names one finding, a `CheckResult` is one check's outcome,
a `VerifyReport` all of `verify`'s checks. `Progress` is the callback the long checks report to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# progress(stage, done, total): total is None when unknown
Progress = Callable[[str, int, int | None], None]

DEFAULT_LIMIT = 50  # problems reported per check


@dataclass
class Problem:
    check: str  # chains | streams | invariants | digest | drift | export
    kind: str  # broken_link, version_gap, head_mismatch, balance_mismatch, row_drift, ...
    message: str
    stream_id: str | None = None
    version: int | None = None
    event_id: str | None = None
    expected: Any = None
    found: Any = None
    table: str | None = None
    key: str | None = None
    fields: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}


@dataclass
class CheckResult:
    name: str
    ok: bool = True
    skipped: bool = False
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False  # more problems than reported

    def add(self, problem: Problem, limit: int) -> None:
        self.ok = False
        if len(self.problems) < limit:
            self.problems.append(problem)
        else:
            self.truncated = True

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"name": self.name, "ok": self.ok, "seconds": round(self.seconds, 3)}
        if self.skipped:
            result["skipped"] = True
        result.update(self.stats)
        result["problems"] = [problem.to_dict() for problem in self.problems]
        if self.truncated:
            result["more_problems_not_shown"] = True
        return result


@dataclass
class VerifyReport:
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def problems(self) -> list[Problem]:
        return [problem for check in self.checks for problem in check.problems]

    def check(self, name: str) -> CheckResult:
        return next(check for check in self.checks if check.name == name)

    def to_dict(self) -> dict[str, Any]:
        problems = self.problems
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "first_problem": problems[0].to_dict() if problems else None,
            "checks": [check.to_dict() for check in self.checks],
        }

    def summary(self) -> str:
        lines = []
        for check in self.checks:
            if check.skipped:
                status = "skipped"
            else:
                status = (
                    "ok" if check.ok else f"FAILED ({len(check.problems)}{'+' if check.truncated else ''})"
                )
            detail = ", ".join(
                f"{key} {value}" for key, value in check.stats.items() if not isinstance(value, dict)
            )
            lines.append(f"{check.name:<11} {status:<12} {detail} [{check.seconds:.2f} s]")
            lines.extend(f"  - {problem.message}" for problem in check.problems)
            if check.truncated:
                lines.append("  - ... more problems not shown")
        lines.append(f"verify: {'OK' if self.ok else 'FAILED'} in {self.seconds:.2f} s")
        return "\n".join(lines)


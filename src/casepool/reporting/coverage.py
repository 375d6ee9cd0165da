"""Data coverage from the warehouse: which organisations submitted for which periods (counts only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SYNTHETIC_SUFFIX = "(synthetic)"


@dataclass
class Coverage:
    """Active submissions per organisation and period: never their rows or their contents."""

    organisations: list[tuple[str, str]] = field(default_factory=list)  # (code, name)
    submissions: dict[tuple[str, str], int] = field(default_factory=dict)  # (org, period) -> n

    @property
    def periods(self) -> list[str]:
        return sorted({period for _, period in self.submissions})

    def period_completeness(self, period: str) -> float:
        """Share of the registered organisations with an active submission for `period`."""
        orgs = [org for org, _ in self.organisations]
        if not orgs:
            return 0.0
        return sum(1 for org in orgs if self.submissions.get((org, period), 0) > 0) / len(orgs)

    def organisation_completeness(self, org: str) -> float:
        """Share of the periods seen in the warehouse for which `org` has an active submission."""
        periods = self.periods
        if not periods:
            return 0.0
        return sum(1 for p in periods if self.submissions.get((org, p), 0) > 0) / len(periods)

    @property
    def synthetic(self) -> bool:
        """True when an organisation was registered by `casepool demo` as synthetic."""
        return any(name.strip().endswith(SYNTHETIC_SUFFIX) for _, name in self.organisations)


def read_coverage(warehouse: str | Path) -> Coverage:
    """Organisations and their active submissions per period, read-only."""
    from casepool.warehouse.store import open_warehouse

    with open_warehouse(warehouse, read_only=True) as con:
        organisations = [
            (str(org), str(name))
            for org, name in con.execute(
                "SELECT org, name FROM organisations ORDER BY org"
            ).fetchall()
        ]
        counts = con.execute(
            "SELECT org, period, count(*) FROM active_submissions GROUP BY org, period"
        ).fetchall()
    submissions = {(str(o), str(p)): int(n) for o, p, n in counts}
    known = {code for code, _ in organisations}
    # A submission whose organisation is not registered (never from ingest) still shows, by code.
    organisations += [(o, o) for o in sorted({o for o, _ in submissions} - known)]
    return Coverage(organisations, submissions)

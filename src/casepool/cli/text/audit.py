"""`casepool audit` over publication folders on a terminal: one line per finding and a verdict."""

from __future__ import annotations

from casepool.publishing.audit_release import ReleaseAudit, ReleaseFinding


def _attacker(name: str, lang: str) -> str:
    from casepool.core.i18n import render

    if name == "outsider":
        return render("audit-attacker-outsider", lang)
    return render("audit-attacker-insider", lang, name=name)


def finding_line(finding: ReleaseFinding, report: ReleaseAudit, lang: str) -> str:
    from casepool.core.i18n import render

    verdict = render(
        f"audit-verdict-{finding.verdict}",
        lang,
        width=report.protection_interval,
        k_minus_one=report.k - 1,
    )
    upper = render("audit-unbounded", lang) if finding.upper is None else finding.upper
    return render(
        "audit-release-line",
        lang,
        cell=finding.label(),
        status=finding.conf_status,
        tables=", ".join(finding.tables),
        attacker=_attacker(finding.attacker, lang),
        lower=finding.lower,
        upper=upper,
        verdict=verdict,
    )


def render_release_audit(report: ReleaseAudit, lang: str) -> str:
    """The findings, one a line, then the verdict."""
    from casepool.core.i18n import render

    folders = ", ".join(report.folders)
    lines = [finding_line(f, report, lang) for f in report.findings]
    if report.protected:
        lines.append(
            render(
                "audit-release-protected",
                lang,
                tables=report.tables,
                folders=folders,
                cells=report.cells,
                suppressed=report.suppressed,
                links=report.links,
                width=report.protection_interval,
                attackers=1 + len(report.insiders),
            )
        )
    else:
        lines.append(
            render(
                "audit-release-not-protected",
                lang,
                failures=len(report.findings),
                folders=folders,
                first=finding_line(report.findings[0], report, lang),
            )
        )
    return "\n".join(lines)

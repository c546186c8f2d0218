"""The readable report: one line per probe, worst first, with the details of every probe that is not ok."""

from __future__ import annotations

from dbops.health.model import HealthReport, Status

DETAIL_LINES = 5


def format_report(report: HealthReport, *, details_for_ok: bool = False) -> str:
    counts = {s: sum(1 for p in report.probes if p.status is s) for s in Status}
    summary = ", ".join(f"{n} {s.value}" for s, n in sorted(counts.items(), key=lambda x: -x[0].rank) if n)
    version = f" (PostgreSQL {report.server_version.split()[0]})" if report.server_version else ""
    lines = [
        f"Health of {report.database}{version} at {report.checked_at:%Y-%m-%d %H:%M:%S %Z}: "
        f"{report.status.value.upper()} — {summary} in {report.seconds:.2f}s"
    ]
    width = max(len(p.name) for p in report.probes) if report.probes else 0
    for p in report.probes:
        lines.append(f"{p.status.value.upper():<9} {p.name:<{width}}  {p.message}")
        if p.status is Status.OK and not details_for_ok:
            continue
        for detail in p.details[:DETAIL_LINES]:
            lines.append(f"{'':<9} {'':<{width}}  · {detail}")
        if len(p.details) > DETAIL_LINES:
            lines.append(f"{'':<9} {'':<{width}}  · … {len(p.details) - DETAIL_LINES} more (--json shows all)")
    return "\n".join(lines)

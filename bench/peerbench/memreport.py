"""The Markdown report of conns.py: one table of proxy × N, the ratios to
HAProxy, the problems seen, and the issue's goals checked plainly.

Per idle connection and per in-flight request the figure is (RSS with N −
RSS before) / N, in KiB. Ratios are to HAProxy at the same N: it is the
reference the goals name.
"""

from __future__ import annotations

from pathlib import Path

from .memrounds import MIB, IdleResult, InflightResult

# The goals.
IDLE_KIB_GOAL = 2.0
INFLIGHT_HAPROXY_RATIO_GOAL = 1.5
AFTER_CLOSE_SHARE_GOAL = 1.10
# The goal's wording: "a minute after 32k connections close".
AFTER_CLOSE_CONNS_GOAL = 32_000
AFTER_CLOSE_WAIT_S_GOAL = 60
REFERENCE = "haproxy"


def _kib(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or reference <= 0:
        return "–"
    return f"{value / reference:.2f}×"


def _mib(value: int | None) -> str:
    return "–" if value is None else f"{value / MIB:.1f}"


def _count(result: IdleResult | InflightResult) -> int:
    return result.conns if isinstance(result, IdleResult) else result.requests


def _index(results) -> dict[tuple[str, int], IdleResult | InflightResult]:
    return {(result.target, _count(result)): result for result in results}


def table(
    targets: list[str],
    idle: list[IdleResult],
    inflight: list[InflightResult],
    close_wait_s: float,
) -> list[str]:
    idle_at, inflight_at = _index(idle), _index(inflight)
    counts = sorted({count for _, count in idle_at} | {count for _, count in inflight_at})
    lines = [
        f"| proxy | N | KiB / idle conn | × HAProxy | KiB / in-flight req | × HAProxy | "
        f"idle RSS MiB: start → warm → with N → closed → +{close_wait_s:.0f} s | "
        f"+{close_wait_s:.0f} s, % of start | in-flight RSS MiB: start → warm → with N | problems |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for target in targets:
        for count in counts:
            still = idle_at.get((target, count))
            moving = inflight_at.get((target, count))
            if still is None and moving is None:
                continue
            lines.append(_row(target, count, still, moving, idle_at, inflight_at))
    return lines


def _row(target, count, still, moving, idle_at, inflight_at) -> str:
    ref_idle = idle_at.get((REFERENCE, count))
    ref_moving = inflight_at.get((REFERENCE, count))
    idle_kib = still.kib_per_conn if still else None
    moving_kib = moving.kib_per_request if moving else None
    cells = [
        target,
        f"{count:,}",
        _kib(idle_kib),
        _ratio(idle_kib, ref_idle.kib_per_conn if ref_idle else None),
        _kib(moving_kib),
        _ratio(moving_kib, ref_moving.kib_per_request if ref_moving else None),
        _idle_rss(still),
        f"{still.later_share * 100:.0f}%" if still and still.later_share else "–",
        (f"{_mib(moving.rss_start)} → {_mib(moving.rss_warm)} → {_mib(moving.rss_with)}"
         if moving and moving.rss_with else "–"),
        _cell("; ".join((still.problems() if still else []) + (moving.problems() if moving else []))
              or "none"),
    ]
    return "| " + " | ".join(cells) + " |"


# A problem cell (a failed start carries the proxy's log tail) stays one
# table cell: no newlines, no pipes, bounded.
PROBLEM_CHARS_MAX = 300


def _cell(text: str) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= PROBLEM_CHARS_MAX else flat[: PROBLEM_CHARS_MAX - 1] + "…"


def _idle_rss(result: IdleResult | None) -> str:
    if result is None or not result.rss_with:
        return "–"
    return (f"{_mib(result.rss_start)} → {_mib(result.rss_warm)} → {_mib(result.rss_with)} → "
            f"{_mib(result.rss_closed)} → {_mib(result.rss_later)}")


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def goals(idle: list[IdleResult], inflight: list[InflightResult], close_wait_s: float) -> list[str]:
    """Each levee flavour at the largest N measured of each round."""
    lines = ["| goal | measured | |", "|---|---|---|"]
    levees = sorted({result.target for result in idle + inflight if result.target.startswith("levee")})
    idle_max = max((result.conns for result in idle), default=0)
    inflight_max = max((result.requests for result in inflight), default=0)
    idle_at, inflight_at = _index(idle), _index(inflight)
    for target in levees:
        still = idle_at.get((target, idle_max))
        if still and still.kib_per_conn is not None:
            lines.append(
                f"| {target}: ≤ {IDLE_KIB_GOAL:g} KiB per idle keep-alive connection "
                f"({idle_max:,} conns) | {still.kib_per_conn:.2f} KiB | "
                f"{_met(still.kib_per_conn <= IDLE_KIB_GOAL)} |"
            )
        moving, reference = inflight_at.get((target, inflight_max)), inflight_at.get((REFERENCE, inflight_max))
        if moving and reference and moving.kib_per_request is not None and reference.kib_per_request:
            ratio = moving.kib_per_request / reference.kib_per_request
            lines.append(
                f"| {target}: ≤ {INFLIGHT_HAPROXY_RATIO_GOAL:g}× HAProxy per in-flight request "
                f"({inflight_max:,} requests) | {ratio:.2f}× ({moving.kib_per_request:.2f} vs "
                f"{reference.kib_per_request:.2f} KiB) | {_met(ratio <= INFLIGHT_HAPROXY_RATIO_GOAL)} |"
            )
        if still and still.later_share:
            short = idle_max < AFTER_CLOSE_CONNS_GOAL or close_wait_s < AFTER_CLOSE_WAIT_S_GOAL
            caveat = (f" (the goal says {AFTER_CLOSE_CONNS_GOAL:,} conns and "
                      f"{AFTER_CLOSE_WAIT_S_GOAL} s; this run: {idle_max:,} and "
                      f"{close_wait_s:g} s)") if short else ""
            lines.append(
                f"| {target}: RSS within 10% of its start {close_wait_s:g} s after {idle_max:,} "
                f"connections close{caveat} | {still.later_share * 100:.0f}% "
                f"({_mib(still.rss_later)} vs {_mib(still.rss_start)} MiB) | "
                f"{_met(still.later_share <= AFTER_CLOSE_SHARE_GOAL)} |"
            )
    return lines


def render(title: str, preamble: list[str], table_lines: list[str], notes: list[str],
           goal_lines: list[str]) -> str:
    lines = [f"# {title}", "", *preamble, "", *table_lines]
    for note in notes:
        lines += ["", note]
    lines += ["", "## Goals (issue 15)", "", *goal_lines]
    return "\n".join(lines) + "\n"


def default_out(results_dir: Path, today: str) -> Path:
    """bench/results/conns-<date>.md, or -2, -3, ... when a report of that
    day is already there (as peers.py does): never overwrites."""
    out = results_dir / f"conns-{today}.md"
    number = 2
    while out.exists():
        out = results_dir / f"conns-{today}-{number}.md"
        number += 1
    return out

"""The Markdown report: the side-by-side table, the ratios and the goals.

Ratios rather than absolute numbers are the point: absolute requests per
second on a shared two-core VM say little, but two proxies measured in the
same run, against the same upstreams, with the same load, compare fairly.
Next to throughput, CPU µs per request is the proxy's cost independent of
how many cores it got. Goals are checked and stated plainly, met or not,
and so is the bench's own premise: that the proxies, not the upstreams,
limited the throughput.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cpu import Usage
from .profile import SAME_WORK, Profile, cost_ratio, same_work_share
from .wrk import WrkResult

MIB = 1024 * 1024
# The goals.
RSS_BYTES_GOAL = 128 * MIB
WASM_COST_GOAL = 0.05  # Wasm may cost at most 5% of native throughput
SLOW_REPLICA_P50_GOAL = 0.20  # a slow replica may add at most 20% to write p50
# The bottleneck check: the proxies, not the upstreams, must limit a run.
# Direct (wrk and one upstream, no proxy) must be at least this much faster
# than the fastest proxy...
DIRECT_HEADROOM = 1.5
# ...no single upstream (one worker each) may be busier than this, in
# cores, during any proxy's best round...
UPSTREAM_BUSY_MAX = 0.7
# ...and each proxy must spend more CPU per request than all upstreams
# together (for a proxy: its own µs/req > the upstreams' µs/req).
PROXIES = ("haproxy", "nginx", "levee-native", "levee-wasm", "levee-wasm-cached")
# The load generator must not be what limits a run either: each of its
# threads may use at most this much of a core during a best round.
CLIENT_BUSY_MAX = 0.85
# The TLS goal (issue 14): levee's throughput ratio to HAProxy and to nginx
# over TLS/HTTP/1.1 and over HTTP/2 at least its plain-HTTP ratio of the
# same run ("no extra relative loss from TLS"), less this allowance for the
# rounds' own spread.
TLS_RATIO_ALLOWANCE = 0.05


@dataclass
class Row:
    name: str
    description: str
    result: WrkResult
    # Of the process tree serving the target (direct: the upstream itself).
    peak_rss_bytes: int
    # Where the CPU went during the measured (best) run.
    usage: Usage
    # Throughput of every round, to show how steady the numbers are.
    rounds_rps: list[float]

    @property
    def cpu_us_per_request(self) -> float:
        """The target's process tree (every nginx/HAProxy worker, every
        levee thread): utime + stime over the measured run, per request."""
        return self.usage.target_s * 1_000_000 / self.result.requests if self.result.requests else 0.0

    @property
    def upstream_us_per_request(self) -> float:
        """The same for the upstreams (all of them; for `direct`, the other
        two, which are idle)."""
        return self.usage.upstream_s * 1_000_000 / self.result.requests if self.result.requests else 0.0


@dataclass
class WriteRow:
    name: str
    # The round with the highest throughput, as for GET.
    result: WrkResult
    rounds_p50_us: list[int]


@dataclass
class TlsPart:
    """The TLS rows (`peers.py --tls`): the same proxies terminating TLS,
    measured over HTTP/1.1 with wrk and over HTTP/2 with h2load."""

    h1_rows: list[Row]
    h2_rows: list[Row]
    # How each load was generated, for the headings: "`wrk -t1 -c64`, ...".
    h1_client: str
    h2_client: str
    # Load generator threads, for the client check.
    h1_client_threads: int
    h2_client_threads: int
    # Per target: what it negotiated (the harness's handshake offering h2
    # and http/1.1, and h2load's own).
    sessions: dict[str, str]
    # One paragraph on the certificate and the configs.
    setup: str


@dataclass
class Section:
    """Everything measured against one kind of upstreams."""

    kind: str  # "nginx" or "kv-replica"
    upstreams: str  # one line describing them
    rows: list[Row]
    notes: list[str]
    profiles: dict[str, Profile | None]
    writes: list[WriteRow]
    tls: TlsPart | None = None


def errors_text(result: WrkResult) -> str:
    if not result.errors:
        return "0"
    kinds = ", ".join(f"{kind} {count}" for kind, count in result.errors_by_kind.items())
    return f"{result.errors} ({kinds})"


def _ms(us: int) -> str:
    return f"{us / 1000:.2f}"


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}×" if denominator else "n/a"


def _find(rows: list[Row], name: str) -> Row | None:
    return next((row for row in rows if row.name == name), None)


def _times(row: Row, base: Row | None) -> str:
    """Throughput relative to a peer: 0.50× means half its req/s."""
    return _ratio(row.result.rps, base.result.rps) if base else "n/a"


def gets_table(rows: list[Row]) -> list[str]:
    haproxy = _find(rows, "haproxy")
    nginx = _find(rows, "nginx")
    lines = [
        "| target | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MiB | × HAProxy "
        "| × nginx | errors | req/s per round |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        result = row.result
        lines.append(
            f"| {row.description} | {result.rps:,.0f} | {_ms(result.p50_us)} | "
            f"{_ms(result.p99_us)} | {row.cpu_us_per_request:.1f} | "
            f"{row.peak_rss_bytes / MIB:.1f} | {_times(row, haproxy)} | {_times(row, nginx)} | "
            f"{errors_text(result)} | "
            f"{' / '.join(f'{rps:,.0f}' for rps in row.rounds_rps)} |"
        )
    return lines


def bottleneck_check(rows: list[Row], client_threads: int | None = None) -> str:
    """The bench's own sanity line: were the upstreams (or wrk) what
    limited the proxies? If so the throughput column compares nothing.
    Without a `direct` row (the TLS rows) the load generator is checked by
    its own CPU instead: given `client_threads`, no best round may have it
    busier than CLIENT_BUSY_MAX of a core per thread."""
    proxies = [row for row in rows if row.name in PROXIES and row.result.requests]
    if not proxies:
        return ""
    findings, ok = [], True
    direct = _find(rows, "direct")
    fastest = max(proxies, key=lambda row: row.result.rps)
    if direct:
        headroom = direct.result.rps / fastest.result.rps
        ok &= headroom >= DIRECT_HEADROOM
        findings.append(
            f"direct to one upstream did {direct.result.rps:,.0f} req/s, {headroom:.2f}× the "
            f"fastest proxy ({fastest.name}, {fastest.result.rps:,.0f}; wanted ≥ "
            f"{DIRECT_HEADROOM:.1f}×)"
        )
    per_request = [
        (row.name, row.cpu_us_per_request, row.upstream_us_per_request) for row in proxies
    ]
    ok &= all(proxy_us > upstream_us for _, proxy_us, upstream_us in per_request)
    findings.append(
        "CPU µs/req proxy vs all upstreams together: "
        + ", ".join(f"{name} {proxy_us:.1f} vs {upstream_us:.1f}"
                    for name, proxy_us, upstream_us in per_request)
    )
    busiest = max(proxies, key=lambda row: row.usage.upstream_max_cores)
    ok &= busiest.usage.upstream_max_cores <= UPSTREAM_BUSY_MAX
    findings.append(
        f"the busiest single upstream used {busiest.usage.upstream_max_cores:.2f} of a core "
        f"(during {busiest.name}'s best round; its limit is 1 worker, wanted ≤ "
        f"{UPSTREAM_BUSY_MAX:.1f})"
    )
    if client_threads:
        busiest_client = max(proxies, key=lambda row: row.usage.wrk_s)
        client_cores = (busiest_client.usage.wrk_s / busiest_client.usage.elapsed_s
                        if busiest_client.usage.elapsed_s else 0.0)
        ok &= client_cores <= CLIENT_BUSY_MAX * client_threads
        findings.append(
            f"the load generator used at most {client_cores:.2f} of a core (during "
            f"{busiest_client.name}'s best round; {client_threads} thread(s), wanted ≤ "
            f"{CLIENT_BUSY_MAX * client_threads:.2f})"
        )
    verdict = (
        "**the proxies were the bottleneck**" if ok
        else "**warning: the upstreams (or wrk) may have limited the proxies**; compare CPU "
        "µs/req rather than req/s"
    )
    return f"Bottleneck check: {verdict}. " + "; ".join(findings) + "."


def cpu_table(rows: list[Row], client: str = "wrk") -> list[str]:
    """Per request CPU of each party in the best round, and how busy each
    core was: tells which side limited the throughput. `client` names the
    load generator's column."""
    cpus = sorted({cpu for row in rows for cpu in row.usage.busy})
    lines = [
        f"| target | target µs/req | upstreams µs/req | busiest upstream, cores | {client} µs/req | "
        "irq+softirq µs/req | "
        + " | ".join(f"CPU{cpu} busy" for cpu in cpus)
        + " | foreign load, cores |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(cpus) + "---:|",
    ]
    for row in rows:
        usage, requests = row.usage, max(row.result.requests, 1)
        lines.append(
            f"| {row.name} | {usage.target_s * 1_000_000 / requests:.1f} | "
            f"{usage.upstream_s * 1_000_000 / requests:.1f} | {usage.upstream_max_cores:.2f} | "
            f"{usage.wrk_s * 1_000_000 / requests:.1f} | "
            f"{usage.irq_s * 1_000_000 / requests:.1f} | "
            + " | ".join(f"{usage.busy.get(cpu, 0.0):.0%}" for cpu in cpus)
            + f" | {usage.foreign_cores:.2f} |"
        )
    return lines


def profile_table(profiles: dict[str, Profile | None]) -> list[str]:
    names = [name for name, found in profiles.items() if found]
    if not names:
        return ["(no profile: `perf` is not usable here)"]
    groups = list(profiles[names[0]].shares)
    lines = [
        "| share of levee's CPU samples | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for group in groups:
        lines.append(
            f"| {group} | " + " | ".join(f"{profiles[name].shares[group]:.1f}%" for name in names)
            + " |"
        )
    lines.append(
        "| **all policy work** | "
        + " | ".join(f"**{profiles[name].policy_share:.1f}%**" for name in names) + " |"
    )
    lines.append("| samples | " + " | ".join(str(profiles[name].samples) for name in names) + " |")
    return lines


def profile_cost(profiles: dict[str, Profile | None]) -> str:
    wasm, native = profiles.get("levee-wasm"), profiles.get("levee-native")
    if not (wasm and native):
        return ""
    ratio = cost_ratio(native, wasm)
    if ratio is None:
        return ""
    # Each group's cost in units of levee-native's CPU per request.
    extra_policy = wasm.policy_share * ratio - native.policy_share
    extra_malloc = wasm.shares["malloc/free"] * ratio - native.shares["malloc/free"]
    return (
        f"**Wasm cost, from the profiles:** the work both flavours do identically "
        f"({'; '.join(SAME_WORK)}) is {same_work_share(native):.1f}% of levee-native's "
        f"samples and {same_work_share(wasm):.1f}% of levee-wasm's, so levee-wasm spends "
        f"about **{(ratio - 1) * 100:.0f}% more CPU per request** ({ratio:.2f}×, ±3% from "
        f"sampling). Of that, policy code (JIT-compiled plugin, wasmtime, glue) is "
        f"{extra_policy:.1f} points and extra malloc/free {extra_malloc:.1f} points. Unlike "
        f"the throughput ratio, this estimate does not move with outside load."
    )


def writes_table(rows: list[WriteRow]) -> list[str]:
    lines = [
        "| replicas | req/s | p50 ms | p99 ms | errors | p50 ms per round |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        result = row.result
        lines.append(
            f"| {row.name} | {result.rps:,.0f} | {_ms(result.p50_us)} | "
            f"{_ms(result.p99_us)} | {errors_text(result)} | "
            f"{' / '.join(_ms(p50_us) for p50_us in row.rounds_p50_us)} |"
        )
    return lines


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def goals(rows: list[Row], writes: list[WriteRow], profiles: dict[str, Profile | None]) -> list[str]:
    lines = ["| goal | measured | |", "|---|---|---|"]
    wasm = _find(rows, "levee-wasm")
    native = _find(rows, "levee-native")
    for peer in ("haproxy", "nginx"):
        other = _find(rows, peer)
        if wasm and other:
            ratio = wasm.result.rps / other.result.rps
            lines.append(
                f"| levee (Wasm) throughput ≥ {peer} | {ratio:.2f}× "
                f"({wasm.result.rps:,.0f} vs {other.result.rps:,.0f} req/s) | {_met(ratio >= 1.0)} |"
            )
    for row in (wasm, native):
        if row:
            lines.append(
                f"| {row.name} peak RSS < 128 MiB | {row.peak_rss_bytes / MIB:.1f} MiB | "
                f"{_met(row.peak_rss_bytes < RSS_BYTES_GOAL)} |"
            )
    if wasm and native:
        cost = 1 - wasm.result.rps / native.result.rps
        lines.append(
            f"| Wasm policies cost < 5% throughput vs native | {cost * 100:+.1f}% "
            f"(ratio {wasm.result.rps / native.result.rps:.3f}) | {_met(cost < WASM_COST_GOAL)} |"
        )
    wasm_profile, native_profile = profiles.get("levee-wasm"), profiles.get("levee-native")
    ratio = cost_ratio(native_profile, wasm_profile) if wasm_profile and native_profile else None
    if ratio is not None:
        lines.append(
            f"| Wasm policies cost < 5% of levee's CPU per request (profile estimate, "
            f"steadier than throughput) | {(ratio - 1) * 100:+.0f}% | "
            f"{_met(ratio - 1 < WASM_COST_GOAL)} |"
        )
    if len(writes) == 2:
        fast, slow = writes
        added = slow.result.p50_us / fast.result.p50_us - 1 if fast.result.p50_us else float("inf")
        lines.append(
            f"| a 500 ms replica adds ≤ 20% to quorum-write p50 | {added * 100:+.1f}% "
            f"({_ms(slow.result.p50_us)} vs {_ms(fast.result.p50_us)} ms) | "
            f"{_met(added <= SLOW_REPLICA_P50_GOAL)} |"
        )
    return lines


def cpu_context(rows: list[Row]) -> str:
    """Not a goal, but what the throughput goals hide on this machine: how
    much CPU each proxy spends per request."""
    levee_rows = [row for row in rows if row.name.startswith("levee-")]
    peers = [row for row in rows if row.name in ("haproxy", "nginx")]
    if not (levee_rows and peers):
        return ""
    parts = [
        f"{row.name} {row.cpu_us_per_request / peer.cpu_us_per_request:.2f}× {peer.name}'s"
        for row in levee_rows
        for peer in peers
        if peer.cpu_us_per_request
    ]
    return (
        "levee's CPU per request relative to the peers' (best rounds): " + ", ".join(parts)
        + ". Where the proxy is the bottleneck, throughput per core follows these ratios."
    )


def wasm_vs_native(rows: list[Row]) -> str:
    wasm = _find(rows, "levee-wasm")
    native = _find(rows, "levee-native")
    if not (wasm and native):
        return ""
    return (
        f"levee Wasm/native: throughput **{wasm.result.rps / native.result.rps:.3f}×** "
        f"({wasm.result.rps:,.0f} vs {native.result.rps:,.0f} req/s), CPU per request "
        f"{_ratio(wasm.cpu_us_per_request, native.cpu_us_per_request)} "
        f"({wasm.cpu_us_per_request:.1f} vs {native.cpu_us_per_request:.1f} µs), p99 "
        f"{_ratio(wasm.result.p99_us, native.result.p99_us)}, peak RSS "
        f"{_ratio(wasm.peak_rss_bytes, native.peak_rss_bytes)}."
    )


def slow_vs_fast(writes: list[WriteRow]) -> str:
    if len(writes) != 2:
        return ""
    fast, slow = writes
    return (
        f"Quorum-write p50 slow/fast: **{_ratio(slow.result.p50_us, fast.result.p50_us)}** "
        f"(p99 {_ratio(slow.result.p99_us, fast.result.p99_us)})."
    )


# The three ways the TLS part compares a target: its plain row and its two
# TLS rows.
TLS_MODES = ("plain HTTP/1.1", "TLS + HTTP/1.1", "HTTP/2 over TLS")
PEERS = ("haproxy", "nginx")


def _mode_rows(plain_rows: list[Row], tls: TlsPart) -> dict[str, list[Row]]:
    return dict(zip(TLS_MODES, (plain_rows, tls.h1_rows, tls.h2_rows)))


def _levee_names(tls: TlsPart) -> list[str]:
    return [row.name for row in tls.h1_rows if row.name.startswith("levee-")]


def _throughput(mine: Row, theirs: Row) -> float | None:
    """levee's req/s over the peer's."""
    return mine.result.rps / theirs.result.rps if theirs.result.rps else None


def _per_core(mine: Row, theirs: Row) -> float | None:
    """The peer's CPU µs/req over levee's: the throughput ratio the two
    would have if each were alone on the same cores, bound by its own CPU
    (the README's reading of the CPU column). Steadier than req/s on a
    shared machine."""
    return (theirs.cpu_us_per_request / mine.cpu_us_per_request
            if mine.cpu_us_per_request else None)


# How a levee row is compared with a peer's: (name, function).
MEASURES = (("throughput", _throughput), ("CPU per request", _per_core))


def tls_ratios(
    plain_rows: list[Row], tls: TlsPart, measure=_throughput
) -> list[tuple[str, str, dict[str, float | None]]]:
    """(levee target, peer, {mode: measure(levee row, peer row)}) for every
    levee target of the TLS rows and each peer; None where a row is
    missing (not among `--targets`, say)."""
    modes = _mode_rows(plain_rows, tls)
    found = []
    for name in _levee_names(tls):
        for peer in PEERS:
            ratios: dict[str, float | None] = {}
            for mode, rows in modes.items():
                mine, theirs = _find(rows, name), _find(rows, peer)
                ratios[mode] = measure(mine, theirs) if mine and theirs else None
            found.append((name, peer, ratios))
    return found


def _x(value: float | None) -> str:
    return f"{value:.2f}×" if value is not None else "n/a"


def _relative(ratio: float | None, plain: float | None) -> float | None:
    return ratio / plain if ratio is not None and plain else None


def tls_ratio_table(plain_rows: list[Row], tls: TlsPart) -> list[str]:
    plain, h1, h2 = TLS_MODES
    lines = [
        f"| levee target | × peer, by | {plain} | {h1} | {h2} | {h1} ÷ plain | {h2} ÷ plain |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, measure in MEASURES:
        for name, peer, ratios in tls_ratios(plain_rows, tls, measure):
            lines.append(
                f"| {name} | {peer}, {label} | {_x(ratios[plain])} | {_x(ratios[h1])} | "
                f"{_x(ratios[h2])} | {_x(_relative(ratios[h1], ratios[plain]))} | "
                f"{_x(_relative(ratios[h2], ratios[plain]))} |"
            )
    return lines


def tls_cost_table(plain_rows: list[Row], tls: TlsPart) -> list[str]:
    """CPU per request of each target in the three modes: what TLS (and
    HTTP/2 on top) adds to each proxy, in µs, independent of how many
    cores it got."""
    plain, h1, h2 = TLS_MODES
    lines = [
        f"| target | CPU µs/req, {plain} | {h1} | TLS adds | {h2} | HTTP/2 over TLS vs plain |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for tls_row in tls.h1_rows:
        base = _find(plain_rows, tls_row.name)
        over_h2 = _find(tls.h2_rows, tls_row.name)
        base_us = base.cpu_us_per_request if base else None
        h1_us = tls_row.cpu_us_per_request
        h2_us = over_h2.cpu_us_per_request if over_h2 else None
        lines.append(
            f"| {tls_row.name} | {_us(base_us)} | {_us(h1_us)} | {_us_added(h1_us, base_us)} | "
            f"{_us(h2_us)} | {_us_added(h2_us, base_us)} |"
        )
    return lines


def _us(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "n/a"


def _us_added(value: float | None, base: float | None) -> str:
    return f"{value - base:+.1f}" if value is not None and base is not None else "n/a"


def tls_goals(plain_rows: list[Row], tls: TlsPart) -> list[str]:
    """Goal lines (rows of the goals table): levee's ratio to each peer
    over TLS/HTTP/1.1 and over HTTP/2 at least its plain ratio, less
    TLS_RATIO_ALLOWANCE; by throughput (the goal as stated) and by CPU per
    request (the steadier reading of the same question)."""
    plain = TLS_MODES[0]
    lines = []
    for label, measure in MEASURES:
        for name, peer, ratios in tls_ratios(plain_rows, tls, measure):
            for mode in TLS_MODES[1:]:
                relative = _relative(ratios[mode], ratios[plain])
                if relative is None:
                    continue
                lines.append(
                    f"| {name} {label} ratio to {peer}, {mode}, ≥ its plain-HTTP ratio "
                    f"(−{TLS_RATIO_ALLOWANCE:.0%} allowance) | {_x(ratios[mode])} vs "
                    f"{_x(ratios[plain])} plain ({relative:.2f}) | "
                    f"{_met(relative >= 1 - TLS_RATIO_ALLOWANCE)} |"
                )
    return lines


def tls_lines(section: Section, get_connections: int) -> list[str]:
    tls = section.tls
    if tls is None:
        return []
    lines = [f"## TLS and HTTP/2, {get_connections} connections, "
             f"{SECTION_TITLES.get(section.kind, section.kind)}", "", tls.setup]
    for title, client, rows, threads in (
        ("TLS + HTTP/1.1", tls.h1_client, tls.h1_rows, tls.h1_client_threads),
        ("HTTP/2 over TLS", tls.h2_client, tls.h2_rows, tls.h2_client_threads),
    ):
        lines += ["", f"### {title}: {client}", ""]
        lines += gets_table(rows)
        check = bottleneck_check(rows, threads)
        if check:
            lines += ["", check]
    if tls.sessions:
        lines += ["", "Negotiated: " + "; ".join(
            f"{name}: {session}" for name, session in tls.sessions.items()) + "."]
    lines += ["", "Where the CPU went in each TLS target's best round (columns as above; "
              "the load generator is wrk, then h2load):", ""]
    lines += cpu_table(tls.h1_rows, "wrk")
    lines += [""]
    lines += cpu_table(tls.h2_rows, "h2load")
    lines += ["", "### Plain HTTP vs TLS vs HTTP/2 (same run)", ""]
    if _levee_names(tls):
        lines += ["Each levee target relative to each peer, per mode, by throughput (levee's "
                  "req/s ÷ the peer's) and by CPU per request (the peer's µs/req ÷ levee's: "
                  "the throughput ratio if each were bound by its own CPU, steadier on a "
                  "shared machine); \"÷ plain\" is the TLS ratio over the plain one (1.00: "
                  "TLS cost levee exactly as much, relatively, as the peer; below: more):", ""]
        lines += tls_ratio_table(section.rows, tls)
        lines += [""]
    lines += ["CPU per request in the three modes (best rounds):", ""]
    lines += tls_cost_table(section.rows, tls)
    return lines


SECTION_TITLES = {
    "nginx": "cheap nginx upstreams (`return 200`)",
    "kv-replica": "kv-replica upstreams (`levee kv-replica`)",
}


def section_lines(section: Section, get_connections: int, write_connections: int) -> list[str]:
    rows = section.rows
    title = SECTION_TITLES.get(section.kind, section.kind)
    lines = [f"## GET, {get_connections} connections, {title}", "",
             f"Upstreams: {section.upstreams}.", ""]
    lines += gets_table(rows)
    for paragraph in [bottleneck_check(rows), wasm_vs_native(rows), cpu_context(rows),
                      *section.notes]:
        if paragraph:
            lines += ["", paragraph]
    lines += ["", "Where the CPU went in each target's best round (upstreams: all three "
              "together, except a `direct` target itself; busiest upstream: the one "
              "upstream that used the most CPU, in cores; irq+softirq: the whole machine's "
              "interrupt time, mostly our loopback TCP, in no process's figure; foreign: "
              "busy time of processes outside this run):", ""]
    lines += cpu_table(rows)
    if section.profiles:
        lines += ["", "Where levee's CPU goes (`perf record`, 999 Hz, self time grouped by "
                  "code, one extra run per levee under the same load):", ""]
        lines += profile_table(section.profiles)
        cost = profile_cost(section.profiles)
        if cost:
            lines += ["", cost]
    if section.writes:
        lines += [
            "",
            f"### Quorum writes through levee (PUT, W=2 of N=3, {write_connections} "
            f"connections, kv-replica upstreams)",
            "",
        ]
        lines += writes_table(section.writes)
        lines += ["", slow_vs_fast(section.writes)]
    if section.tls:
        lines += ["", *tls_lines(section, get_connections)]
    lines += ["", f"### Goals ({section.kind} upstreams)", ""]
    lines += goals(rows, section.writes, section.profiles)
    if section.tls:
        lines += tls_goals(rows, section.tls)
    return lines


def render(
    title: str,
    preamble: list[str],
    sections: list[Section],
    get_connections: int,
    write_connections: int,
) -> str:
    lines = [f"# {title}", "", *preamble]
    for section in sections:
        lines += ["", *section_lines(section, get_connections, write_connections)]
    return "\n".join(lines) + "\n"

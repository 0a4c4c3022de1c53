"""Tests for the memory-per-connection bench (conns.py): the pure parts
(response parsing, source addresses, descriptor-limit planning, the proxy
configs for many connections, levee's overrides, the per-connection
arithmetic, the report's ratios and verdicts, the command line) and, with
a real process and real sockets, the hold upstream driven by the client.

Run: python3 -m unittest discover -s bench -p 'test_*.py'
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import tempfile
import unittest
from pathlib import Path

import conns
from peerbench import clients, fdlimit, hold, levee, memreport, memrounds, memtargets, procs
from peerbench import targets, upstreams
from peerbench.replicas import Replica

MIB = 1024 * 1024


def fake_upstreams(count: int = 3) -> upstreams.Upstreams:
    members = [Replica(f"upstream-{index}", "127.0.0.1", 40000 + index, None)
               for index in range(count)]
    return upstreams.Upstreams("nginx", members, upstreams.fixed_body, "fake")


def setup(**changes) -> memtargets.Setup:
    values = dict(idle_max=32_000, inflight_max=4_000, keepalive_timeout_s=600,
                  response_timeout_s=300, fd_limit=200_000, levee_keepalive=True, threads=2)
    values.update(changes)
    return memtargets.Setup(**values)


class Responses(unittest.TestCase):
    def test_a_length_delimited_response_is_complete_only_with_its_body(self):
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
        self.assertIsNone(clients.response_status(head + b"abc"))
        self.assertEqual(clients.response_status(head + b"abcde"), 200)
        self.assertIsNone(clients.response_status(b"HTTP/1.1 200 OK\r\ncontent-le"))

    def test_a_chunked_response_ends_with_the_last_chunk(self):
        head = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
        self.assertIsNone(clients.response_status(head + b"3\r\nabc\r\n"))
        self.assertEqual(clients.response_status(head + b"3\r\nabc\r\n0\r\n\r\n"), 503)

    def test_garbage_and_close_delimited_answers_are_errors(self):
        with self.assertRaises(clients.ResponseError):
            clients.response_status(b"SSH-2.0-OpenSSH\r\n\r\n")
        with self.assertRaises(clients.ResponseError):
            clients.response_status(b"HTTP/1.0 200 OK\r\n\r\nbody")

    def test_requests_carry_the_key_in_the_path_and_in_x_key(self):
        target = clients.Target("127.0.0.1", 8080, "/bench/kv/", keys=1000)
        request = clients.request_bytes(target, 1001).decode()
        self.assertTrue(request.startswith("GET /bench/kv/key-00001 HTTP/1.1\r\n"))
        self.assertIn("\r\nx-key: key-00001\r\n", request)
        self.assertTrue(request.endswith("\r\n\r\n"))

    def test_sources_are_loopback_addresses_other_than_the_proxys_round_robin(self):
        sources = [clients.source_of(index) for index in range(16)]
        self.assertEqual(sources[:8], list(clients.SOURCE_ADDRESSES))
        self.assertEqual(sources[8:], sources[:8])
        for source in set(sources):
            self.assertTrue(source.startswith("127.") and source != "127.0.0.1")

    def test_failures_list_everything_but_200(self):
        outcome = clients.Outcome()
        self.assertEqual(outcome.failures(), "")
        outcome.results.update({"200": 5, "503": 2, "error: connect timeout": 1})
        self.assertEqual(outcome.ok, 5)
        self.assertEqual(outcome.failures(), "2× 503, 1× error: connect timeout")


class DescriptorLimit(unittest.TestCase):
    def test_needed_covers_idle_conns_or_two_per_request_in_flight(self):
        self.assertEqual(fdlimit.needed(32_000, 4_000), 32_000 + fdlimit.FDS_SPARE)
        self.assertEqual(fdlimit.needed(1_000, 4_000), 8_000 + fdlimit.FDS_SPARE)

    def test_counts_that_do_not_fit_become_the_largest_that_does(self):
        counts, notes = fdlimit.fitting([1000, 8000, 32000], 1, 20_000)
        self.assertEqual(counts, [1000, 8000, 18000])
        self.assertEqual(len(notes), 1)
        self.assertIn("32,000", notes[0])
        self.assertIn("18,000 instead", notes[0])
        self.assertEqual(fdlimit.fitting([1000, 4000], 2, 20_000), ([1000, 4000], []))

    def test_replacements_are_not_measured_twice_and_tiny_limits_skip(self):
        self.assertEqual(fdlimit.fitting([18000, 32000], 1, 20_000)[0], [18000])
        counts, notes = fdlimit.fitting([1000], 1, 1500)
        self.assertEqual(counts, [])
        self.assertIn("skipped", notes[0])

    def test_a_limit_already_high_enough_is_left_alone(self):
        limit = fdlimit.raise_to(64)
        self.assertEqual(limit.before, limit.after)
        self.assertEqual(limit.shortfall, "")


class ProxyConfigs(unittest.TestCase):
    def test_the_peer_bench_keeps_its_settings(self):
        text = targets.haproxy_config("127.0.0.1:1", fake_upstreams(), threads=2)
        for setting in ("maxconn 4096", "timeout client 30s", "timeout server 30s",
                        "timeout http-keep-alive 30s", "\n    strict-limits\n"):
            self.assertIn(setting, text)
        text = targets.nginx_config("127.0.0.1:1", fake_upstreams(), Path("/p"), workers=2)
        for setting in ("worker_connections 4096;", "keepalive_timeout 75s;",
                        "proxy_read_timeout 30s;"):
            self.assertIn(setting, text)

    def test_many_connections_raise_caps_and_timeouts(self):
        run = setup(fd_limit=20_000)
        text = targets.haproxy_config("127.0.0.1:1", fake_upstreams(), 2, run.proxy_limits("haproxy"))
        for setting in ("maxconn 33024", "timeout client 600s", "timeout server 300s",
                        "timeout http-keep-alive 600s", "no strict-limits"):
            self.assertIn(setting, text)
        self.assertEqual(text.count("maxconn 33024"), 2)  # global and frontend
        text = targets.nginx_config("127.0.0.1:1", fake_upstreams(), Path("/p"), 2,
                                    run.proxy_limits("nginx"))
        for setting in ("worker_connections 33024;", "keepalive_timeout 600s;",
                        "proxy_read_timeout 300s;"):
            self.assertIn(setting, text)

    def test_haproxy_stays_strict_when_the_limit_allows_two_fds_per_conn(self):
        self.assertTrue(setup(fd_limit=100_000).haproxy_strict_limits)
        self.assertFalse(setup(fd_limit=60_000).haproxy_strict_limits)

    def test_nginx_counts_an_upstream_connection_per_request_in_flight(self):
        run = setup(idle_max=1000, inflight_max=4000)
        self.assertEqual(run.client_conns_max, 4000 + memtargets.CONNECTIONS_SPARE)
        self.assertEqual(run.nginx_connections_max, 8000 + memtargets.CONNECTIONS_SPARE)


class LeveeOverrides(unittest.TestCase):
    def test_server_limits_and_service_fields_are_set(self):
        overrides = setup().levee_overrides(upstream_count=1)
        config = levee.config("native", fake_upstreams(1).members, Path("/d"), Path("/p"),
                              overrides=overrides)
        self.assertEqual(config["server"], {"connections_max": 33_024,
                                            "keepalive_timeout_ms": 600_000})
        service = config["services"][0]
        self.assertEqual(service["concurrency_max"], 33_024)
        self.assertEqual(service["timeouts"], {"per_try_ms": 300_000, "total_ms": 300_000})
        self.assertEqual((service["replicas"], service["write_quorum"]), (1, 1))

    def test_a_build_without_keepalive_timeout_gets_a_long_header_timeout(self):
        server = setup(levee_keepalive=False).levee_overrides(3).server
        self.assertEqual(server["header_read_timeout_ms"], 600_000)
        self.assertNotIn("keepalive_timeout_ms", server)

    def test_without_overrides_the_peer_config_is_unchanged(self):
        config = levee.config("native", fake_upstreams().members, Path("/d"), Path("/p"))
        self.assertNotIn("server", config)
        self.assertEqual(config["services"][0]["write_quorum"], 2)


class FakeProcess:
    """Stands in for a Spawned: RSS readings from a list, the last repeated."""

    def __init__(self, readings: list[int]):
        self.readings = list(readings)

    def rss_bytes(self) -> int:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


class Rounds(unittest.TestCase):
    def test_per_connection_figures_count_from_the_warm_reading(self):
        result = memrounds.IdleResult("levee-native", 1000, 20 * MIB, rss_warm=21 * MIB,
                                      rss_with=21 * MIB + 1000 * 2048, rss_later=22 * MIB)
        self.assertAlmostEqual(result.kib_per_conn, 2.0)
        self.assertAlmostEqual(result.later_share, 1.1)
        self.assertEqual(result.problems(), [])
        result.closed_early, result.failures = 3, "1× 503"
        self.assertEqual(result.problems(), ["opening: 1× 503",
                                             "3 closed by the proxy before the reading"])
        result.error = "start failed"
        self.assertIsNone(result.kib_per_conn)

    def test_in_flight_figures_and_requests_that_never_arrived(self):
        result = memrounds.InflightResult("haproxy", 100, 10 * MIB, rss_warm=10 * MIB,
                                          rss_with=10 * MIB + 100 * 4096, held=90)
        self.assertAlmostEqual(result.kib_per_request, 4.0)
        self.assertEqual(result.problems(), ["only 90 requests reached the upstream"])

    def test_rss_is_read_once_two_readings_agree(self):
        process = FakeProcess([10 * MIB, 20 * MIB, 30 * MIB, 30 * MIB + 1024])
        self.assertEqual(memrounds.settled_rss(process, 0), 30 * MIB + 1024)

    def test_later_readings_fire_on_time_and_name_their_owner(self):
        later = memrounds.LaterReadings()
        result = memrounds.IdleResult("nginx", 10, MIB)
        later.schedule(result, FakeProcess([2 * MIB]), closed_at=0.0, delay_s=0.0, owner="me")
        self.assertEqual(later.wait_all(timeout_s=5.0), ["me"])
        self.assertEqual(result.rss_later, 2 * MIB)
        self.assertEqual(later.pending(), 0)


def idle_result(target: str, count: int, kib: float, later_share: float = 1.0):
    start = 20 * MIB
    return memrounds.IdleResult(target, count, start, rss_warm=start,
                                rss_with=start + int(kib * 1024 * count), rss_closed=start,
                                rss_later=int(start * later_share), later_s=60.0)


def inflight_result(target: str, count: int, kib: float):
    start = 20 * MIB
    return memrounds.InflightResult(target, count, start, rss_warm=start,
                                    rss_with=start + int(kib * 1024 * count), held=count)


class Report(unittest.TestCase):
    def test_one_row_per_proxy_and_count_with_ratios_to_haproxy(self):
        idle = [idle_result("haproxy", 1000, 2.0), idle_result("levee-native", 1000, 16.0)]
        moving = [inflight_result("haproxy", 1000, 4.0), inflight_result("levee-native", 1000, 8.0),
                  inflight_result("haproxy", 4000, 4.0)]
        lines = memreport.table(["haproxy", "levee-native"], idle, moving, 60)
        self.assertEqual(len(lines), 2 + 3)
        self.assertRegex(lines[3], r"^\| haproxy \| 4,000 \| – \| – \| 4\.00 \| 1\.00× ")
        self.assertRegex(lines[4], r"^\| levee-native \| 1,000 \| 16\.00 \| 8\.00× \| 8\.00 \| 2\.00× ")

    def test_verdicts_follow_the_goals(self):
        idle = [idle_result("haproxy", 32000, 1.8), idle_result("levee-native", 32000, 1.9, 1.05),
                idle_result("levee-wasm", 32000, 2.5, 1.3)]
        moving = [inflight_result("haproxy", 4000, 4.0), inflight_result("levee-native", 4000, 6.0),
                  inflight_result("levee-wasm", 4000, 6.4)]
        lines = "\n".join(memreport.goals(idle, moving, 60))
        self.assertRegex(lines, r"levee-native: ≤ 2 KiB .* \| 1\.90 KiB \| \*\*met\*\*")
        self.assertRegex(lines, r"levee-wasm: ≤ 2 KiB .* \| 2\.50 KiB \| \*\*not met\*\*")
        self.assertRegex(lines, r"levee-native: ≤ 1\.5× HAProxy .* \| 1\.50× .*\*\*met\*\*")
        self.assertRegex(lines, r"levee-wasm: ≤ 1\.5× HAProxy .* \| 1\.60× .*\*\*not met\*\*")
        self.assertRegex(lines, r"levee-native: RSS within 10% .* connections close \| 105% .*\*\*met")
        self.assertNotIn("this run:", lines)

    def test_a_failed_start_stays_one_table_cell(self):
        failed = memrounds.IdleResult("nginx", 1000, 0, error="start failed: a|b\n" + "x" * 500)
        line = memreport.table(["nginx"], [failed], [], 60)[2]
        self.assertEqual(line.count("\n"), 0)
        self.assertIn("a\\|b", line)
        self.assertLess(len(line), 500)

    def test_a_smaller_run_says_it_is_not_the_goals_setting(self):
        lines = "\n".join(memreport.goals([idle_result("levee-native", 18000, 1.0)], [], 10))
        self.assertIn("this run: 18,000 and 10 s", lines)

    def test_a_report_of_the_same_day_is_not_overwritten(self):
        with tempfile.TemporaryDirectory() as results:
            results = Path(results)
            self.assertEqual(memreport.default_out(results, "2026-12-01").name, "conns-2026-12-01.md")
            (results / "conns-2026-12-01.md").write_text("earlier run")
            self.assertEqual(memreport.default_out(results, "2026-12-01").name,
                             "conns-2026-12-01-2.md")


class ProcReaders(unittest.TestCase):
    def test_status_gives_vmrss_in_bytes(self):
        status = "Name:\tx\nVmHWM:\t    1234 kB\nVmRSS:\t    1000 kB\n"
        self.assertEqual(procs.parse_vmrss_bytes(status), 1000 * 1024)
        self.assertEqual(procs.parse_vmrss_bytes("Name:\tx\n"), 0)

    def test_own_process_has_rss_and_descriptors(self):
        self.assertGreater(procs.rss_of(os.getpid()), 0)
        with socket.socket() as _sock:
            self.assertGreater(procs.open_fds_of(os.getpid()), 3)
        self.assertEqual(procs.rss_of(2**22 + 1), 0)


class CommandLine(unittest.TestCase):
    def parse(self, *argv: str):
        with contextlib.redirect_stderr(io.StringIO()):
            return conns.parse_args(list(argv))

    def test_defaults_are_the_issues_counts(self):
        args = self.parse()
        self.assertEqual(args.conns, [1000, 8000, 32000])
        self.assertEqual(args.inflight, [1000, 4000])
        self.assertEqual(args.close_wait_s, 60.0)
        self.assertEqual(args.targets, list(memtargets.TARGETS))
        self.assertEqual(args.levee_bin, conns.REPO_DIR / "target/release/levee")

    def test_quick_is_smaller_unless_told_otherwise(self):
        args = self.parse("--quick", "--close-wait-s", "30")
        self.assertEqual((args.conns, args.inflight, args.close_wait_s), ([1000, 4000], [1000], 30.0))
        self.assertEqual(self.parse("--inflight", "none").inflight, [])

    def test_bad_values_are_refused(self):
        for argv in (["--conns", "many"], ["--conns", "0"], ["--targets", "apache"],
                     ["--targets", "nginx,nginx"], ["--close-wait-s", "-1"]):
            with self.assertRaises(SystemExit):
                self.parse(*argv)


class HoldUpstreamWithClients(unittest.TestCase):
    """A real hold upstream process and real client connections."""

    def test_requests_are_held_counted_and_released_with_200(self):
        with tempfile.TemporaryDirectory() as work, procs.Processes(Path(work)) as registry:
            ups = hold.start(registry, hold_s_max=30)
            member = ups.members[0]
            target = clients.Target(member.host, member.port, "/kv/")
            idle = clients.open_with_get(target, 20, 8)
            self.assertEqual((idle.ok, idle.failures()), (20, ""))
            self.assertEqual(clients.closed_by_peer(idle.socks), 0)
            hold.hold_on(member)
            sent = clients.open_with_request(target, 30, 8)
            self.assertEqual(sent.results["sent"], 30)
            self.assertEqual(hold.wait_held(member, 30, timeout_s=20), 30)
            self.assertEqual(hold.release(member), 30)
            self.assertEqual(clients.read_statuses(sent.socks, 8), {"200": 30})
            clients.close_all(sent.socks)
            registry.stop(member.process)
            self.assertEqual(clients.closed_by_peer(idle.socks), 20)
            clients.close_all(idle.socks)


if __name__ == "__main__":
    unittest.main()

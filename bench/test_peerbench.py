"""Unit tests for the harness's pure parts: parsing wrk's result line and
h2load's summary and log, the generated configs (upstream and proxy nginx,
HAProxy, levee; plain and TLS), the certificate and ALPN check, the /proc
readers behind the CPU and RSS columns, the CPU arithmetic, the report's
ratios, bottleneck check and goal verdicts, and the command line. The
measuring parts are exercised by running the benchmark itself, which checks
every target's answers before measuring it.

Run: python3 -m unittest discover -s bench -p 'test_*.py'
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import socket
import ssl
import tempfile
import threading
import unittest
from pathlib import Path

import peers
from peerbench import (
    cpu,
    h2load,
    levee,
    probe,
    procs,
    profile,
    report,
    targets,
    templates,
    tls,
    upstreams,
    wrk,
)
from peerbench.replicas import Replica

WRK_STDOUT = """Running 10s test @ http://127.0.0.1:1
  2 threads and 64 connections
Requests/sec:  12345.00
WRK_RESULT {"requests":123450,"duration_us":10000000,"bytes":9000000,"p50_us":4000,\
"p99_us":15000,"max_us":30000,"errors_connect":0,"errors_read":2,"errors_write":0,\
"errors_status":3,"errors_timeout":0}
"""


# h2load 1.52's output, trimmed of its progress lines.
H2LOAD_STDOUT = """starting benchmark...
spawning thread #0: 64 total client(s). Timing-based test with 0s of warm-up time and 5s of \
main duration for measurements.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_256_GCM_SHA384
Server Temp Key: X25519 253 bits
Application protocol: h2
Main benchmark duration is started for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 5.00s, 19160.00 req/s, 2.39MB/s
requests: 95812 total, 96452 started, 95812 done, 95800 succeeded, 12 failed, 7 errored, \
2 timeout
status codes: 95800 2xx, 0 3xx, 4 4xx, 1 5xx
traffic: 11.97MB (12550372) total, 4.48MB (4694788) headers (space savings 50.51%), \
5.85MB (6131968) data
                     min         max         mean         sd        +/- sd
time for request:       93us     80.49ms     10.88ms      5.07ms    74.85%
time for connect:     6.44ms      9.81ms      8.58ms      1.57ms    75.00%
time to 1st byte:     9.49ms     11.09ms     10.17ms       764us    75.00%
req/s           :     297.94      303.85      299.37        1.49    75.00%
"""


def result(rps: float, p50_us: int = 1000, errors: int = 0) -> wrk.WrkResult:
    requests = int(rps * 10)
    return wrk.WrkResult(requests, 10_000_000, p50_us, 2 * p50_us, 3 * p50_us, errors, {})


def usage(target_s: float = 5.0, upstream_s: float = 4.0, upstream_max_s: float = 2.0) -> cpu.Usage:
    return cpu.Usage(10.0, target_s, upstream_s, 2.0, {0: 1.0, 1: 1.0}, upstream_max_s)


def row(name: str, rps: float, rss_mib: float = 10.0, **usage_args) -> report.Row:
    return report.Row(name, name, result(rps), int(rss_mib * report.MIB), usage(**usage_args), [rps])


def fake_members(count: int = 3) -> list[Replica]:
    # The process is never touched by config generation.
    return [Replica(f"upstream-{index}", "127.0.0.1", 40000 + index, None) for index in range(count)]


def fake_upstreams() -> upstreams.Upstreams:
    return upstreams.Upstreams("nginx", fake_members(), upstreams.fixed_body, "three")


class WrkParsing(unittest.TestCase):
    def test_result_line_is_parsed_with_errors_by_kind(self):
        parsed = wrk.parse(WRK_STDOUT, "http://x")
        self.assertEqual(parsed.requests, 123450)
        self.assertEqual((parsed.p50_us, parsed.p99_us), (4000, 15000))
        self.assertEqual(parsed.errors, 5)
        self.assertEqual(parsed.errors_by_kind, {"read": 2, "status": 3})
        self.assertAlmostEqual(parsed.rps, 12345.0)

    def test_missing_result_line_is_an_error(self):
        with self.assertRaises(wrk.WrkError):
            wrk.parse("Requests/sec: 1\n", "http://x")


class Templates(unittest.TestCase):
    def test_every_placeholder_must_be_filled(self):
        with self.assertRaises(ValueError):
            templates.render("haproxy.cfg.tmpl", {"threads": "1", "listen": "127.0.0.1:1"})

    def test_haproxy_config_keeps_the_peer_settings(self):
        text = targets.haproxy_config("127.0.0.1:1", fake_upstreams(), threads=2)
        for setting in ("balance hdr(x-key)", "hash-type consistent", "retries 3",
                        "option redispatch", "nbthread 2", "bind 127.0.0.1:1",
                        "server upstream-0 127.0.0.1:40000", "server upstream-2 127.0.0.1:40002"):
            self.assertIn(setting, text)

    def test_nginx_proxy_config_hashes_on_the_key_over_every_upstream(self):
        text = targets.nginx_config("127.0.0.1:1", fake_upstreams(), Path("/tmp/p"), workers=2)
        for setting in ("worker_processes 2;", "hash $http_x_key consistent;", "access_log off;",
                        "listen 127.0.0.1:1;", "server 127.0.0.1:40000 ", "server 127.0.0.1:40002 ",
                        "keepalive 128;", "pid /tmp/p/nginx.pid;"):
            self.assertIn(setting, text)
        self.assertNotIn("{{", text)


class NginxUpstream(unittest.TestCase):
    def test_config_answers_200_with_the_fixed_body_from_one_worker(self):
        text = upstreams.nginx_config("127.0.0.1:5", Path("/tmp/u0"))
        for setting in ("worker_processes 1;", "daemon off;", "access_log off;",
                        "listen 127.0.0.1:5;", f'return 200 "{upstreams.NGINX_BODY}";',
                        "pid /tmp/u0/nginx.pid;", "keepalive_requests 100000;"):
            self.assertIn(setting, text)
        self.assertNotIn("{{", text)
        # Every key gets the same body, as long as a kv-replica value.
        self.assertEqual(upstreams.fixed_body(0), upstreams.fixed_body(999))
        self.assertEqual(len(upstreams.fixed_body(0)), 64)

    def test_body_nginx_would_interpret_is_refused(self):
        for body in ('say "hi"', "cost $1", "a;b"):
            with self.assertRaises(ValueError):
                upstreams.nginx_config("127.0.0.1:5", Path("/tmp/u0"), body)

    def test_unknown_kind_is_refused(self):
        with self.assertRaises(ValueError):
            upstreams.start("apache", None, Path("/x"), Path("/x"), None, 1, 1000)


class LeveeConfig(unittest.TestCase):
    def test_flavours_differ_only_in_policies(self):
        members = fake_members()
        wasm = levee.config("wasm", members, Path("/d"), Path("/plugins"))
        cached = levee.config("wasm-cached", members, Path("/d"), Path("/plugins"))
        native = levee.config("native", members, Path("/d"), Path("/plugins"))
        self.assertEqual(wasm["plugin_dir"], "/plugins")
        self.assertEqual(cached["services"][0]["policies"], levee.WASM_POLICIES)
        # The uncached flavour differs only in the routing binding's cache.
        routing = wasm["services"][0]["policies"]["routing"]
        self.assertEqual(routing["limits"], {"route_plan_cache": False})
        self.assertEqual(routing["plugin"], levee.WASM_POLICIES["routing"]["plugin"])
        del cached["services"][0]["policies"]
        self.assertEqual(cached, native)
        self.assertNotIn("policies", native["services"][0])
        del wasm["services"][0]["policies"]
        self.assertEqual(wasm, native)
        self.assertEqual(
            [node["url"] for node in native["services"][0]["nodes"]],
            ["http://127.0.0.1:40000", "http://127.0.0.1:40001", "http://127.0.0.1:40002"],
        )
        self.assertEqual(levee.plugin_files(), ["retry-backoff.wasm", "route-affinity.wasm"])


# /proc/PID/stat of a process whose command name holds a space and a ')'.
STAT = ("4242 (nginx: a) b) S 1 4242 4242 0 -1 4194560 500 0 0 0 "
        "150 50 7 9 20 0 1 0 100 1000 200 18446744073709551615")
STATUS = "Name:\tnginx\nVmPeak:\t  20000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t    1000 kB\n"


class ProcReaders(unittest.TestCase):
    def test_stat_gives_utime_plus_stime_not_the_childrens(self):
        # utime 150 + stime 50; cutime 7 and cstime 9 are not the process's own.
        self.assertEqual(procs.parse_cpu_ticks(STAT), 200)

    def test_status_gives_vmhwm_in_bytes(self):
        self.assertEqual(procs.parse_vmhwm_bytes(STATUS), 1234 * 1024)
        self.assertEqual(procs.parse_vmhwm_bytes("Name:\tzombie\n"), 0)

    def test_a_tree_is_summed_over_master_and_every_worker(self):
        # An nginx-like tree: master 10 with workers 11 (forked by thread 10)
        # and 12 (forked by thread 13 of the master), and 12's child 14.
        with tempfile.TemporaryDirectory() as root:
            proc = Path(root)
            tree = {10: {10: [11], 13: [12]}, 11: {11: []}, 12: {12: [14]}, 14: {14: []}}
            for pid, threads in tree.items():
                for tid, children in threads.items():
                    task = proc / str(pid) / "task" / str(tid)
                    task.mkdir(parents=True)
                    (task / "children").write_text(" ".join(map(str, children)) + " ")
                (proc / str(pid) / "stat").write_text(STAT.replace("4242", str(pid), 1))
                (proc / str(pid) / "status").write_text(STATUS)
            self.assertEqual(procs.tree_pids(10, proc), [10, 11, 12, 14])
            self.assertEqual(procs.tree_pids(99, proc), [99])
            self.assertEqual(sum(procs.peak_rss_of(pid, proc) for pid in procs.tree_pids(10, proc)),
                             4 * 1234 * 1024)
            self.assertAlmostEqual(
                sum(procs.cpu_seconds_of(pid, proc) for pid in procs.tree_pids(10, proc)),
                4 * 200 / procs.CLOCK_TICKS_PER_S,
            )
            # A process that is gone counts 0, not an error.
            self.assertEqual(procs.cpu_seconds_of(99, proc), 0.0)
            self.assertEqual(procs.peak_rss_of(99, proc), 0)

    def test_the_real_proc_is_readable(self):
        self.assertGreater(procs.peak_rss_of(os.getpid()), 0)
        self.assertGreaterEqual(procs.cpu_seconds_of(os.getpid()), 0.0)
        self.assertEqual(procs.tree_pids(os.getpid())[0], os.getpid())


class Profiles(unittest.TestCase):
    def test_samples_are_grouped_by_what_they_run(self):
        self.assertEqual(profile.group_of("[JIT] tid 7 0x7f00"), "policy: JIT-compiled plugin code")
        self.assertEqual(
            profile.group_of("levee wasmtime::runtime::func::call"), "policy: wasmtime runtime"
        )
        self.assertEqual(profile.group_of("libc.so.6 _int_malloc"), "malloc/free")
        self.assertEqual(profile.group_of("levee levee::proxy::forward"), "levee request path")
        self.assertEqual(profile.group_of("[kernel.kallsyms] tcp_sendmsg"),
                         "kernel (syscalls, TCP, wakeups)")
        self.assertEqual(profile.group_of("levee core::str::from_utf8"), profile.OTHER)

    def test_cost_ratio_scales_by_the_shared_work(self):
        def make(same: float, policy: float) -> profile.Profile:
            shares = {name: 0.0 for name, _ in profile.GROUPS}
            shares[profile.OTHER] = 0.0
            shares["kernel (syscalls, TCP, wakeups)"] = same
            shares["policy: wasmtime runtime"] = policy
            return profile.Profile(shares, 1000)

        # Same absolute work, 20% of extra policy work on top of it.
        native, wasm = make(100.0, 0.0), make(100.0 / 1.2, 100.0 - 100.0 / 1.2)
        self.assertAlmostEqual(profile.cost_ratio(native, wasm), 1.2)
        self.assertIsNone(profile.cost_ratio(native, make(0.0, 100.0)))


class CpuArithmetic(unittest.TestCase):
    def test_foreign_load_is_busy_time_not_ours(self):
        used = cpu.Usage(elapsed_s=10.0, target_s=6.0, upstream_s=5.0, wrk_s=3.0,
                         busy={0: 0.9, 1: 0.8})
        self.assertAlmostEqual(used.busy_s, 17.0)
        self.assertAlmostEqual(used.foreign_cores, 0.3)

    def test_foreign_load_never_goes_negative(self):
        used = cpu.Usage(10.0, 10.0, 10.0, 10.0, {0: 0.5})
        self.assertEqual(used.foreign_cores, 0.0)

    def test_usage_sums_upstreams_and_keeps_the_busiest(self):
        before = cpu.Snapshot(100.0, {0: (50.0, 100.0)}, 7.0, 1.0, (1.0, 2.0, 3.0), 0.5)
        after = cpu.Snapshot(110.0, {0: (58.0, 110.0)}, 7.5, 4.0, (2.0, 5.0, 4.0), 1.5)
        used = cpu.usage(before, after)
        self.assertAlmostEqual(used.target_s, 3.0)
        self.assertAlmostEqual(used.upstream_s, 5.0)
        self.assertAlmostEqual(used.upstream_max_s, 3.0)
        self.assertAlmostEqual(used.upstream_max_cores, 0.3)
        self.assertAlmostEqual(used.wrk_s, 1.0)
        self.assertAlmostEqual(used.busy[0], 0.8)
        self.assertAlmostEqual(used.irq_s, 0.5)
        # Busy 8 s, ours 3 + 5 + 1 + irq 0.5 = 9.5 s: no foreign load, not negative.
        self.assertEqual(used.foreign_cores, 0.0)

    def test_proc_stat_gives_busy_total_and_interrupt_time(self):
        hz = procs.CLOCK_TICKS_PER_S
        text = ("cpu  100 0 50 800 10 5 15 0 0 0\n"
                "cpu0 60 0 30 400 5 3 7 0 0 0\n"
                "cpu1 40 0 20 400 5 2 8 0 0 0\n"
                "intr 12345\n")
        per_cpu, irq_s = cpu.parse_proc_stat(text)
        self.assertAlmostEqual(irq_s, 20 / hz)
        # busy = all but idle and iowait; total = the first eight fields.
        self.assertEqual(per_cpu, {0: (100 / hz, 505 / hz), 1: (70 / hz, 475 / hz)})

    def test_interrupt_time_is_not_foreign(self):
        used = cpu.Usage(10.0, 5.0, 2.0, 1.0, {0: 0.5, 1: 0.5}, 0.0, 1.0)
        self.assertAlmostEqual(used.foreign_cores, 0.1)

    def test_cpu_per_request_is_the_trees_time_over_requests(self):
        measured = row("haproxy", 1000, target_s=5.0, upstream_s=1.0)  # 10,000 requests
        self.assertAlmostEqual(measured.cpu_us_per_request, 500.0)
        self.assertAlmostEqual(measured.upstream_us_per_request, 100.0)


class Report(unittest.TestCase):
    def rows(self, direct_rps: float = 90_000, upstream_s: float = 1.0, busiest_s: float = 0.5):
        return [
            row("direct", direct_rps, target_s=2.0, upstream_s=0.0, upstream_max_s=0.0),
            row("haproxy", 40_000, upstream_s=upstream_s, upstream_max_s=busiest_s),
            row("nginx", 32_000, upstream_s=upstream_s, upstream_max_s=busiest_s),
            row("levee-native", 20_000, 30, upstream_s=upstream_s, upstream_max_s=busiest_s),
            row("levee-wasm", 16_000, 33, upstream_s=upstream_s, upstream_max_s=busiest_s),
        ]

    def test_table_has_ratios_to_haproxy_and_nginx(self):
        lines = report.gets_table(self.rows())
        self.assertIn("× HAProxy | × nginx", lines[0])
        self.assertRegex(lines[4], r"^\| nginx \| 32,000 .*\| 0\.80× \| 1\.00× \|")
        self.assertRegex(lines[6], r"^\| levee-wasm \| 16,000 .*\| 0\.40× \| 0\.50× \|")

    def test_bottleneck_check_passes_with_cheap_idle_upstreams(self):
        self.assertIn("**the proxies were the bottleneck**", report.bottleneck_check(self.rows()))

    def test_bottleneck_check_warns_when_direct_is_no_faster(self):
        self.assertIn("**warning", report.bottleneck_check(self.rows(direct_rps=45_000)))

    def test_bottleneck_check_warns_when_an_upstream_is_saturated(self):
        self.assertIn("**warning", report.bottleneck_check(self.rows(busiest_s=9.5)))

    def test_bottleneck_check_warns_when_upstreams_cost_more_than_the_proxy(self):
        self.assertIn("**warning", report.bottleneck_check(self.rows(upstream_s=8.0)))

    def test_wasm_over_native(self):
        line = report.wasm_vs_native(self.rows())
        self.assertIn("throughput **0.800×**", line)
        self.assertIn("peak RSS 1.10×", line)

    def test_one_section_per_upstream_kind(self):
        sections = [report.Section("nginx", "three nginx", self.rows(), [], {}, []),
                    report.Section("kv-replica", "three replicas", self.rows(), [], {}, [])]
        text = report.render("t", ["pre"], sections, 64, 16)
        self.assertEqual(text.count("| target | req/s |"), 2)
        self.assertIn("cheap nginx upstreams (`return 200`)", text)
        self.assertIn("### Goals (kv-replica upstreams)", text)


class H2loadParsing(unittest.TestCase):
    LOG = "".join(f"17961893701{index:05d}\t200\t{(index + 1) * 10}\n" for index in range(100))

    def test_summary_and_log_are_parsed(self):
        run = h2load.parse(H2LOAD_STDOUT, self.LOG + "1796189370199999\t-1\t999999\n", "https://x")
        # Every answer counts, non-2xx ones are errors besides, as with wrk.
        self.assertEqual(run.result.requests, 95812)
        # The duration follows from the succeeded requests and h2load's rate.
        self.assertEqual(run.result.duration_us, 5_000_000)
        self.assertEqual(run.result.errors_by_kind, {"status": 5, "errored": 5, "timeout": 2})
        self.assertEqual(run.result.errors, 12)
        # Percentiles from the log (nearest rank); the failed stream (-1) is left out.
        self.assertEqual((run.result.p50_us, run.result.p99_us, run.result.max_us),
                         (500, 990, 1000))
        self.assertEqual(run.protocol, "h2")
        self.assertEqual(run.tls, "TLSv1.3, TLS_AES_256_GCM_SHA384, X25519 253 bits")
        self.assertEqual(run.body_bytes, 6131968)

    def test_without_a_log_the_summary_line_stands_in(self):
        run = h2load.parse(H2LOAD_STDOUT, "", "https://x")
        self.assertEqual((run.result.p50_us, run.result.p99_us, run.result.max_us),
                         (10_880, 0, 80_490))

    def test_no_summary_or_no_h2_is_an_error(self):
        with self.assertRaises(h2load.H2loadError):
            h2load.parse("starting benchmark...\n", "", "https://x")
        for protocol_line in ("Application protocol: http/1.1\n", ""):
            stdout = H2LOAD_STDOUT.replace("Application protocol: h2\n", protocol_line)
            with self.assertRaises(h2load.H2loadError):
                h2load.parse(stdout, self.LOG, "https://x")
        # An h2load error is a wrk error to the harness (same handling).
        self.assertTrue(issubclass(h2load.H2loadError, wrk.WrkError))

    def test_durations_and_percentiles(self):
        self.assertEqual(h2load.duration_us("837us"), 837)
        self.assertEqual(h2load.duration_us("10.88ms"), 10_880)
        self.assertEqual(h2load.duration_us("1.5s"), 1_500_000)
        with self.assertRaises(h2load.H2loadError):
            h2load.duration_us("3 ms")
        self.assertEqual(h2load.percentile([], 0.5), 0)
        self.assertEqual(h2load.percentile([7], 0.99), 7)
        self.assertEqual(h2load.percentile(list(range(1, 11)), 0.5), 5)
        self.assertEqual(h2load.percentile(list(range(1, 11)), 0.99), 10)

    def test_command_and_uri_file_are_the_same_for_every_target(self):
        load = h2load.Load(64, 10, 1, 5, 4, "/bench/kv/")
        argv = h2load.argv(load, Path("/t/uris.txt"), Path("/t/log.tsv"))
        for option in ("--clients=64", "--max-concurrent-streams=10", "--threads=1",
                       "--duration=5", "--npn-list=h2", "--log-file=/t/log.tsv",
                       "--input-file=/t/uris.txt",
                       f"--tls13-ciphers={h2load.TLS13_CIPHER}"):
            self.assertIn(option, argv)
        self.assertEqual(argv[0], "h2load")
        self.assertEqual(
            h2load.uris("https://127.0.0.1:9/", "/bench/kv/", 4).splitlines(),
            ["https://127.0.0.1:9/bench/kv/key-00001", "/bench/kv/key-00002",
             "/bench/kv/key-00003", "/bench/kv/key-00000"],
        )


def tls_files() -> tls.TlsFiles:
    return tls.TlsFiles(Path("/t/cert.pem"), Path("/t/key.pem"), Path("/t/haproxy.pem"))


class TlsConfigs(unittest.TestCase):
    def test_haproxy_terminates_tls_with_alpn_and_hashes_the_path(self):
        text = targets.haproxy_config("127.0.0.1:1", fake_upstreams(), 2, tls=tls_files())
        for setting in ("bind 127.0.0.1:1 ssl crt /t/haproxy.pem alpn h2,http/1.1\n",
                        "balance uri path-only\n", "hash-type consistent", "nbthread 2",
                        "server upstream-0 127.0.0.1:40000\n"):
            self.assertIn(setting, text)
        plain = targets.haproxy_config("127.0.0.1:1", fake_upstreams(), 2)
        self.assertIn("bind 127.0.0.1:1\n", plain)
        self.assertIn("balance hdr(x-key)\n", plain)
        self.assertNotIn(" ssl ", plain)

    def test_nginx_terminates_tls_with_http2_and_hashes_the_path(self):
        text = targets.nginx_config("127.0.0.1:1", fake_upstreams(), Path("/tmp/p"), 2,
                                    tls=tls_files())
        for setting in ("listen 127.0.0.1:1 ssl http2;", "ssl_certificate /t/cert.pem;",
                        "ssl_certificate_key /t/key.pem;", "ssl_protocols TLSv1.2 TLSv1.3;",
                        "hash $request_uri consistent;", "keepalive_requests 100000;",
                        "proxy_pass http://kv;"):
            self.assertIn(setting, text)
        plain = targets.nginx_config("127.0.0.1:1", fake_upstreams(), Path("/tmp/p"), 2)
        self.assertIn("listen 127.0.0.1:1;", plain)
        self.assertIn("hash $http_x_key consistent;", plain)
        self.assertNotIn("ssl_", plain)
        self.assertNotIn(" ssl http2", plain)
        self.assertNotIn("{{", text + plain)

    def test_levee_tls_is_the_data_listener_and_http2(self):
        members = fake_members()
        config = levee.config("native", members, Path("/d"), tls=tls_files())
        self.assertEqual(config["listeners"]["tls"],
                         {"data": {"cert_chain_file": "/t/cert.pem", "key_file": "/t/key.pem"}})
        self.assertEqual(config["server"], {"http2": {"enabled": True, "streams_max": 100}})
        plain = levee.config("native", members, Path("/d"))
        self.assertNotIn("tls", plain["listeners"])
        self.assertNotIn("server", plain)
        # Otherwise the same config as the plain row's.
        del config["listeners"]["tls"], config["server"]
        self.assertEqual(config, plain)
        # conns.py's server overrides keep the HTTP/2 settings.
        both = levee.config("native", members, Path("/d"), tls=tls_files(),
                            overrides=levee.Overrides(server={"connections_max": 9}))
        self.assertEqual(both["server"]["connections_max"], 9)
        self.assertIn("http2", both["server"])

    def test_listening_line_with_or_without_a_scheme(self):
        for line in ("listening data=127.0.0.1:5 admin=127.0.0.1:6",
                     "listening data=https://127.0.0.1:5 admin=http://127.0.0.1:6"):
            match = re.search(levee.LISTENING_PATTERN, line)
            self.assertEqual(match.groups(), ("127.0.0.1", "5", "127.0.0.1", "6"))

    def test_tls_targets_have_https_urls_and_probes(self):
        context = ssl.create_default_context()
        running = targets.Running("haproxy-tls", "127.0.0.1", 9, "/kv/", None,
                                  ssl_context=context)
        self.assertEqual(running.url, "https://127.0.0.1:9")
        self.assertEqual(probe.Connection("127.0.0.1", 9, context).scheme, "https")
        self.assertEqual(probe.Connection("127.0.0.1", 9).scheme, "http")

    def test_the_certificate_command(self):
        argv = tls.openssl_argv(Path("/t/c.pem"), Path("/t/k.pem"))
        self.assertEqual(argv[:3], ["openssl", "req", "-x509"])
        text = " ".join(argv)
        for part in ("-newkey ec -pkeyopt ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout /t/k.pem", "-out /t/c.pem", "subjectAltName=IP:127.0.0.1"):
            self.assertIn(part, text)


@unittest.skipUnless(shutil.which("openssl"), "openssl not installed")
class TlsHandshakes(unittest.TestCase):
    """The real certificate, against a tiny TLS server with a chosen ALPN."""

    def serve_once(self, files: tls.TlsFiles, protocols: list[str]) -> int:
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(files.cert, files.key)
        server.set_alpn_protocols(protocols)
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)

        def accept():
            for _ in range(2):  # check_alpn handshakes twice
                conn, _ = listener.accept()
                try:
                    with server.wrap_socket(conn, server_side=True) as tls_conn:
                        tls_conn.recv(1)
                except (OSError, ssl.SSLError):
                    pass

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 5)
        return listener.getsockname()[1]

    def test_certificate_verifies_and_alpn_is_checked(self):
        with tempfile.TemporaryDirectory() as work:
            files = tls.make_certificate(Path(work))
            self.assertIn("BEGIN PRIVATE KEY", files.key.read_text())
            self.assertEqual(files.combined.read_text(),
                             files.cert.read_text() + files.key.read_text())
            port = self.serve_once(files, ["h2", "http/1.1"])
            session = tls.check_alpn("t", "127.0.0.1", port, files)
            self.assertEqual(session.alpn, "h2")
            self.assertTrue(session.version.startswith("TLSv1."))
            # A server without h2 is refused.
            port = self.serve_once(files, ["http/1.1"])
            with self.assertRaises(tls.TlsError):
                tls.check_alpn("t", "127.0.0.1", port, files)


class TlsReport(unittest.TestCase):
    def part(self, native_h1: float = 20_000, native_h2: float = 30_000,
             client_s: float = 2.0) -> report.TlsPart:
        def tls_row(name, rps, target_s):
            measured = row(name, rps, target_s=target_s)
            measured.usage = cpu.Usage(10.0, target_s, 1.0, client_s, {0: 1.0, 1: 1.0}, 0.5)
            return measured

        h1 = [tls_row("haproxy", 30_000, 6.0), tls_row("nginx", 25_000, 6.0),
              tls_row("levee-native", native_h1, 8.0)]
        h2 = [tls_row("haproxy", 40_000, 6.0), tls_row("nginx", 20_000, 6.0),
              tls_row("levee-native", native_h2, 8.0)]
        return report.TlsPart(h1, h2, "wrk", "h2load", 1, 1, {"haproxy": "h2"}, "setup")

    def plain(self) -> list[report.Row]:
        # levee-native 0.50× HAProxy and 0.625× nginx over plain HTTP.
        return [row("direct", 100_000), row("haproxy", 40_000, target_s=4.0),
                row("nginx", 32_000, target_s=4.0), row("levee-native", 20_000, target_s=8.0)]

    def test_ratios_per_mode_and_relative_to_plain(self):
        found = {(name, peer): ratios for name, peer, ratios in
                 report.tls_ratios(self.plain(), self.part())}
        ratios = found[("levee-native", "haproxy")]
        self.assertAlmostEqual(ratios["plain HTTP/1.1"], 0.5)
        self.assertAlmostEqual(ratios["TLS + HTTP/1.1"], 2 / 3)
        self.assertAlmostEqual(ratios["HTTP/2 over TLS"], 0.75)
        table = "\n".join(report.tls_ratio_table(self.plain(), self.part()))
        self.assertIn("| levee-native | haproxy, throughput | 0.50× | 0.67× | 0.75× | 1.33× | 1.50× |",
                      table)
        # By CPU: haproxy 10 / 20 / 15 µs per request, levee-native 40 / 40 / 26.7.
        self.assertIn("| levee-native | haproxy, CPU per request | 0.25× | 0.50× | 0.56× | 2.00× "
                      "| 2.25× |", table)

    def test_goal_met_only_without_extra_relative_loss(self):
        lines = "\n".join(report.tls_goals(self.plain(), self.part()))
        self.assertRegex(lines, r"CPU per request ratio to haproxy, TLS \+ HTTP/1\.1, .*\(2\.00\) "
                         r"\| \*\*met\*\*")
        self.assertRegex(lines, r"throughput ratio to haproxy, TLS \+ HTTP/1\.1, .*\(1\.33\) \| \*\*met\*\*")
        # 0.96 of the plain ratio: within the allowance; 0.92: not.
        lines = "\n".join(report.tls_goals(self.plain(), self.part(native_h1=14_400,
                                                                   native_h2=27_000)))
        self.assertRegex(lines, r"throughput ratio to haproxy, TLS \+ HTTP/1\.1, .*\(0\.96\) \| "
                         r"\*\*met")
        self.assertRegex(lines, r"throughput ratio to haproxy, HTTP/2 over TLS, .*\(1\.35\) \| "
                         r"\*\*met")
        self.assertRegex(lines, r"throughput ratio to nginx, TLS \+ HTTP/1\.1, .*\(0\.92\) \| "
                         r"\*\*not met")

    def test_cpu_added_by_tls(self):
        table = "\n".join(report.tls_cost_table(self.plain(), self.part()))
        # haproxy: 4.0 s over 400,000 requests plain, 6.0 s over 300,000 with TLS.
        self.assertIn("| haproxy | 10.0 | 20.0 | +10.0 | 15.0 | +5.0 |", table)

    def test_client_check_warns_when_the_load_generator_is_saturated(self):
        self.assertIn("**the proxies were the bottleneck**",
                      report.bottleneck_check(self.part().h1_rows, 1))
        self.assertIn("**warning", report.bottleneck_check(self.part(client_s=9.5).h1_rows, 1))
        # Without a thread count (the plain rows) the client is not checked.
        self.assertNotIn("load generator", report.bottleneck_check(self.part().h1_rows))

    def test_rendered_with_its_goals(self):
        section = report.Section("nginx", "three", self.plain(), [], {}, [], self.part())
        text = report.render("t", ["pre"], [section], 64, 16)
        self.assertIn("## TLS and HTTP/2, 64 connections", text)
        self.assertIn("### HTTP/2 over TLS: h2load", text)
        self.assertIn("| h2load µs/req |", text)
        self.assertIn("Negotiated: haproxy: h2.", text)
        self.assertLess(text.index("## TLS and HTTP/2"), text.index("### Goals"))
        self.assertIn("levee-native throughput ratio to nginx, HTTP/2 over TLS", text)
        # Without --tls nothing of it.
        plain = report.render("t", ["pre"], [report.Section("nginx", "three", self.plain(), [],
                                                            {}, [])], 64, 16)
        self.assertNotIn("TLS", plain)


class Goals(unittest.TestCase):
    def test_verdicts_follow_the_numbers(self):
        rows = [row("haproxy", 1000), row("nginx", 2000), row("levee-native", 1500, 200),
                row("levee-wasm", 1480)]
        writes = [report.WriteRow("fast", result(100, 10_000), [10_000]),
                  report.WriteRow("slow", result(100, 13_000), [13_000])]
        lines = "\n".join(report.goals(rows, writes, {}))
        self.assertRegex(lines, r"≥ haproxy \| 1\.48× .*\*\*met\*\*")
        self.assertRegex(lines, r"≥ nginx \| 0\.74× .*\*\*not met\*\*")
        self.assertRegex(lines, r"levee-native peak RSS < 128 MiB \| 200\.0 MiB \| \*\*not met")
        self.assertRegex(lines, r"cost < 5% throughput vs native \| \+1\.3% .*\*\*met\*\*")
        self.assertRegex(lines, r"quorum-write p50 \| \+30\.0% .*\*\*not met\*\*")


class CommandLine(unittest.TestCase):
    def parse(self, *argv: str):
        with contextlib.redirect_stderr(io.StringIO()):
            return peers.parse_args(list(argv))

    def test_defaults_are_the_honest_bench(self):
        args = self.parse()
        self.assertEqual(args.upstream, ["nginx"])
        self.assertEqual((args.wrk_threads, args.connections, args.duration_s, args.rounds),
                         (1, 64, 5, 3))
        self.assertEqual(args.proxy_threads, 2)
        self.assertEqual(args.keys, 1000)
        self.assertEqual(args.targets, list(peers.GET_TARGETS))
        self.assertEqual(args.levee_bin, peers.REPO_DIR / "target/release/levee")
        self.assertEqual(args.plugins_dir, peers.REPO_DIR / "plugins/dist")
        self.assertFalse(peers.writes_wanted(args))

    def test_both_upstream_kinds_and_a_given_binary(self):
        args = self.parse("--upstream", "nginx,kv-replica", "--levee-bin", "/x/levee",
                          "--plugins-dir", "/x/dist")
        self.assertEqual(args.upstream, ["nginx", "kv-replica"])
        self.assertEqual((args.levee_bin, args.plugins_dir), (Path("/x/levee"), Path("/x/dist")))
        self.assertTrue(peers.writes_wanted(args))
        self.assertFalse(peers.writes_wanted(self.parse("--upstream", "kv-replica", "--no-writes")))

    def test_levee_binary_needed_only_for_levee_or_kv_replicas(self):
        self.assertFalse(peers.needs_levee_bin(self.parse("--targets", "direct,haproxy")))
        self.assertTrue(peers.needs_levee_bin(self.parse("--targets", "direct",
                                                         "--upstream", "kv-replica")))

    def test_a_report_of_the_same_day_is_not_overwritten(self):
        with tempfile.TemporaryDirectory() as results:
            results = Path(results)
            self.assertEqual(peers.default_out(results, "2026-12-01").name, "peers-2026-12-01.md")
            (results / "peers-2026-12-01.md").write_text("earlier run")
            self.assertEqual(peers.default_out(results, "2026-12-01").name, "peers-2026-12-01-2.md")
            (results / "peers-2026-12-01-2.md").write_text("earlier run")
            self.assertEqual(peers.default_out(results, "2026-12-01").name, "peers-2026-12-01-3.md")

    def test_bad_upstream_lists_are_refused(self):
        for value in ("apache", "nginx,nginx", ","):
            with self.assertRaises(SystemExit):
                self.parse("--upstream", value)

    def test_tls_rows_are_opt_in(self):
        args = self.parse()
        self.assertFalse(args.tls)
        self.assertEqual(peers.tls_targets(args), [])
        args = self.parse("--tls")
        self.assertEqual(peers.tls_targets(args), ["haproxy", "nginx", "levee-native"])
        self.assertEqual((args.h2_streams, args.h2load_threads), (10, 1))
        # Wasm plugins are needed for a Wasm TLS target even if no plain one.
        args = self.parse("--tls", "--targets", "haproxy", "--tls-targets", "levee-wasm-cached")
        self.assertEqual(peers.wasm_targets(args), {"levee-wasm-cached"})
        self.assertTrue(peers.needs_levee_bin(args))
        self.assertFalse(peers.needs_levee_bin(self.parse("--targets", "haproxy",
                                                          "--tls-targets", "levee-native")))

    def test_bad_tls_options_are_refused(self):
        for argv in (("--tls", "--upstream", "kv-replica"), ("--tls", "--tls-targets", "direct"),
                     ("--tls-targets", ","), ("--h2-streams", "0"),
                     ("--h2load-threads", "65")):
            with self.assertRaises(SystemExit):
                self.parse(*argv)


if __name__ == "__main__":
    unittest.main()

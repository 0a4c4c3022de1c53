"""Unit tests for the harness's pure parts: parsing wrk's result line,
the generated configs (upstream and proxy nginx, HAProxy, levee), the /proc
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
import tempfile
import unittest
from pathlib import Path

import peers
from peerbench import cpu, levee, procs, profile, report, targets, templates, upstreams, wrk
from peerbench.replicas import Replica

WRK_STDOUT = """Running 10s test @ http://127.0.0.1:1
  2 threads and 64 connections
Requests/sec:  12345.00
WRK_RESULT {"requests":123450,"duration_us":10000000,"bytes":9000000,"p50_us":4000,\
"p99_us":15000,"max_us":30000,"errors_connect":0,"errors_read":2,"errors_write":0,\
"errors_status":3,"errors_timeout":0}
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


if __name__ == "__main__":
    unittest.main()

"""Unit tests for the harness's pure parts: parsing wrk's result line,
filling templates, grouping profile samples, the CPU arithmetic and the
goal verdicts. The measuring parts are exercised by running the benchmark
itself, which checks every target's answers before measuring it.

Run: python3 -m unittest discover -s bench -p 'test_*.py'
"""

from __future__ import annotations

import unittest

from peerbench import cpu, profile, report, targets, wrk

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


def usage(target_s: float = 5.0) -> cpu.Usage:
    return cpu.Usage(10.0, target_s, 4.0, 2.0, {0: 1.0, 1: 1.0})


def row(name: str, rps: float, rss_mib: float = 10.0) -> report.Row:
    return report.Row(name, name, result(rps), int(rss_mib * report.MIB), usage(), [rps])


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
            targets.render("haproxy.cfg.tmpl", {"threads": "1", "listen": "127.0.0.1:1"})

    def test_filled_template_keeps_the_peer_settings(self):
        text = targets.render(
            "haproxy.cfg.tmpl",
            {"threads": "1", "listen": "127.0.0.1:1", "servers": "    server a 127.0.0.1:2"},
        )
        for setting in ("balance hdr(x-key)", "hash-type consistent", "retries 3",
                        "option redispatch", "nbthread 1"):
            self.assertIn(setting, text)


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


if __name__ == "__main__":
    unittest.main()

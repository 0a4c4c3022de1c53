"""The peer benchmark's machinery: levee, HAProxy, nginx and the bare upstream
measured side by side in one run, in front of the same upstreams, with the
same load.

Why Python and not bash: the harness has to read ports that processes pick
for themselves, poll for readiness with a bound, sum the peak RSS of a
process tree, and stop everything it started by PID even when a step fails
half-way. Those are a few lines each here and fragile in bash.

Modules, one concept each:
- `procs`: starting processes (pinned, logged) and stopping them by PID.
- `probe`: tiny HTTP client for preloading, readiness and correctness checks.
- `templates`: config files from the templates, free loopback ports.
- `upstreams`: the three upstreams, cheap nginx `return 200` (default) or
  kv-replicas, and the body a GET must return.
- `replicas`: the three `levee kv-replica` upstreams and their fault knob.
- `levee`: the levee configuration this benchmark runs (the one integration point).
- `targets`: how each peer is started (direct, HAProxy, nginx, levee).
- `wrk`: running wrk and reading its result line.
- `h2load`: running h2load (HTTP/2 rows) and reading its summary and log.
- `tls`: the TLS rows' certificate, and checking what each target negotiates.
- `cpu`: where the CPU went during a run (ours per process, and foreign).
- `profile`: `perf record` of each levee, samples grouped by what they run.
- `report`: the Markdown tables, the ratios, the bottleneck check, the goals.

The memory-per-connection bench (conns.py) adds:
- `fdlimit`: raising RLIMIT_NOFILE for tens of thousands of connections.
- `clients`: thousands of keep-alive client connections from one process.
- `hold_server` / `hold`: an upstream that holds requests until released.
- `memtargets`: the same proxies configured for many long-lived connections.
- `memrounds`: one idle or in-flight measurement of a proxy's RSS.
- `memreport`: its table, ratios to HAProxy and goals.
"""

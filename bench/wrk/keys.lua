-- Shared by get.lua and put.lua: the keyspace walk and the result line.
--
-- Why a deterministic walk instead of math.random: every target must see the
-- same request sequence, or a lucky key distribution could favour one of
-- them. Each wrk thread starts at its own offset (set in setup) and then
-- walks the keyspace in order, so with N keys every key is hit equally.
--
-- Why the result is printed as one JSON line: wrk's human-readable summary
-- rounds latencies to two digits and switches units (us/ms/s); the harness
-- needs exact microseconds and error counts, which only done() can see.

local keys = {}

keys.count = 1000
keys.prefix = "/kv/"

-- Per-thread walk position (each wrk thread has its own Lua state).
local position = 0

-- Key names must match what the harness preloads: key-00000 .. key-NNNNN.
function keys.name(index)
  return string.format("key-%05d", index)
end

-- args: [1] = number of keys, [2] = path prefix in front of the key.
function keys.init(args)
  keys.count = tonumber(args[1]) or keys.count
  keys.prefix = args[2] or keys.prefix
  -- `thread_index` is the global that setup() put into this thread's state.
  local index = tonumber(rawget(_G, "thread_index")) or 0
  position = (index * 7919) % keys.count
end

function keys.next()
  position = (position + 1) % keys.count
  return keys.name(position)
end

-- Called from setup(): gives each thread a distinct, reproducible offset.
local threads_started = 0
function keys.setup(thread)
  thread:set("thread_index", threads_started)
  threads_started = threads_started + 1
end

-- Prints the line the harness parses. Latencies are in microseconds.
function keys.report(summary, latency)
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
    '"errors_status":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end

return keys

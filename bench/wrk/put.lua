-- PUT /kv/<key> with a small body, for the quorum-write measurement.
-- Usage: wrk ... -s put.lua URL -- <keys_count> <path_prefix>
--
-- Bodies are 64 bytes, the size of the preloaded values, and name the key so
-- a replica comparison after the run could tell writes apart.
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local keys = require("keys")

function setup(thread)
  keys.setup(thread)
end

function init(args)
  keys.init(args)
end

function request()
  local key = keys.next()
  local body = string.format("%-64s", "written-" .. key)
  return wrk.format("PUT", keys.prefix .. key,
    { ["x-key"] = key, ["content-type"] = "application/octet-stream" }, body)
end

function done(summary, latency, requests)
  keys.report(summary, latency)
end

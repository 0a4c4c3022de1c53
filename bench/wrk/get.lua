-- GET /kv/<key> over the preloaded keyspace, for every target alike.
-- Usage: wrk ... -s get.lua URL -- <keys_count> <path_prefix>
--
-- The key also travels in an `x-key` header: that is what HAProxy
-- (`balance hdr(x-key)`) and nginx (`hash $http_x_key`) hash on, while levee
-- and the replica read it from the path. Sending it everywhere keeps the
-- requests byte-identical across targets.
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
  return wrk.format("GET", keys.prefix .. key, { ["x-key"] = key })
end

function done(summary, latency, requests)
  keys.report(summary, latency)
end

-- wrk script for the failover runs: counts every response whose status is not 2xx
-- (wrk's own "Non-2xx or 3xx" counter lets 3xx through) and prints one JSON line
-- (prefixed "BENCH_JSON ") with those counts and wrk's socket errors.
-- Each wrk thread has its own Lua state: setup() keeps the threads so done() can
-- add up their counters.
--
-- The load is bounded: the first script argument (`wrk ... -- MS`) is a pause in
-- milliseconds before each request on a connection, so every proxy gets about the
-- same request rate whatever its speed, and the failure counts compare.
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  pause_ms = tonumber(args[1]) or 0
  responses = 0
  non2xx = 0
  statuses = {}
end

delay = function()
  return pause_ms
end

response = function(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

done = function(summary, latency, requests)
  local total, bad, by_status = 0, 0, {}
  for _, t in ipairs(threads) do
    total = total + t:get("responses")
    bad = bad + t:get("non2xx")
    for code, n in pairs(t:get("statuses")) do
      by_status[code] = (by_status[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(by_status) do
    table.insert(parts, string.format('"%d":%d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"responses":%d,"non2xx":%d,"statuses":{%s},'
    .. '"socket_errors":%d,"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
    .. '"p99_us":%d,"max_us":%d}\n',
    summary.requests, total, bad, table.concat(parts, ","),
    e.connect + e.read + e.write + e.timeout, e.connect, e.read, e.write, e.timeout,
    latency:percentile(99), latency.max))
end

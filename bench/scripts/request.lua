-- One wrk script for every scenario. Settings come from the environment:
--   BENCH_METHOD, BENCH_TOKEN, BENCH_PATHS (space-separated, picked at random),
--   BENCH_METHODS (space-separated, one a path: path i is requested with method i; empty
--   for BENCH_METHOD on every path),
--   BENCH_BODIES (|-separated, picked at random; empty for none),
--   BENCH_HEADERS (newline-separated "Name: value" lines, sent with every request),
--   BENCH_UNIQUE_HEADER (a header sent with a new value on every request; empty for none),
--   BENCH_THINK_MS (each connection waits about this long, ±50 % at random, before each
--   request; 0 for none).
-- Responses are counted by status so 409s can be reported apart.
local method = os.getenv("BENCH_METHOD") or "GET"
local token = os.getenv("BENCH_TOKEN") or ""
local paths, methods, bodies = {}, {}, {}
for p in string.gmatch(os.getenv("BENCH_PATHS") or "/", "%S+") do table.insert(paths, p) end
for m in string.gmatch(os.getenv("BENCH_METHODS") or "", "%S+") do table.insert(methods, m) end
for b in string.gmatch(os.getenv("BENCH_BODIES") or "", "[^|]+") do table.insert(bodies, b) end
local unique = os.getenv("BENCH_UNIQUE_HEADER") or ""
local think = tonumber(os.getenv("BENCH_THINK_MS") or "0") or 0
local extra = {}
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then extra[name] = value end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  -- each thread's values start with a prefix of its own, so no two requests share one
  prefix = string.format("%d-%d-", os.time(), math.random(1000000000))
  sent = 0
end

function request()
  local headers = {}
  for name, value in pairs(extra) do headers[name] = value end
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  if unique ~= "" then
    sent = sent + 1
    headers[unique] = prefix .. sent
  end
  local body = nil
  if #bodies > 0 then
    body = bodies[math.random(#bodies)]
    headers["Content-Type"] = "application/json"
  end
  local i = math.random(#paths)
  return wrk.format(methods[i] or method, paths[i], headers, body)
end

if think > 0 then
  function delay()
    return math.floor(think * (0.5 + math.random()))
  end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for code, n in pairs(s) do total[code] = (total[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(total) do table.insert(parts, string.format('"%d":%d', code, n)) end
  io.write(string.format('BENCH_RESULT {"p50":%f,"p99":%f,"statuses":{%s}}\n',
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, table.concat(parts, ",")))
end

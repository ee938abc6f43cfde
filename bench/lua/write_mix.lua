-- Pairs of writes: submit a permit as the requester, then approve it as the head.
-- Each thread has its own workspaces and walks forward through 30-minute windows,
-- so approvals never conflict.
-- env: BENCH_LUA, BENCH_WORKSPACES (file, one code per line), BENCH_T0 (epoch seconds),
--      BENCH_REQUESTER, BENCH_HEAD (bearer tokens), BENCH_THREADS (of every wrk at once),
--      BENCH_TID_OFFSET (optional: this wrk's first thread among them)
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local common = require("common")
local workspaces = common.lines(os.getenv("BENCH_WORKSPACES"))
local threads = tonumber(os.getenv("BENCH_THREADS"))
local t0 = tonumber(os.getenv("BENCH_T0"))
local requester = "Bearer " .. os.getenv("BENCH_REQUESTER")
local head = "Bearer " .. os.getenv("BENCH_HEAD")
local attestations = '{"no_uniform_misuse":true,"no_confidential_information":true,'
  .. '"no_disparagement":true,"no_demeaning_content":true,'
  .. '"no_sara_hoax_or_negative_content":true,"political_neutrality":true}'
local created = tonumber(os.getenv("BENCH_TID_OFFSET") or "0")

function setup(thread)
  created = created + 1
  thread:set("tid", created - 1)
end

local n = 0
local queue = {}

local function iso(epoch)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", epoch)
end

request = function()
  local id = table.remove(queue)
  if id then
    return wrk.format("POST", "/api/v1/permits/" .. id .. "/approve",
      { ["Authorization"] = head, ["Content-Type"] = "application/json" }, "{}")
  end
  local per = math.floor(#workspaces / threads)
  local ws = workspaces[tid * per + (n % per) + 1]
  local start = t0 + math.floor(n / per) * 1800
  n = n + 1
  local body = '{"workspace_code":"' .. ws .. '","platform":"youtube","channel":"@bench.' .. ws
    .. '","purpose":"official","title":"Bench","starts_at":"' .. iso(start)
    .. '","ends_at":"' .. iso(start + 1800) .. '","attestations":' .. attestations .. '}'
  return wrk.format("POST", "/api/v1/permits",
    { ["Authorization"] = requester, ["Content-Type"] = "application/json" }, body)
end

response = function(status, headers, body)
  if status == 201 then
    queue[#queue + 1] = body:match('"id":"([^"]+)"')
  end
end

-- POST one of many JSON bodies (one per line) to one path, with the harness's credential
-- when it gives one.
-- env: BENCH_BODIES (file, one JSON body per line), BENCH_POST_PATH, BENCH_HEADER (optional)
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local common = require("common")
local bodies = common.lines(os.getenv("BENCH_BODIES"))
local path = os.getenv("BENCH_POST_PATH")
local headers = { ["Content-Type"] = "application/json" }
local credential = os.getenv("BENCH_HEADER")
if credential then
  local name, value = credential:match("^([^:]+):%s*(.*)$")
  headers[name] = value
end
local i = 0

request = function()
  i = i + 1
  return wrk.format("POST", path, headers, bodies[(i % #bodies) + 1])
end

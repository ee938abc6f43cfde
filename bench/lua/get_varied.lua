-- GET the path prefix + one of many suffixes (queries or ids), with the harness's credential.
-- env: BENCH_PATHS (file, one path per line), BENCH_HEADER ("Name: value")
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local common = require("common")
local paths = common.lines(os.getenv("BENCH_PATHS"))
local name, value = os.getenv("BENCH_HEADER"):match("^([^:]+):%s*(.*)$")
local i = 0

request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1], { [name] = value })
end

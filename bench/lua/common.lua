-- Shared by the scripts: credentials and a list of query strings from the harness.
local M = {}

function M.lines(path)
  local out = {}
  for line in io.lines(path) do
    if #line > 0 then out[#out + 1] = line end
  end
  return out
end

return M

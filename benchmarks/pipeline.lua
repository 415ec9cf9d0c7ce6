-- wrk script: HTTP/1.1 pipelining. Each write carries `depth` requests back to back
-- (default 16, or the first argument after `--`), the way TechEmpower's plaintext test does.
-- wrk counts every response it parses, so "requests" is responses answered.
--
--   wrk -t1 -c256 -d5s -s benchmarks/pipeline.lua http://127.0.0.1:8000/ -- 16

local depth = 16
local batch = nil

init = function(args)
  if args[1] ~= nil then
    depth = tonumber(args[1])
  end
  local requests = {}
  for i = 1, depth do
    requests[i] = wrk.format()
  end
  -- Built once per thread: request() then returns the same string with no Lua work.
  batch = table.concat(requests)
end

request = function()
  return batch
end

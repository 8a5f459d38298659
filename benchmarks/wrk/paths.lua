-- wrk script: cycle through the request targets listed in a file, one per line.
--
--   wrk -t1 -c64 -d10s --latency -s benchmarks/wrk/paths.lua http://127.0.0.1:PORT -- FILE
--
-- Every request is formatted once at start-up, so the load generator costs the
-- same per request whatever the server (the reference nginx runs the same file).
-- Each wrk thread starts at a different offset of the list.

local reqs = {}
local n = 0
local i = 0

function init(args)
   local file = args[1]
   if file == nil then
      error("usage: wrk ... -s paths.lua URL -- FILE")
   end
   for line in io.lines(file) do
      if #line > 0 then
         n = n + 1
         reqs[n] = wrk.format("GET", line)
      end
   end
   if n == 0 then
      error("no request targets in " .. file)
   end
   i = (tonumber(offset) or 0) % n  -- set by setup() below
end

function setup(thread)
   thread_count = (thread_count or 0) + 1
   thread:set("offset", tostring((thread_count - 1) * 7919))
end

function request()
   i = i + 1
   if i > n then
      i = 1
   end
   return reqs[i]
end

-- wrk script: cycle through the request targets listed in a file, one per line, each
-- request made unique by an extra `&n=COUNTER` parameter the server ignores, so no cache
-- keyed by the request target (the HTTP front cache) can answer it: every request runs the
-- dialect's code (the answer itself still comes from the steering answer cache).
--
--   wrk -t1 -c64 -d10s --latency -s benchmarks/wrk/paths_nocache.lua URL -- FILE [START]
--
-- The plain and the encrypted /d cases both run through this script, so the load
-- generator costs the same per request on both sides.

local paths = {}
local n = 0
local i = 0
local counter = 0

function init(args)
   local file = args[1]
   if file == nil then
      error("usage: wrk ... -s paths_nocache.lua URL -- FILE [START]")
   end
   for line in io.lines(file) do
      if #line > 0 then
         n = n + 1
         paths[n] = line
      end
   end
   if n == 0 then
      error("no request targets in " .. file)
   end
   counter = tonumber(args[2] or "0")
   i = (tonumber(offset) or 0) % n
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
   counter = counter + 1
   return wrk.format("GET", paths[i] .. "&n=" .. counter)
end

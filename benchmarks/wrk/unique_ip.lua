-- wrk script: GET /d for NAMES services with a client address never seen before on
-- every request (each in its own /24, so nothing any cache keyed by URL, client key
-- or bucket holds can answer it): the miss path of the server.
--
--   wrk -t1 -c64 -d10s --latency -s benchmarks/wrk/unique_ip.lua URL -- NAMES DOMAIN [START [CLIENTS]]
--
-- With CLIENTS, the addresses cycle over that many distinct /24s (a population of
-- CLIENTS clients, each asking again every CLIENTS requests): the cost curves.

local names = 1000
local domain = "bench.example"
local i = 0
local clients = 0

function init(args)
   names = tonumber(args[1] or "1000")
   domain = args[2] or domain
   i = tonumber(args[3] or "0")
   clients = tonumber(args[4] or "0")
end

function request()
   i = i + 1
   local k = i
   if clients > 0 then
      k = i % clients
   end
   local a = 11 + math.floor(k / 65536) % 200
   local b = math.floor(k / 256) % 256
   local c = k % 256
   local path = string.format("/d?dn=svc%d.%s&ip=%d.%d.%d.%d", k % names, domain, a, b, c,
                              1 + k % 250)
   return wrk.format("GET", path)
end

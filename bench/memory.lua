-- Memory: resident set size (VmRSS) and Lua heap before and after 10^6
-- client:token() calls and 10^5 client:request GETs against the stand-in, each
-- measured after a warm-up and a full collection. A benchmark, not a test.
--
--   <lua> bench/memory.lua [token calls] [requests]
local tag = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
package.cpath = "./build/" .. tag .. "/?.so;" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path

local genesys = require "skewguard.genesys"
local standin = require "support.standin"

local TOKEN_CALLS = tonumber(arg[1]) or 1000000
local REQUESTS = tonumber(arg[2]) or 100000
-- Growth within this is noise (allocator arenas, the Lua heap's own slack).
local BOUND_KB = 512

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local kb
  for line in f:lines() do
    kb = kb or tonumber(line:match("^VmRSS:%s*(%d+)"))
  end
  f:close()
  return kb
end

local function settle()
  collectgarbage("collect")
  collectgarbage("collect")
  return rss_kb(), collectgarbage("count")
end

local s = standin.start { lifetime = 86400 }
local ok, err = pcall(function()
  local client = genesys.new { login_url = s.url, client_id = s.client_id, client_secret = s.client_secret,
    rate_limit = false }
  local name = jit and jit.version or _VERSION
  local function measure(label, n, fn)
    fn(math.max(1, math.floor(n / 100))) -- warm-up: connection, JIT traces, first tables
    local rss0, heap0 = settle()
    fn(n)
    local rss1, heap1 = settle()
    local grew = rss1 - rss0
    print(string.format("| %s | %s | %d | %d | %+d | %+.1f | %s |", name, label, rss0, rss1, grew, heap1 - heap0,
      grew <= BOUND_KB and "none beyond noise" or "**grew**"))
  end
  measure(string.format("%.0e `client:token()`", TOKEN_CALLS), TOKEN_CALLS, function(n)
    for _ = 1, n do assert(client:token()) end
  end)
  measure(string.format("%.0e `client:request` GETs", REQUESTS), REQUESTS, function(n)
    for _ = 1, n do assert(client:request("GET", "/api/v2/organizations/me")) end
  end)
  client:close()
end)
s:stop()
if not ok then error(err, 0) end

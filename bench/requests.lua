-- Request overhead: authenticated GETs through client:request against the stand-in
-- (keep-alive), next to a plain C libcurl loop with a fixed header (bench/curl_loop.c)
-- and a naive Python httpx wrapper (bench/httpx_naive.py), same server, interleaved
-- rounds. The client-side rate limiter is off (rate_limit = false): it would cap
-- the client at 300 requests a minute. A benchmark, not a test; prints Markdown.
--
--   <lua> bench/requests.lua [rounds] [requests per round]
local tag = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
package.cpath = "./build/" .. tag .. "/?.so;" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path

local core = require "skewguard.core"
local genesys = require "skewguard.genesys"
local standin = require "support.standin"

local ROUNDS = tonumber(arg[1]) or 25
local N = tonumber(arg[2]) or 500
local PYTHON = "/usr/bin/python3" -- Debian's, with python3-httpx (not a pyenv shim)
local PATH = "/api/v2/organizations/me"

local function median(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  local m = #c
  return m % 2 == 1 and c[(m + 1) / 2] or (c[m / 2] + c[m / 2 + 1]) / 2
end

-- Runs an external loop; it prints "requests seconds" for its timed part.
local function external(cmd, token)
  local p = assert(io.popen("env -u LD_PRELOAD BENCH_TOKEN='" .. token .. "' " .. cmd, "r"))
  local out = p:read("*a")
  p:close()
  local n, secs = out:match("^(%d+) ([%d.]+)")
  if not n then error("no result from: " .. cmd:match("^%S+") .. "\n" .. out, 0) end
  return tonumber(n) / tonumber(secs)
end

local s = standin.start { jwt = true, lifetime = 86400 }
local ok, err = pcall(function()
  local url = s.url .. PATH
  local client = genesys.new { login_url = s.url, client_id = s.client_id, client_secret = s.client_secret,
    rate_limit = false }
  local token = assert(client:token())
  local http = core.http()
  local fixed = { method = "GET", url = url, headers = { accept = "application/json",
    authorization = "Bearer " .. token } }

  local function lua_loop(fn)
    assert(fn()) -- warm-up: connection open
    local t0 = core.monotonic()
    for _ = 1, N do
      local res, e = fn()
      if not res or res.status ~= 200 then error("request failed: " .. tostring(e or res.status), 0) end
    end
    return N / (core.monotonic() - t0)
  end

  local variants = {
    { key = "curl", label = "plain C libcurl loop, fixed header (bench/curl_loop.c)",
      run = function() return external("build/bench/curl_loop " .. url .. " " .. N, token) end },
    { key = "client", label = "**`client:request`** (policy, fresh token, Date sampling; rate_limit = false)",
      run = function() return lua_loop(function() return client:request("GET", PATH) end) end },
    { key = "transport", label = "`core.http` binding alone, fixed header (no policy)",
      run = function() return lua_loop(function() return http:request(fixed) end) end },
    { key = "httpx", label = "Python httpx, naive wrapper (JWT payload decoded per call)",
      run = function() return external(PYTHON .. " bench/httpx_naive.py " .. url .. " " .. N, token) end },
  }
  local rates = {}
  for _, v in ipairs(variants) do rates[v.key] = {} end
  for _ = 1, ROUNDS do
    for _, v in ipairs(variants) do table.insert(rates[v.key], v.run()) end
    if os.getenv("BENCH_VERBOSE") then
      local line = {}
      for _, v in ipairs(variants) do line[#line + 1] = string.format("%s=%.0f", v.key, rates[v.key][#rates[v.key]]) end
      io.stderr:write(table.concat(line, " "), "\n")
    end
  end
  local name = jit and jit.version or _VERSION
  -- The machine is shared: other processes only ever slow a round down, so the
  -- best round of each variant is its own speed; the median shows the noise.
  local function best(t) local b = 0 for _, v in ipairs(t) do if v > b then b = v end end return b end
  local base_best, base_median = best(rates.curl), median(rates.curl)
  for _, v in ipairs(variants) do
    local b, m = best(rates[v.key]), median(rates[v.key])
    print(string.format("| %s | %s | %.0f | %.1f µs | **%.0f%%** | %.0f | %.0f%% |", name, v.label, b, 1e6 / b,
      100 * b / base_best, m, 100 * m / base_median))
  end
  io.stderr:write(string.format("REQUESTS %s client_vs_curl=%.3f (best rounds; medians %.3f) client_vs_httpx=%.2f\n",
    name:gsub(" ", "_"), best(rates.client) / base_best, median(rates.client) / base_median,
    best(rates.client) / best(rates.httpx)))
  http:close()
  client:close()
end)
s:stop()
if not ok then error(err, 0) end

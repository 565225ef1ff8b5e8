-- Driven by bench/renewal_storm.sh. For each configuration: start the stand-in
-- (tokens live `lifetime` s) and the gateway example, run wrk (2 threads, 200
-- connections) for `seconds`, read the stand-in's counters.
local socket = require "socket"
local standin = require "support.standin"
local gateway = require "support.gateway"
local nginx = require "support.nginx"

local seconds, lifetime = tonumber(arg[1]) or 10, tonumber(arg[2]) or 3
local CONNECTIONS = 200
-- no token is renewed before its advisory window opens (docs/token.md):
-- at most 1.5 + 0.3 s before expiry for a 3 s token
local mandatory = math.min(60, lifetime / 2)
local period = lifetime - (mandatory + math.min(0.1 * lifetime, 900))

local function wrk(port)
  local script = nginx.repo .. "/spec/support/wrk_status.lua"
  local p = assert(io.popen(("env -u LD_PRELOAD wrk -t2 -c%d -d%ds --timeout 10s -s %s " ..
    "http://127.0.0.1:%d/api/v2/organizations/me 2>&1"):format(CONNECTIONS, seconds, nginx.sh_quote(script), port)))
  local out = p:read("*a")
  p:close()
  local ok, other = 0, 0
  for code, n in out:gmatch("status (%d+) (%d+)") do
    if code == "200" then ok = ok + tonumber(n) else other = other + tonumber(n) end
  end
  return ok, other
end

local function run(workers, store)
  local s = standin.start({ lifetime = lifetime })
  local g
  local ok, res = pcall(function()
    g = gateway.start({ standin = s, workers = workers, log_level = "notice",
      env = { SKEWGUARD_STORE = store and "on" or "off" } })
    local deadline = socket.gettime() + 5
    while s:counter("token_requests") < workers and socket.gettime() < deadline do socket.sleep(0.05) end
    s:control({ reset_counters = true })
    local t0 = socket.gettime()
    local n200, other = wrk(g.port)
    local elapsed = socket.gettime() - t0
    local c = s:counters()
    return { workers = workers, store = store, elapsed = elapsed, rps = n200 / elapsed, other = other,
      api_401 = c.api_401 or 0, tokens = c.token_requests or 0 }
  end)
  if g then g:stop() end
  s:stop()
  if not ok then error(res, 0) end
  return res
end

print(("### Renewal storm: %d clients through the gateway, %g s tokens, %d s per run"):format(CONNECTIONS,
  lifetime, seconds))
print()
print(("Renewal period (earliest advisory renewal): %.2f s, so at most ceil(%d / %.2f) + 1 = %d token " ..
  "requests per run with one renewal per period."):format(period, seconds, period, math.ceil(seconds / period) + 1))
print()
print("| workers | store | requests/s | non-200 | 401 at the stand-in | token requests | per renewal period |")
print("|---|---|---|---|---|---|---|")
for _, cfg in ipairs({ { 2, true }, { 2, false }, { 4, true }, { 4, false } }) do
  local r = run(cfg[1], cfg[2])
  print(("| %d | %s | %.0f | %d | %d | %d | %.2f |"):format(r.workers, r.store and "ngx_shared" or "none (per worker)",
    r.rps, r.other, r.api_401, r.tokens, r.tokens / (r.elapsed / period)))
end

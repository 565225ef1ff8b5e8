-- The demo's scripted workload (make demo): about 20 seconds of API calls through
-- skewguard against the stand-in, crossing several token renewals, a revocation of
-- every token and a 429, with zero failed calls. Usage:
--   lua5.4 examples/demo_workload.lua BASE_URL [SECONDS]
-- The stand-in's control endpoint (BASE_URL/__standin/...) injects the trouble.
local sg = require "skewguard"
local cjson = require "cjson"

local base = assert(arg[1], "usage: demo_workload.lua BASE_URL [SECONDS]")
local seconds = tonumber(arg[2]) or 20

local events = {}
local client = sg.genesys.new {
  login_url = base, api_url = base,
  client_id = os.getenv("GENESYS_CLIENT_ID") or "test-client",
  client_secret = os.getenv("GENESYS_CLIENT_SECRET") or "test-secret",
  buffer = 60,
  logger = function(level, message, fields)
    if level ~= "debug" then
      events[#events + 1] = string.format("%s %s%s", level, message, sg.log.format_fields(fields))
    end
  end,
  log_level = "info",
}

-- Control calls go to the stand-in, not through the client: they are the "weather".
local control = require("skewguard.transport.curl").new { timeout = 5 }
local function weather(change)
  local res, err = control:request { method = "POST", url = base .. "/__standin/control",
    headers = { ["content-type"] = "application/json" }, body = cjson.encode(change) }
  assert(res and res.status == 200, "stand-in control failed: " .. tostring(err))
end
local function counters()
  local res = assert(control:request { method = "GET", url = base .. "/__standin/counters" })
  return cjson.decode(res.body)
end

weather { reset_counters = true }   -- count the workload only, not the doctor's probes
local core = sg.core
local t0 = core.monotonic()
local calls, failures = 0, 0
local revoked, limited = false, false
io.write(string.format("workload: %d s of GET /api/v2/organizations/me against %s\n", seconds, base))
while core.monotonic() - t0 < seconds do
  local elapsed = core.monotonic() - t0
  if not revoked and elapsed > seconds * 0.4 then
    revoked = true
    weather { revoke_all = true }
    io.write(string.format("  t=%5.1fs  the server revokes every token\n", elapsed))
  end
  if not limited and elapsed > seconds * 0.7 then
    limited = true
    weather { api = { kind = "rate_limit", retry_after = 1, count = 1 } }
    io.write(string.format("  t=%5.1fs  the server answers the next call 429, Retry-After: 1\n", elapsed))
  end
  local res, err = client:get("/api/v2/organizations/me")
  calls = calls + 1
  if not res then
    failures = failures + 1
    io.write("  failed: ", tostring(err), "\n")
  end
  core.sleep(0.05)
end

local st = client:stats()
local c = counters()
local skew, unc = client:skew()
io.write(string.format([[
workload summary:
  calls made                 %d, failed %d
  tokens requested           %d (stored %d), by the server's count %d
  401s the server sent       %d (expired %d, revoked %d); retried after a 401: %d
  429s the server sent       %d; retried after a 429: %d; early retries seen by the server: %d
  skew from Date headers     %+.4f s ± %.4f s (local - server)
]], calls, failures, st.token_requests, st.renewals or 0, c.token_requests or 0,
  c.api_401 or 0, c.api_401_expired or 0, c.api_401_revoked or 0, st.retries_401,
  c.api_429 or 0, st.retries_429, c.early_retries or 0, skew or 0 / 0, unc or 0 / 0))
for _, e in ipairs(events) do io.write("  log: ", e, "\n") end
client:close()
os.exit(failures == 0 and 0 or 1)

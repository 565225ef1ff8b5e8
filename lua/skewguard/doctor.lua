--- The doctor: is clock skew why tokens get rejected, and whose clock is off?
-- Checks, each reported as it finishes (so a slow network is visibly working):
--   1. local clock vs UTC by SNTP;
--   2. local clock vs the API server by HTTP Date samples, with probes timed at
--      chosen phases of the server's second (bisection on the second boundary);
--   3. which clock is off, when 1 and 2 disagree beyond their uncertainties;
--   4. login (client credentials), token lifetime, one authenticated smoke call;
--   5. a verdict and advice. Exit codes: 0 healthy, 1 problem found, 2 could not run.
local skew = require "skewguard.skew"
local errors = require "skewguard.errors"

local M = {}

M.defaults = {
  probes = 12,          -- Date probes at most
  target = 0.002,       -- stop probing once the half-width is below this (seconds)
  threshold = 1.0,      -- a clock further off than this (beyond its uncertainty) is a problem
  utc_tolerance = 1.0,  -- how far a well-run server may be from UTC
  timeout = 10,
  ntp = { "pool.ntp.org" },
}

local function fmt_skew(s, u)
  return string.format("%+.6f s ± %.6f s", s, u)
end

--- Date probes against `url` through `transport`. The first probe lands at any
-- phase and bounds the skew to about a second. Each later probe is sent so that
-- the server stamps its Date at a second boundary if the skew were the current
-- midpoint; whether the stamped second is the earlier or the later one tells on
-- which side of the midpoint the true skew is, so each probe halves the interval
-- (down to the round trip).
function M.probe_date(transport, url, opts)
  opts = opts or {}
  local est = opts.estimator or skew.new()
  local max_probes = opts.probes or M.defaults.probes
  local target = opts.target or M.defaults.target
  local timeout = opts.timeout or M.defaults.timeout
  local rtt, probes, failures = nil, 0, 0
  local last_err
  while probes < max_probes do
    local mid = est:skew()
    if mid and est:uncertainty() <= target then break end
    if mid and rtt then
      -- send so that the middle of the round trip hits a server second boundary
      local now = transport:wall()
      local boundary = math.floor(now - mid) + 1      -- next server second (if skew = mid)
      local send_at = boundary + mid - rtt / 2
      while send_at - now < 0.002 do send_at = send_at + 1 end
      transport:sleep(send_at - now)
    end
    local res, err = transport:request({ method = "GET", url = url, headers = { accept = "application/json" },
      timeout = timeout })
    probes = probes + 1
    if not res then
      failures = failures + 1
      last_err = err
      if failures >= 3 then break end
    else
      local this_rtt = res.t_recv_wall - res.t_send_wall
      if not rtt or this_rtt < rtt then rtt = this_rtt end
      local date = res.headers and res.headers["date"]
      if date and not (res.headers["age"]) then
        est:observe_date(date, res.t_send_wall, res.t_recv_wall)
      elseif not date then
        last_err = errors.new("protocol", "the API server sends no Date header")
        break
      end
    end
  end
  local s = est:skew()
  if not s then
    return nil, last_err or errors.new("protocol", "no usable Date sample from " .. url)
  end
  return { skew = s, uncertainty = est:uncertainty(), probes = probes, samples = est:samples(),
    rtt = rtt, steps = est.steps and est:steps() or nil }, nil, est
end

local function ntp_targets(list)
  local out = {}
  for _, spec in ipairs(list) do
    local host, port = spec:match("^%[(.+)%]:(%d+)$")
    if not host then host, port = spec:match("^([^:]+):(%d+)$") end
    out[#out + 1] = { host = host or spec, port = tonumber(port) or 123 }
  end
  return out
end
M.ntp_targets = ntp_targets

--- Runs every check. opts: login_url, api_url, client_id, client_secret, ntp (list
-- of "host[:port]") or false, timeout, probes, target, threshold, report(check) (called
-- as each check finishes), transport (default libcurl), ca_file.
function M.run(opts)
  local report = opts.report or function() end
  local out = { login_url = opts.login_url, api_url = opts.api_url, checks = {} }
  local function done(name, status, line, figures)
    local c = figures or {}
    c.name, c.status, c.line = name, status, line
    out.checks[#out.checks + 1] = c
    out.checks[name] = c
    report(c)
    return c
  end
  local threshold = opts.threshold or M.defaults.threshold
  local timeout = opts.timeout or M.defaults.timeout

  -- 1. SNTP
  local ntp
  if opts.ntp ~= false then
    local sntp = require "skewguard.sntp"
    local r, err = sntp.query(ntp_targets(opts.ntp or M.defaults.ntp), { timeout = math.min(timeout, 2) })
    if r then
      local off = math.abs(r.skew) - r.uncertainty > threshold
      ntp = r
      done("sntp", off and "warn" or "ok", string.format("local clock vs UTC (%s, stratum %d): %s",
        r.server, r.stratum, fmt_skew(r.skew, r.uncertainty)),
        { skew = r.skew, uncertainty = r.uncertainty, server = r.server, stratum = r.stratum,
          delay = r.delay, off = off })
    else
      done("sntp", "fail", "local clock vs UTC: " .. tostring(err), { error = err.kind })
    end
  else
    done("sntp", "skip", "local clock vs UTC: skipped (--no-ntp)")
  end

  -- 2. Date probes against the API host (no credentials needed: a 401 carries a Date too)
  local transport = opts.transport or require("skewguard.transport.curl").new({ timeout = timeout,
    ca_file = opts.ca_file })
  local probe_url = opts.api_url .. "/api/v2/tokens/me?preserveIdleTTL=true"
  local d, derr, est = M.probe_date(transport, probe_url, { probes = opts.probes, target = opts.target,
    timeout = timeout })
  local api
  if d then
    api = d
    local off = math.abs(d.skew) - d.uncertainty > threshold
    done("date", off and "warn" or "ok", string.format("local clock vs API server (%d Date probes): %s",
      d.probes, fmt_skew(d.skew, d.uncertainty)),
      { skew = d.skew, uncertainty = d.uncertainty, probes = d.probes, samples = d.samples, rtt = d.rtt,
        off = off })
  else
    done("date", "fail", "local clock vs API server: " .. tostring(derr), { error = derr.kind })
  end

  -- 3. whose clock
  local culprit, compare_line
  if ntp and api then
    local local_off = math.abs(ntp.skew) - ntp.uncertainty > threshold
    local server_vs_utc = api.skew - ntp.skew      -- = utc - server... (local-server) - (local-utc)
    local server_off = math.abs(server_vs_utc) - (api.uncertainty + ntp.uncertainty) > M.defaults.utc_tolerance
    if local_off and not server_off then
      culprit = "local"
      compare_line = string.format("your clock is off: %+.3f s from UTC, and the API server agrees with UTC",
        ntp.skew)
    elseif server_off and not local_off then
      culprit = "server"
      compare_line = string.format("the API server's clock is off: %+.3f s from UTC (your clock is right)",
        -server_vs_utc)
    elseif server_off and local_off then
      culprit = "both"
      compare_line = string.format("both clocks are off UTC: yours by %+.3f s, the server's by %+.3f s",
        ntp.skew, -server_vs_utc)
    else
      compare_line = "SNTP and the API server agree within their uncertainties"
    end
    done("compare", culprit and "warn" or "ok", compare_line, { culprit = culprit,
      server_minus_utc = -server_vs_utc })
  elseif api and math.abs(api.skew) - api.uncertainty > threshold then
    culprit = "unknown"
    done("compare", "warn", "your clock and the API server's disagree; without SNTP it is unknown whose is off",
      { culprit = culprit })
  else
    done("compare", "skip", "whose clock: not enough figures to compare")
  end

  -- 4. login and smoke call
  local login_ok, could_not_run = nil, d == nil
  if opts.client_id and opts.client_secret then
    local genesys = require "skewguard.genesys"
    local client = genesys.new({ login_url = opts.login_url, api_url = opts.api_url, client_id = opts.client_id,
      client_secret = opts.client_secret, timeout = timeout, ca_file = opts.ca_file, transport = transport,
      estimator = est, max_retries = 1 })
    local gen, lerr = client:login()
    if gen then
      local info = client.tokens:info()
      login_ok = true
      done("login", "ok", string.format("login (client credentials): token %s, lifetime %.0f s",
        info.fingerprint or "?", info.lifetime or -1), { lifetime = info.lifetime, fingerprint = info.fingerprint })
      local res, serr = client:get("/api/v2/tokens/me", { query = { preserveIdleTTL = "true" } })
      if res then
        done("smoke", "ok", string.format("GET /api/v2/tokens/me → %d (correlation id %s)", res.status,
          tostring(res.correlation_id)), { status = res.status, correlation_id = res.correlation_id })
      else
        login_ok = false
        done("smoke", "fail", "GET /api/v2/tokens/me: " .. tostring(serr), { error = serr.kind,
          status = serr.status, correlation_id = serr.correlation_id })
      end
    else
      login_ok = false
      if lerr.kind == "network" or lerr.kind == "timeout" or lerr.kind == "tls" then could_not_run = true end
      done("login", "fail", "login: " .. tostring(lerr), { error = lerr.kind, status = lerr.status })
    end
  else
    done("login", "skip", "login: skipped (set GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET)")
  end

  -- 5. verdict
  local advice = {}
  local problem = culprit ~= nil or login_ok == false
  if culprit == "local" or culprit == "both" or culprit == "unknown" then
    advice[#advice + 1] = "sync this machine's clock: with chrony, `chronyc tracking` shows the offset and "
      .. "`chronyc makestep` steps it; with systemd, `timedatectl` shows whether NTP is active "
      .. "(`timedatectl set-ntp true`); on Windows, `w32tm /query /status` and `w32tm /resync`"
  end
  if culprit == "server" or culprit == "both" then
    advice[#advice + 1] = "the API server's clock is off UTC: a proxy or gateway in between may rewrite Date, "
      .. "or the server is badly synchronised; report it with the correlation ids above"
  end
  if login_ok == false then
    advice[#advice + 1] = "login or the smoke call failed: check the OAuth client's credentials, grant type and "
      .. "roles in Genesys Cloud Admin > OAuth"
  end
  local status, code
  if could_not_run and not problem then status, code = "error", 2
  elseif could_not_run and d == nil then status, code = "error", 2
  elseif problem then status, code = "problem", 1
  else status, code = "healthy", 0 end
  local line
  if status == "healthy" then line = "healthy: clocks agree and tokens work"
  elseif status == "error" then line = "could not run every check (see above)"
  elseif culprit == "local" then line = "problem: YOUR clock is off"
  elseif culprit == "server" then line = "problem: the API SERVER's clock is off"
  elseif culprit == "both" then line = "problem: both clocks are off UTC"
  elseif culprit == "unknown" then line = "problem: the clocks disagree"
  else line = "problem: login or the API call failed" end
  out.verdict = { status = status, culprit = culprit, message = line, advice = advice }
  out.exit_code = code
  done("verdict", status == "healthy" and "ok" or "fail", line, { culprit = culprit, advice = advice })
  return out
end

return M

-- Shared state of all workers: settings, the skewed clock, scenarios and counters.
-- Everything lives in lua_shared_dicts so any worker answers the same way.
local cjson = require "cjson.safe"

local settings = ngx.shared.standin_state
local counters = ngx.shared.standin_counters

local M = {}

M.DEFAULTS = {
  offset = 0,              -- server clock = local clock + offset (seconds, fractional)
  lifetime = 86400,        -- access token lifetime (expires_in), seconds
  jwt = false,             -- opaque tokens by default; HS256 JWTs when true
  date_header = true,      -- false: responses carry no Date header at all
  age = false,             -- a number: every response carries "Age: <n>"
  api_401_all = false,     -- true: every API call answers 401
  idle_timeout = 0,        -- > 0: tokens die after this many seconds without use
  queues_total = 57,       -- size of /api/v2/routing/queues
  client_id = "test-client",
  client_secret = "test-secret",
  public_client_id = "test-public-client",
  retry_slack = 0.002,     -- early-retry tolerance for timer granularity, seconds
}

local STRING_KEYS = { client_id = true, client_secret = true, public_client_id = true }

function M.get(key)
  local v = settings:get(key)
  if v == nil then return M.DEFAULTS[key] end
  return v
end

-- Validates and stores one setting; returns nil, message on bad input.
function M.set(key, value)
  local default = M.DEFAULTS[key]
  if default == nil then return nil, "unknown setting " .. tostring(key) end
  if key == "age" then
    if value ~= false and (type(value) ~= "number" or value < 0) then
      return nil, "age must be a number >= 0 or false"
    end
  elseif STRING_KEYS[key] then
    if type(value) ~= "string" or value == "" then return nil, key .. " must be a non-empty string" end
  elseif type(value) ~= type(default) then
    return nil, key .. " must be a " .. type(default)
  end
  if key == "lifetime" and value <= 0 then return nil, "lifetime must be > 0" end
  if key == "queues_total" and (value < 0 or value % 1 ~= 0) then
    return nil, "queues_total must be a whole number >= 0"
  end
  settings:set(key, value)
  return true
end

function M.init(opts)
  settings:flush_all()
  counters:flush_all()
  for key, value in pairs(opts or {}) do
    assert(M.set(key, value))
  end
  settings:set("revoke_generation", 0)
end

-- Local wall clock, freshly read with full resolution. ngx.now() is cached per
-- event-loop turn and truncated to milliseconds: a Date stamped from it can fall
-- up to 1 ms before the request arrived, which a client timing its probes at the
-- second boundary (the doctor) would see as a wrong answer.
local ffi = require "ffi"
pcall(ffi.cdef, [[
  typedef struct { long tv_sec; long tv_nsec; } standin_timespec;
  int clock_gettime(int clk_id, standin_timespec *tp);
]])
local ts = ffi.new("standin_timespec")
local CLOCK_REALTIME = 0
function M.local_now()
  ffi.C.clock_gettime(CLOCK_REALTIME, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

function M.server_now()
  return M.local_now() + M.get("offset")
end

function M.count(name, n)
  counters:incr(name, n or 1, 0)
end

function M.counters()
  local out = {}
  for _, key in ipairs(counters:get_keys(0)) do
    out[key] = counters:get(key)
  end
  return out
end

function M.reset_counters()
  counters:flush_all()
  settings:delete("retry_not_before")
end

-- In-flight tracking: cheap enough to do on every request.
function M.enter()
  local n = counters:incr("inflight", 1, 0)
  if n > (counters:get("max_inflight") or 0) then counters:set("max_inflight", n) end
end

function M.leave()
  counters:incr("inflight", -1, 0)
end

-- Scenarios. A scenario is { kind = ..., count = N (0 = until cleared), path = prefix,
-- method = "GET", ...params }; one is active per target ("api" or "token").
function M.set_scenario(target, scenario)
  settings:delete(target .. ".scenario")
  if not scenario then return true end
  local count = scenario.count or 1
  settings:set(target .. ".left", count)
  settings:set(target .. ".always", count == 0)
  settings:set(target .. ".scenario", cjson.encode(scenario))
  return true
end

function M.get_scenario(target)
  local raw = settings:get(target .. ".scenario")
  return raw and cjson.decode(raw)
end

-- The active scenario if it applies to this request, consuming one of its count.
function M.take_scenario(target, method, path)
  local raw = settings:get(target .. ".scenario")
  if not raw then return nil end
  local scenario = cjson.decode(raw)
  if scenario.method and scenario.method ~= method then return nil end
  if scenario.path and path:sub(1, #scenario.path) ~= scenario.path then return nil end
  if settings:get(target .. ".always") then return scenario end
  local left = settings:incr(target .. ".left", -1, 0)
  if left and left >= 0 then
    if left == 0 then settings:delete(target .. ".scenario") end
    return scenario
  end
  return nil
end

-- Early retries: every 429 records the instant (local clock) before which the client
-- was told not to come back; any API request arriving before it counts as early.
function M.note_retry_after(not_before, token)
  local current = settings:get("retry_not_before") or 0
  if not_before > current then settings:set("retry_not_before", not_before) end
  if token then
    settings:set("nb:" .. token, not_before, 3600)
  end
end

function M.check_early(now, token)
  local slack = M.get("retry_slack")
  local not_before = settings:get("retry_not_before")
  if not_before and now < not_before - slack then
    M.count("early_retries")
    if token then
      local own = settings:get("nb:" .. token)
      if own and now < own - slack then M.count("early_retries_same_token") end
    end
  end
end

function M.snapshot()
  local out = {}
  for key in pairs(M.DEFAULTS) do
    if key ~= "client_secret" then out[key] = M.get(key) end
  end
  out.revoke_generation = settings:get("revoke_generation")
  out.api_scenario = M.get_scenario("api") or false
  out.token_scenario = M.get_scenario("token") or false
  out.local_now = M.local_now()
  out.server_now = out.local_now + out.offset
  return out
end

return M

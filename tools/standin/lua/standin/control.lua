-- The control endpoint under /__standin/: settings, scenarios, counters. No auth:
-- it is test infrastructure bound to loopback.
local cjson = require "cjson.safe"
local respond = require "standin.respond"
local state = require "standin.state"
local tokens = require "standin.tokens"

local M = {}

local SCENARIO_KINDS = {
  api = { rate_limit = true, forbidden = true, status = true, unauthorized = true, hang = true,
          malformed = true, truncated = true, huge = true },
  token = { rate_limit = true, status = true, hang = true, malformed = true },
}

local function check_scenario(target, s)
  if type(s) ~= "table" then return nil, target .. " scenario must be an object or false" end
  if not SCENARIO_KINDS[target][s.kind] then
    return nil, "unknown " .. target .. " scenario kind " .. tostring(s.kind)
  end
  if s.count ~= nil and (type(s.count) ~= "number" or s.count < 0 or s.count % 1 ~= 0) then
    return nil, "count must be a whole number >= 0 (0 = until cleared)"
  end
  if s.status ~= nil and (type(s.status) ~= "number" or s.status < 400 or s.status > 599) then
    return nil, "status must be 400..599"
  end
  for _, key in ipairs { "retry_after", "seconds", "size" } do
    if s[key] ~= nil and (type(s[key]) ~= "number" or s[key] < 0) then
      return nil, key .. " must be a number >= 0"
    end
  end
  if s.mode ~= nil and s.mode ~= "cut" and s.mode ~= "short" then
    return nil, "mode must be cut or short"
  end
  for _, key in ipairs { "path", "method" } do
    if s[key] ~= nil and type(s[key]) ~= "string" then return nil, key .. " must be a string" end
  end
  return true
end

local ACTIONS = { revoke_all = true, forget_tokens = true, reset_counters = true }

local function apply(changes)
  if type(changes) ~= "table" then return nil, "body must be a JSON object" end
  -- Validate everything before changing anything.
  for key, value in pairs(changes) do
    if key == "api" or key == "token" then
      if value ~= false then
        local ok, err = check_scenario(key, value)
        if not ok then return nil, err end
      end
    elseif not ACTIONS[key] and state.DEFAULTS[key] == nil then
      return nil, "unknown control " .. tostring(key)
    end
  end
  for key, value in pairs(changes) do
    if key == "api" or key == "token" then
      state.set_scenario(key, value)
    elseif key == "revoke_all" then
      if value then tokens.revoke_all() end
    elseif key == "forget_tokens" then
      if value then tokens.forget_all() end
    elseif key == "reset_counters" then
      if value then state.reset_counters() end
    else
      local ok, err = state.set(key, value)
      if not ok then return nil, err end
    end
  end
  return true
end

local function read_json()
  ngx.req.read_body()
  local raw = ngx.req.get_body_data()
  if not raw or raw == "" then return {} end
  local value, err = cjson.decode(raw)
  if value == nil then return nil, "bad JSON: " .. tostring(err) end
  return value
end

function M.handle()
  local uri, method = ngx.var.uri, ngx.req.get_method()
  if uri == "/__standin/health" then
    return respond.json(200, { ok = true, pid = ngx.worker.pid() })
  elseif uri == "/__standin/state" then
    return respond.json(200, state.snapshot())
  elseif uri == "/__standin/counters" then
    return respond.json(200, state.counters())
  elseif uri == "/__standin/issued" then
    return respond.json(200, tokens.issued())
  elseif uri == "/__standin/control" and method == "POST" then
    local changes, err = read_json()
    local ok
    if changes then ok, err = apply(changes) end
    if not ok then return respond.json(400, { error = err }) end
    return respond.json(200, state.snapshot())
  elseif uri == "/__standin/reset" and method == "POST" then
    -- Back to the start: initial settings, no scenarios, no counters, no tokens.
    local initial = cjson.decode(ngx.shared.standin_state:get("initial") or "{}") or {}
    state.init(initial)
    ngx.shared.standin_state:set("initial", cjson.encode(initial))
    tokens.forget_all()
    tokens.forget_issued()
    return respond.json(200, state.snapshot())
  end
  respond.json(404, { error = "unknown control " .. method .. " " .. uri })
end

return M

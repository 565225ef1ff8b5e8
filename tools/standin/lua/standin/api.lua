-- The API host: /api/v2/... with bearer checks against the skewed clock, scenarios,
-- and a few resources a token manager needs.
local cjson = require "cjson.safe"
local respond = require "standin.respond"
local state = require "standin.state"
local tokens = require "standin.tokens"

local M = {}

local ORG_ID = "6b1f2c4e-5d0a-4c8e-9f3b-5a7d1e000001"
local ORG = {
  id = ORG_ID, name = "Stand-in Org", defaultLanguage = "en-us", defaultCountryCode = "US",
  thirdPartyOrgName = "standin", domain = "standin", version = 1, state = "active",
  deletable = false, selfUri = "/api/v2/organizations/" .. ORG_ID,
}
local ORG_REF = { id = ORG_ID, name = ORG.name, selfUri = ORG.selfUri }

local STATUS_CODES = {
  [400] = "bad.request", [403] = "missing.permissions", [404] = "not.found",
  [408] = "request.timeout", [409] = "conflict", [500] = "internal.server.error",
  [501] = "not.implemented", [502] = "bad.gateway", [503] = "service.unavailable",
  [504] = "gateway.timeout",
}

local function unauthorized(reason, code, message)
  state.count("api_401")
  state.count("api_401_" .. reason)
  respond.api_error(401, code, message)
end

local function tokens_me(record)
  return 200, {
    organization = ORG_REF, homeOrganization = ORG_REF,
    authorizedScope = { "routing", "organization:readonly" },
    OAuthClient = { id = record.client, name = "Stand-in client", organization = { id = ORG_ID } },
  }
end

local function queues()
  local args = ngx.req.get_uri_args(20)
  local page_size = tonumber(args.pageSize or 25)
  local page_number = tonumber(args.pageNumber or 1)
  if not page_size or page_size < 1 or page_size > 500 or page_size % 1 ~= 0 then
    return 400, nil, "pageSize must be a whole number from 1 to 500"
  end
  if not page_number or page_number < 1 or page_number % 1 ~= 0 then
    return 400, nil, "pageNumber must be a whole number >= 1"
  end
  local total = state.get("queues_total")
  local page_count = math.ceil(total / page_size)
  local entities = {}
  local first = (page_number - 1) * page_size + 1
  for i = first, math.min(total, first + page_size - 1) do
    local id = string.format("00000000-0000-4000-8000-%012d", i)
    entities[#entities + 1] = {
      id = id, name = string.format("Queue %03d", i), memberCount = i % 7,
      selfUri = "/api/v2/routing/queues/" .. id,
    }
  end
  local function page_uri(n)
    return string.format("/api/v2/routing/queues?pageSize=%d&pageNumber=%d", page_size, n)
  end
  local body = {
    entities = #entities > 0 and entities or respond.EMPTY_ARRAY,
    pageSize = page_size, pageNumber = page_number, total = total, pageCount = page_count,
    firstUri = page_uri(1), selfUri = page_uri(page_number),
    lastUri = page_uri(math.max(page_count, 1)),
  }
  if page_number < page_count then body.nextUri = page_uri(page_number + 1) end
  if page_number > 1 then body.previousUri = page_uri(page_number - 1) end
  return 200, body
end

local function echo()
  ngx.req.read_body()
  local raw = ngx.req.get_body_data() or ""
  local decoded = cjson.decode(raw)
  return 200, {
    method = ngx.req.get_method(), path = ngx.var.uri, query = ngx.var.args or "",
    contentType = ngx.var.content_type or "", length = #raw,
    body = decoded ~= nil and decoded or raw,
  }
end

-- Returns status, body table (nil for no body), error message (for errors).
local function route(method, uri, token, record)
  if uri == "/api/v2/tokens/me" then
    if method == "GET" then return tokens_me(record) end
    if method == "DELETE" then
      tokens.revoke(token)
      state.count("api_tokens_revoked")
      return 204
    end
  elseif uri == "/api/v2/organizations/me" and method == "GET" then
    return 200, ORG
  elseif uri == "/api/v2/routing/queues" and method == "GET" then
    return queues()
  elseif uri == "/api/v2/echo" then
    return echo()
  end
  return 404, nil, "The requested resource was not found: " .. method .. " " .. uri
end

local function rate_limited(scenario, now_local, token)
  local delay = scenario.retry_after or 1
  local headers = {}
  local not_before
  if scenario.retry_after_date then
    -- An HTTP-date on the server clock, at whole-second resolution.
    local offset = state.get("offset")
    local at = math.ceil(now_local + offset + delay)
    headers["Retry-After"] = ngx.http_time(at)
    not_before = at - offset
  else
    headers["Retry-After"] = tostring(delay)
    not_before = now_local + delay
  end
  state.note_retry_after(not_before, token)
  state.count("api_429")
  respond.api_error(429, "too.many.requests.retry.after",
    "Rate limit exceeded the maximum. Retry the request in [" .. tostring(delay) .. "] seconds",
    headers, { limit = { key = "token.rate.per.minute", namespace = "platform.api", value = 300 } })
end

local function send_status(status, message)
  if status >= 500 then state.count("api_5xx") end
  if status == 403 then state.count("api_403") end
  state.count("api_status_" .. status)
  respond.api_error(status, STATUS_CODES[status] or "error", message)
end

local function send_body(status, body, scenario)
  ngx.status = status
  if not body then return end
  ngx.header["Content-Type"] = "application/json"
  local json = respond.encode(body)
  if not scenario then return ngx.print(json) end
  local kind = scenario.kind
  if kind == "malformed" then
    state.count("api_malformed")
    return ngx.print('{"entities": [1, 2,, }' .. json)
  elseif kind == "truncated" then
    state.count("api_truncated")
    local cut = json:sub(1, math.floor(#json / 2))
    if scenario.mode == "short" then
      -- Promise more than is sent, then drop the connection: a transfer error.
      ngx.header["Content-Length"] = #json
      ngx.print(cut)
      ngx.flush(true)
      return ngx.exit(444)
    end
    return ngx.print(cut)
  elseif kind == "huge" then
    state.count("api_huge")
    local size = scenario.size or 20 * 1024 * 1024
    local head = '{"entities":[],"padding":"'
    local pad = math.max(0, size - #head - 2)
    ngx.header["Content-Length"] = #head + pad + 2
    ngx.print(head)
    local chunk = string.rep("x", 65536)
    while pad > 0 do
      local n = math.min(pad, #chunk)
      ngx.print(n == #chunk and chunk or chunk:sub(1, n))
      pad = pad - n
    end
    return ngx.print('"}')
  end
  ngx.print(json)
end

-- Scenarios applied after the bearer check; returns true when the scenario answered.
local function apply_scenario(scenario, now_local, token)
  local kind = scenario.kind
  if kind == "rate_limit" then
    rate_limited(scenario, now_local, token)
  elseif kind == "forbidden" then
    send_status(403, "Unable to perform the requested action. You are missing the following "
      .. "permission(s): [routing:queue:view]")
  elseif kind == "status" then
    send_status(scenario.status or 503, "The stand-in was told to answer " .. tostring(scenario.status or 503))
  elseif kind == "unauthorized" then
    unauthorized("forced", "bad.credentials", "Invalid login credentials.")
  elseif kind == "hang" then
    ngx.sleep(scenario.seconds or 1)
    return false
  else
    return false -- body scenarios (malformed, truncated, huge) are applied when sending
  end
  return true
end

function M.handle()
  state.count("api_requests")
  local now_local = state.local_now()
  local method, uri = ngx.req.get_method(), ngx.var.uri
  local auth = ngx.var.http_authorization
  local token = auth and auth:match("^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
  state.check_early(now_local, token)
  if not token then
    return unauthorized("missing", "authentication.required",
      "No authentication bearer token specified in authorization header.")
  end
  if state.get("api_401_all") then
    return unauthorized("forced", "bad.credentials", "Invalid login credentials.")
  end
  local preserve = uri == "/api/v2/tokens/me" and ngx.var.arg_preserveIdleTTL == "true"
  local record, reason = tokens.check(token, preserve)
  if not record then
    if reason == "expired" or reason == "idle" then
      return unauthorized(reason, "credentials.expired", "Authentication token has expired.")
    end
    return unauthorized(reason, "bad.credentials", "Invalid login credentials.")
  end
  local scenario = state.take_scenario("api", method, uri)
  if scenario and apply_scenario(scenario, now_local, token) then return end
  if scenario and scenario.kind == "hang" then scenario = nil end
  local status, body, message = route(method, uri, token, record)
  if message then return send_status(status, message) end
  state.count("api_ok")
  send_body(status, body, scenario)
end

return M

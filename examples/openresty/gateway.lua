--- A token-injecting gateway to the Genesys Cloud API (see README.md here).
--
-- Internal tools call http://127.0.0.1:8080/api/v2/... without credentials; the
-- gateway forwards each request through a skewguard client, which adds the
-- bearer token and applies the whole policy: renewal before expiry, one renewal
-- for all workers (the token lives in lua_shared_dict skewguard), 401 -> renew
-- once and retry, 429 -> wait Retry-After, 5xx backoff on idempotent calls.
-- GET /status shows skew, token state (fingerprint only) and counters.
--
-- Configuration from the environment (each needs an `env` directive):
--   GENESYS_CLIENT_ID, GENESYS_CLIENT_SECRET   client-credentials OAuth client
--   GENESYS_REGION (e.g. eu-west-1)  or  GENESYS_LOGIN_URL [+ GENESYS_API_URL]
--   SKEWGUARD_TIMEOUT       seconds per upstream request (default 10)
--   SKEWGUARD_RATE_LIMIT    requests per minute per worker, or "off" (default 300)
--   SKEWGUARD_RENEW_EVERY   longest gap between proactive renewal checks (default 1 s)
--   SKEWGUARD_LOG           log level (default: nginx's error_log level decides)
--   SKEWGUARD_STORE         "off": one token per worker (for comparison; default shared)
local cjson = require "cjson.safe"

local M = {}

local client, store, renewal, config_error
local counters = { forwarded = 0, upstream_errors = 0, failed = 0 }

-- Request headers a tool may pass on. Everything else, Authorization above all,
-- stays here: the gateway is the only holder of credentials.
local FORWARD_REQUEST = { "content-type", "accept", "accept-language" }
-- Response headers passed back to the tool.
local FORWARD_RESPONSE = { "content-type", "inin-correlation-id", "retry-after", "location" }

local function env_number(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  if v == "off" then return false end
  return tonumber(v) or error(name .. " must be a number (or off)")
end

--- init_worker_by_lua*: one client per worker (module-level state is per worker).
-- Building it needs no cosocket; the renewal timer fetches the first token.
function M.init_worker()
  local ok, err = pcall(function()
    local genesys = require "skewguard.genesys"
    store = require("skewguard.store.ngx_shared").new({ dict = "skewguard" })
    local use_store = os.getenv("SKEWGUARD_STORE") ~= "off"
    local opts = {
      client_id = os.getenv("GENESYS_CLIENT_ID"),
      client_secret = os.getenv("GENESYS_CLIENT_SECRET"),
      timeout = env_number("SKEWGUARD_TIMEOUT", 10),
      rate_limit = env_number("SKEWGUARD_RATE_LIMIT", 300),
      store = use_store and store or nil,
    }
    if not opts.client_id or not opts.client_secret then
      error("GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET must be set (and named by env directives)")
    end
    local region = os.getenv("GENESYS_REGION")
    if region and region ~= "" then
      opts.region = region
    else
      opts.login_url = os.getenv("GENESYS_LOGIN_URL")
      opts.api_url = os.getenv("GENESYS_API_URL")
      if not opts.login_url then error("set GENESYS_REGION or GENESYS_LOGIN_URL") end
    end
    client = genesys.new(opts)
    renewal = client:start_renewal_timer({ interval = env_number("SKEWGUARD_RENEW_EVERY", 1) })
  end)
  if not ok then
    config_error = tostring(err)
    ngx.log(ngx.ERR, "skewguard gateway: not configured: ", config_error)
  end
end

local function send_json(status, value)
  ngx.status = status
  ngx.header["content-type"] = "application/json"
  ngx.say(cjson.encode(value))
  return ngx.exit(status)
end

local function request_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local file = ngx.req.get_body_file() -- larger than client_body_buffer_size
  if not file then return nil end
  local f = assert(io.open(file, "rb"))
  body = f:read("*a")
  f:close()
  return body
end

local FAILURE_STATUS = { timeout = 504, network = 502, tls = 502, protocol = 502, too_large = 502,
  rate_limited = 429, unavailable = 503, unauthorized = 502, clock_skew = 502, token = 502, config = 500 }

--- content_by_lua*: forwards the request (method, path with query, body).
function M.forward()
  if not client then
    return send_json(503, { error = "config", message = "gateway not configured: " .. tostring(config_error) })
  end
  local headers = {}
  local incoming = ngx.req.get_headers()
  for _, name in ipairs(FORWARD_REQUEST) do
    local v = incoming[name]
    if type(v) == "table" then v = table.concat(v, ", ") end
    if v then headers[name] = v end
  end
  local res, err = client:request(ngx.req.get_method(), ngx.var.request_uri,
    { headers = headers, body = request_body() })
  -- an answer from Genesys (also 4xx after the policy gave up): pass it on
  local answer = res or (err and err.response)
  if answer then
    counters.forwarded = counters.forwarded + 1
    if not res then counters.upstream_errors = counters.upstream_errors + 1 end
    ngx.status = answer.status
    for _, name in ipairs(FORWARD_RESPONSE) do
      local v = answer.headers and answer.headers[name]
      if v then ngx.header[name] = v end
    end
    if answer.body and answer.body ~= "" then ngx.print(answer.body) end
    return ngx.exit(answer.status)
  end
  counters.failed = counters.failed + 1
  -- the error's text never holds a secret (skewguard.errors)
  return send_json(FAILURE_STATUS[err.kind] or 502, { error = err.kind, message = tostring(err),
    correlation_id = err.correlation_id })
end

--- GET /status: this worker's view, no secret (the token by fingerprint only).
function M.status()
  if not client then return send_json(503, { error = "config", message = tostring(config_error) }) end
  local tokens = client.tokens
  local info = tokens:info()
  local skew, uncertainty = client:skew()
  local key = tokens:store_key()
  local holder, holder_ttl
  if key then holder, holder_ttl = store:lock_holder(key) end
  return send_json(200, {
    worker_pid = ngx.worker.pid(),
    skew = { seconds = skew, uncertainty = uncertainty },
    token = {
      state = info.state, seconds_left = info.seconds_left, fingerprint = info.fingerprint,
      generation = info.generation, lifetime = info.lifetime,
    },
    store = { dict = key and store.name or nil, renewal_lock_pid = holder, renewal_lock_ttl = holder_ttl },
    renewal_timer = renewal and { running = renewal.running, ticks = renewal.ticks, failures = renewal.failures },
    gateway = counters,
    client = client:stats(),
  })
end

return M

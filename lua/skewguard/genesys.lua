--- Genesys Cloud CX: regions and hosts, and `genesys.new{...}`, the client
-- users write their scripts against (README "API"). The policy itself lives in
-- skewguard.client; tokens in skewguard.token; skew in skewguard.skew.
local regions = require "skewguard.regions"
local client = require "skewguard.client"
local logmod = require "skewguard.log"

local M = { regions = regions }

local OPTIONS = {
  region = "string", login_url = "string", api_url = "string",
  client_id = "string", client_secret = "string", grant = "string",
  buffer = "number", max_retries = "number", max_retry_after = "number",
  rate_limit = "number|boolean", rate_window = "number", skew_threshold = "number",
  timeout = "number", ca_file = "string", ca_path = "string",
  logger = "function", log_level = "string", transport = "table",
  estimator = "userdata", retry_unsafe = "boolean", backoff_base = "number", backoff_cap = "number",
  scope = "string", jitter = "number", advisory_max = "number", advisory_fraction = "number",
  wall = "function", store = "table",
}

local function check(opts)
  if type(opts) ~= "table" then error("skewguard.genesys.new: options table expected", 3) end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then error("skewguard.genesys.new: unknown option " .. tostring(k), 3) end
    if not want:find(type(v), 1, true) then
      error("skewguard.genesys.new: option " .. k .. " must be a " .. want, 3)
    end
  end
  if opts.rate_limit == true then error("skewguard.genesys.new: rate_limit is a number or false", 3) end
  for _, k in ipairs({ "buffer", "max_retries", "max_retry_after", "skew_threshold", "timeout" }) do
    if opts[k] and opts[k] < 0 then error("skewguard.genesys.new: " .. k .. " must not be negative", 3) end
  end
  if opts.rate_limit and opts.rate_limit < 1 then
    error("skewguard.genesys.new: rate_limit must be at least 1 (or false)", 3)
  end
end

--- Login and API base URLs for a region: an AWS-style name ("eu-west-1") or a
-- domain ("mypurecloud.ie"); any domain is accepted (new regions appear).
function M.hosts(region)
  local domain = regions[region] or region
  if type(domain) ~= "string" or not domain:match("^[%w%-]+%.[%w%.%-]+$") then
    error("skewguard.genesys: not a region or domain: " .. tostring(region), 2)
  end
  return "https://login." .. domain, "https://api." .. domain
end

local function strip(url) return (url:gsub("/+$", "")) end

--- Creates a client. See README "API" for every option.
function M.new(opts)
  check(opts)
  local login_url, api_url
  if opts.region then
    if opts.login_url or opts.api_url then
      error("skewguard.genesys.new: give region or login_url/api_url, not both", 2)
    end
    login_url, api_url = M.hosts(opts.region)
  else
    login_url, api_url = opts.login_url, opts.api_url or opts.login_url
    if not login_url then error("skewguard.genesys.new: region or login_url/api_url is required", 2) end
    login_url, api_url = strip(login_url), strip(api_url)
  end
  for _, u in ipairs({ login_url, api_url }) do
    if not u:match("^https?://[^/]+") then error("skewguard.genesys.new: not an http(s) URL: " .. u, 2) end
  end
  local timeout = opts.timeout or 10
  local log = logmod.new(opts.logger, opts.log_level)
  local transport = opts.transport
  if not transport then
    -- libcurl in scripts, cosockets inside nginx (never a blocking call in a worker)
    local topts = { timeout = timeout }
    if require("skewguard.transport").nginx_phase() then
      if opts.ca_file or opts.ca_path then
        error("skewguard.genesys.new: inside nginx, TLS trust comes from lua_ssl_trusted_certificate, "
          .. "not ca_file/ca_path", 2)
      end
    else
      topts.ca_file, topts.ca_path = opts.ca_file, opts.ca_path
    end
    transport = require("skewguard.transport").default(topts)
  end
  local estimator = opts.estimator or require("skewguard.skew").new({ wall = opts.wall })
  local tokens = require("skewguard.token").new({
    grant = opts.grant, client_id = opts.client_id, client_secret = opts.client_secret,
    token_url = login_url .. "/oauth/token", transport = transport, estimator = estimator,
    buffer = opts.buffer, jitter = opts.jitter, advisory_max = opts.advisory_max,
    advisory_fraction = opts.advisory_fraction, scope = opts.scope, timeout = timeout, log = log,
    store = opts.store,
  })
  local rate_limit = opts.rate_limit
  if rate_limit == nil then rate_limit = 300 end
  return client.new({
    api_url = api_url, login_url = login_url, tokens = tokens, transport = transport,
    estimator = estimator, log = log,
    max_retries = opts.max_retries or 3, max_retry_after = opts.max_retry_after or 180,
    rate_limit = rate_limit, rate_window = opts.rate_window,
    skew_threshold = opts.skew_threshold or 5, timeout = timeout,
    retry_unsafe = opts.retry_unsafe, backoff_base = opts.backoff_base, backoff_cap = opts.backoff_cap,
  })
end

return M

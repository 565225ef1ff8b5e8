--- The request policy over the C primitives: renewal, 401 retry-once, 429 and
-- 5xx backoff, client-side rate limiting, skew sampling from every response,
-- typed errors. Genesys specifics (hosts, error bodies) come from genesys.lua;
-- this file would serve any OAuth2-protected JSON API the same way.
local cjson = require "cjson.safe"
local core = require "skewguard.core"
local errors = require "skewguard.errors"
local backoff = require "skewguard.backoff"
local ratelimit = require "skewguard.ratelimit"

local M = {}
local Client = {}
Client.__index = Client
M.Client = Client

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }
local RETRY_5XX = { [502] = true, [503] = true, [504] = true }
-- A Date sample whose round trip is longer than this says too little to keep.
local MAX_SAMPLE_RTT = 5

local Response = {}
Response.__index = Response
M.Response = Response

--- Decodes the body as JSON: value, or nil, err (kind "protocol").
function Response:json()
  if self._json ~= nil then return self._json end
  local body = self.body
  if body == nil or body == "" then
    return nil, errors.new("protocol", "empty body where JSON was expected", { status = self.status,
      correlation_id = self.correlation_id })
  end
  local value, derr = cjson.decode(body)
  if value == nil then
    return nil, errors.new("protocol", "malformed JSON body (" .. tostring(derr):sub(1, 80) .. ")",
      { status = self.status, correlation_id = self.correlation_id })
  end
  self._json = value
  return value
end

local function urlencode(s)
  return (tostring(s):gsub("[^A-Za-z0-9%-._~]", function(c) return string.format("%%%02X", c:byte()) end))
end
M.urlencode = urlencode

local function encode_query(query)
  if not query then return "" end
  local keys = {}
  for k in pairs(query) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = query[k]
    if type(v) == "table" then
      for _, item in ipairs(v) do parts[#parts + 1] = urlencode(k) .. "=" .. urlencode(item) end
    else
      parts[#parts + 1] = urlencode(k) .. "=" .. urlencode(v)
    end
  end
  return table.concat(parts, "&")
end
M.encode_query = encode_query

-- The fresh-token fast path: a C closure over the manager's token userdata that
-- returns the access token (and with `true` also generation and fingerprint) while
-- the token is fresh, exactly what tokens:get() returns then, and nil in every other
-- state, where get() applies the policy. Nil for a token manager of another shape.
local function fresh_reader(tokens)
  local tok = type(tokens) == "table" and rawget(tokens, "tok")
  local mt = type(tok) == "userdata" and getmetatable(tok)
  if type(mt) == "table" and mt.__name == "skewguard.token" then return tok:fresh_reader() end
  return nil
end

--- Builds a client. `cfg` is already validated by the caller (genesys.new):
-- api_url, tokens (token manager), transport, estimator, log, and the policy numbers.
function M.new(cfg)
  local self = setmetatable({
    api_url = cfg.api_url:gsub("/+$", ""),
    tokens = cfg.tokens,
    transport = cfg.transport,
    estimator = cfg.estimator,
    log = cfg.log,
    max_retries = cfg.max_retries,
    max_retry_after = cfg.max_retry_after,
    rate_limit = cfg.rate_limit,
    rate_window = cfg.rate_window or 60,
    skew_threshold = cfg.skew_threshold,
    timeout = cfg.timeout,
    retry_unsafe = cfg.retry_unsafe or false,
    backoff_base = cfg.backoff_base or 0.5,
    backoff_cap = cfg.backoff_cap or 30,
    random = cfg.random or math.random,
    limiter = nil, limiter_key = nil,
    _fresh = nil,
    counters = {
      requests = 0, responses = 0, retries_401 = 0, retries_429 = 0, retries_5xx = 0,
      retries_network = 0, rate_limit_waits = 0, wait_seconds = 0, skew_samples = 0, token_retries = 0,
    },
  }, Client)
  local fresh = fresh_reader(self.tokens)
  self._fresh = fresh
  if fresh then
    -- client:token() finds this in the instance: no metatable walk, no field
    -- lookup, one C call while the token is fresh. Another self (c.token(other))
    -- or any other state goes to the method.
    self.token = function(me)
      if me == self then
        local access = fresh()
        if access then return access end
      end
      return Client.token(me)
    end
  end
  return self
end

function Client:_sleep(seconds, why)
  if seconds <= 0 then return end
  self.counters.wait_seconds = self.counters.wait_seconds + seconds
  self.log:debug("waiting", { seconds = seconds, reason = why })
  self.transport:sleep(seconds)
end

function Client:_feed_date(date, t_send, t_recv)
  if self.estimator:observe_date(date, t_send, t_recv) then
    self.counters.skew_samples = self.counters.skew_samples + 1
  end
end

-- Feeds the held-back sample of the current Date second (see observe).
function Client:_flush_date()
  local t_send = self._held_send
  if t_send then
    self._held_send = nil
    self:_feed_date(self._date_run, t_send, self._held_recv)
  end
end

--- Feeds the Date header of any response into the skew estimator.
-- Of the responses stamped with the same Date second, the first gives the
-- tightest upper bound and the latest the tightest lower bound; when requests
-- go one after another every response in between is wider on both sides and
-- says nothing new. So the first is fed at once and the latest is held back
-- until the second changes (or the skew is read). A busy client then spends
-- no microsecond per response on redundant samples, and they do not flood the
-- estimator's ring (128 samples) and push the informative ones out.
function Client:observe(res)
  local est = self.estimator
  local h = res.headers
  local date = h and h.date
  if not est or not date or h.age then return end
  local t_send, t_recv = res.t_send_wall, res.t_recv_wall
  if not (t_send and t_recv) or t_recv - t_send > MAX_SAMPLE_RTT then return end
  if date == self._date_run then
    self._held_send, self._held_recv = t_send, t_recv
    return
  end
  self:_flush_date()
  self._date_run = date
  self:_feed_date(date, t_send, t_recv)
end

-- Genesys error bodies: { message, code, status, contextId, ... }
local function describe(res)
  local body = res.body and cjson.decode(res.body)
  if type(body) ~= "table" then return nil, nil end
  local code = type(body.code) == "string" and body.code or nil
  local message = type(body.message) == "string" and body.message or nil
  return code, message
end

local function wrap_response(res)
  res.correlation_id = res.headers and res.headers["inin-correlation-id"]
  return setmetatable(res, Response)
end

--- Seconds to wait for a 429: the longer of Retry-After and the backoff.
-- An HTTP-date is server time; it is converted through the skew estimate at
-- the late end of its interval, so the retry never lands before the server's
-- instant whichever way the clocks are off.
function Client:_retry_after(res)
  local value = res.headers and res.headers["retry-after"]
  if not value then return nil end
  local n, form = core.parse_retry_after(value)
  if not n then return nil end
  if form == "delta" then return n end
  self:_flush_date()
  -- server time n corresponds to local wall n + skew; the latest such is n + hi
  local at = self.estimator and self.estimator:to_local(n, "late") or n
  local wait = at - (res.t_recv_wall or self.transport:wall())
  return wait > 0 and wait or 0
end

function Client:_skew_error(res, code)
  local est = self.estimator
  local skew, uncertainty = nil, nil
  if est then
    self:_flush_date()
    skew = est:skew(); uncertainty = est:uncertainty()
  end
  local fields = { status = 401, code = code, correlation_id = res.correlation_id }
  if skew and math.abs(skew) - uncertainty > self.skew_threshold then
    fields.skew = skew
    fields.uncertainty = uncertainty
    fields.sources = est.sources and est:sources() or nil
    return errors.new("clock_skew", string.format(
      "the local clock is %+.3f s (± %.3f s) off the API server's clock, beyond the %g s threshold, "
      .. "and the server rejects fresh tokens; sync the clock (chrony: `chronyc tracking`, "
      .. "`chronyc makestep`; systemd: `timedatectl`)", skew, uncertainty, self.skew_threshold), fields)
  end
  fields.skew = skew
  fields.uncertainty = uncertainty
  return errors.new("unauthorized", "the API rejected a freshly issued token" ..
    (code and (" (" .. code .. ")") or ""), fields)
end

-- The server counts per access token: a new token starts a new limiter, and
-- only the current token's limiter is kept.
function Client:_limiter(token_key)
  if self.limiter_key ~= token_key or not self.limiter then
    self.limiter = ratelimit.new(self.rate_limit, self.rate_window)
    self.limiter_key = token_key
  end
  return self.limiter
end

--- Waits until the client-side limiter lets a request on this token go.
function Client:_rate_wait(token_key)
  if not self.rate_limit then return end
  local lim = self:_limiter(token_key)
  local wait = lim:delay(self.transport:now())
  if wait > 0 then self.counters.rate_limit_waits = self.counters.rate_limit_waits + 1 end
  while wait > 0 do
    self:_sleep(wait, "client rate limit")
    wait = lim:delay(self.transport:now())
  end
  local reserved = self.transport:now()
  return lim, lim:record(reserved), reserved
end

local function build_request(self, method, path, opts)
  local url
  if path:match("^https?://") then
    -- Never hand the bearer token to a host other than the API's.
    if path:sub(1, #self.api_url + 1) ~= self.api_url .. "/" then
      error("skewguard: absolute URL outside the API base " .. self.api_url, 3)
    end
    url = path
  else
    if path:sub(1, 1) ~= "/" then path = "/" .. path end
    url = self.api_url .. path
  end
  local q = encode_query(opts.query)
  if q ~= "" then url = url .. (url:find("?", 1, true) and "&" or "?") .. q end
  local headers = { accept = "application/json" }
  if opts.headers then for k, v in pairs(opts.headers) do headers[k:lower()] = v end end
  local body = opts.body
  if opts.json ~= nil then
    local encoded, eerr = cjson.encode(opts.json)
    if not encoded then error("skewguard: cannot encode json: " .. tostring(eerr), 3) end
    body = encoded
    headers["content-type"] = headers["content-type"] or "application/json"
  end
  -- header_list = false: the client's responses expose headers only (saves a
  -- table per header line in the curl binding; other transports ignore it)
  return { method = method, url = url, headers = headers, body = body, timeout = opts.timeout or self.timeout,
    header_list = false }
end

--- One API call with the whole policy. Returns a response (status < 400), or
-- nil, err.
function Client:request(method, path, opts)
  if type(method) ~= "string" then error("skewguard: method must be a string", 2) end
  if type(path) ~= "string" then error("skewguard: path must be a string", 2) end
  opts = opts or {}
  method = method:upper()
  local req = build_request(self, method, path, opts)
  local may_retry_failures = IDEMPOTENT[method] or opts.retry_unsafe or self.retry_unsafe
  local retried_401 = false
  local attempts = 0
  local c = self.counters
  local fresh = self._fresh
  while true do
    local access, gen, tkey
    if fresh then access, gen, tkey = fresh(true) end
    if not access then
      access, gen, tkey = self:_token()
      if not access then return nil, gen end
    end
    local lim, slot, reserved = self:_rate_wait(tkey or gen)
    req.headers.authorization = "Bearer " .. access
    c.requests = c.requests + 1
    local res, err = self.transport:request(req)
    req.headers.authorization = nil
    if lim and res then lim:sent(slot, reserved, res.t_send_mono) end
    if not res then
      attempts = attempts + 1
      if err.kind == "network" and may_retry_failures and attempts <= self.max_retries then
        c.retries_network = c.retries_network + 1
        self.log:warn("network error, retrying", { attempt = attempts, error = err.message })
        self:_sleep(backoff.delay(attempts, self.backoff_base, self.backoff_cap, self.random), "network error")
      else
        return nil, err
      end
    else
      c.responses = c.responses + 1
      wrap_response(res)
      self:observe(res)
      local status = res.status
      if status < 400 then return res end
      local code, message = describe(res)
      local fields = { status = status, code = code, correlation_id = res.correlation_id, response = res }
      if status == 401 then
        if retried_401 then return nil, self:_skew_error(res, code) end
        retried_401 = true
        c.retries_401 = c.retries_401 + 1
        self.log:info("401 from the API: renewing the token once", { code = code,
          correlation_id = res.correlation_id })
        self.tokens:invalidate(gen)
      elseif status == 403 then
        return nil, errors.new("forbidden", message or "forbidden", fields)
      elseif status == 429 then
        attempts = attempts + 1
        local retry_after = self:_retry_after(res)
        fields.retry_after = retry_after
        if retry_after and retry_after > self.max_retry_after then
          return nil, errors.new("rate_limited", "Retry-After beyond max_retry_after", fields)
        end
        if attempts > self.max_retries then
          return nil, errors.new("rate_limited", "still rate limited after retries", fields)
        end
        local wait = backoff.delay(attempts, self.backoff_base, self.backoff_cap, self.random)
        if retry_after and retry_after > wait then wait = retry_after end
        c.retries_429 = c.retries_429 + 1
        self.log:warn("429 from the API: waiting", { seconds = wait, correlation_id = res.correlation_id })
        self:_sleep(wait, "429")
      elseif RETRY_5XX[status] and may_retry_failures and attempts < self.max_retries then
        attempts = attempts + 1
        c.retries_5xx = c.retries_5xx + 1
        self.log:warn("server error, retrying", { status = status, correlation_id = res.correlation_id })
        self:_sleep(backoff.delay(attempts, self.backoff_base, self.backoff_cap, self.random), "5xx")
      else
        local kind = (status == 404) and "not_found" or "http"
        return nil, errors.new(kind, message or ("HTTP " .. status), fields)
      end
    end
  end
end

-- Token-endpoint trouble that passes: its own rate limit (Genesys answers 400
-- "rate limit exceeded"), 5xx and network errors. Retried with backoff, never
-- in a tight loop; anything else (bad credentials, config) fails at once.
local TRANSIENT_TOKEN = { rate_limited = true, unavailable = true, network = true }

function Client:_token()
  local attempts = 0
  while true do
    local access, gen, fingerprint = self.tokens:get()
    if access then return access, gen, fingerprint end
    local err = gen
    attempts = attempts + 1
    if not TRANSIENT_TOKEN[err.kind] or attempts > self.max_retries then return nil, err end
    local wait = backoff.delay(attempts, math.max(1, self.backoff_base), self.backoff_cap, self.random)
    if err.retry_after and err.retry_after > wait then wait = err.retry_after end
    if wait > self.max_retry_after then return nil, err end
    self.counters.token_retries = self.counters.token_retries + 1
    self.log:warn("token endpoint trouble, retrying", { kind = err.kind, attempt = attempts, seconds = wait,
      correlation_id = err.correlation_id })
    self:_sleep(wait, "token endpoint " .. err.kind)
  end
end

--- A valid access token (renewing if needed), or nil, err. A fresh token comes
-- from one C call (see fresh_reader); anything else goes through the policy.
function Client:token()
  local fresh = self._fresh
  if fresh then
    local access = fresh()
    if access then return access end
  end
  local access, err = self:_token()
  return access, err
end

--- Logs in now (request() does it lazily). For authorization_code and pkce,
-- args carry the code (and redirect_uri, code_verifier).
function Client:login(args)
  return self.tokens:login(args)
end

function Client:authorize_url(args) return self.tokens:authorize_url(args) end

function Client:close()
  self.tokens:close()
  if self.transport.close then self.transport:close() end
end

function Client:get(path, opts) return self:request("GET", path, opts) end
function Client:delete(path, opts) return self:request("DELETE", path, opts) end
local function with_body(method)
  return function(self, path, json_or_body, opts)
    opts = opts and setmetatable({}, { __index = opts }) or {}
    if type(json_or_body) == "string" then opts.body = json_or_body else opts.json = json_or_body end
    return self:request(method, path, opts)
  end
end
Client.post = with_body("POST")
Client.put = with_body("PUT")
Client.patch = with_body("PATCH")

--- Iterates the entities of a paged list, following nextUri (or pageNumber up
-- to pageCount). Yields item, nil; on failure yields false, err once and then
-- stops (false, not nil: a generic for ends at a nil first value and would
-- swallow the error).
function Client:paginate(path, query)
  local q = {}
  for k, v in pairs(query or {}) do q[k] = v end
  local page, index, next_path, next_query, done = nil, 0, path, q, false
  return function()
    while true do
      if done then return nil end
      if page and index < #page.entities then
        index = index + 1
        return page.entities[index]
      end
      if page then
        if type(page.nextUri) == "string" and page.nextUri ~= "" then
          next_path, next_query = page.nextUri, nil
        elseif tonumber(page.pageNumber) and tonumber(page.pageCount)
            and page.pageNumber < page.pageCount and #page.entities > 0 then
          q.pageNumber = page.pageNumber + 1
          next_path, next_query = path, q
        else
          done = true
          return nil
        end
      end
      local res, err = self:request("GET", next_path, { query = next_query })
      if not res then done = true; return false, err end
      local body, jerr = res:json()
      if type(body) ~= "table" or type(body.entities) ~= "table" then
        done = true
        return false, jerr or errors.new("protocol", "a list page without entities",
          { correlation_id = res.correlation_id })
      end
      page, index = body, 0
      if #body.entities == 0 then done = true; return nil end
    end
  end
end

--- Inside nginx: renews the token from an ngx.timer so requests never wait for
-- one (skewguard.renewal). Call once per worker, e.g. in init_worker_by_lua*.
-- opts: interval (longest gap between checks, 1 s), min_interval (0.05 s).
-- Returns a handle with stop().
function Client:start_renewal_timer(opts)
  return require("skewguard.renewal").start(self.tokens, opts, self.log)
end

function Client:skew()
  if not self.estimator then return nil end
  self:_flush_date()
  return self.estimator:skew(), self.estimator:uncertainty()
end

function Client:server_now()
  if self.estimator then self:_flush_date() end
  return self.estimator and self.estimator:server_now() or self.transport:wall()
end

function Client:stats()
  local out = {}
  for k, v in pairs(self.counters) do out[k] = v end
  if self.tokens.stats then for k, v in pairs(self.tokens:stats()) do out[k] = v end end
  return out
end

return M

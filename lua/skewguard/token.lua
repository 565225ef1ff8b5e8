--- The token manager: gets, keeps and renews one OAuth2 access token through a
-- transport, on top of the C token userdata (skewguard.core.token), which holds
-- the credential and the tokens in wiped C memory and knows the deadlines.
-- Policy here: when to renew, single flight within the process, which grant
-- request to send, turning token-endpoint answers into typed errors, feeding
-- skew samples (Date header, JWT iat) to the estimator. See docs/token.md.
local core = require "skewguard.core"
local errors = require "skewguard.errors"
local cjson = require "cjson.safe"
local logmod = require "skewguard.log"
local jwt = require "skewguard.jwt"

local M = {}
local Manager = {}
Manager.__index = Manager
M.Manager = Manager

local GRANTS = { client_credentials = true, authorization_code = true, pkce = true }
local OPTIONS = {
  grant = "string", client_id = "string", client_secret = "string", token_url = "string",
  authorize_url = "string", transport = "table", estimator = "userdata", buffer = "number",
  jitter = "number", logger = "function", log = "table", log_level = "string", scope = "string",
  timeout = "number", ca_file = "string", ca_path = "string", wait_timeout = "number",
  wait_step = "number", retry_advisory_after = "number", max_nbf_wait = "number",
  advisory_max = "number", advisory_fraction = "number", random = "function",
  store = "table", lock_ttl = "number", store_tolerance = "number", clock_id = "string|boolean",
}

local STORE_METHODS = { "get", "set", "delete_if", "lock", "unlock" }
-- Seconds between store retries after a failure: doubling from 1 up to this.
local STORE_BACKOFF_MAX = 30
-- A record's expires_at must be a plausible server time (after 2001, before 2286).
local MIN_EPOCH, MAX_EPOCH = 1e9, 1e10

-- The boot id names this machine's monotonic clock: records written on the same
-- boot carry a monotonic deadline that readers here can use as is.
local function boot_id()
  local f = io.open("/proc/sys/kernel/random/boot_id", "r")
  if not f then return nil end
  local id = f:read("*l")
  f:close()
  return id and id:match("^[%x-]+$") and id or nil
end

-- A Date or iat sample whose round trip is longer than this says too little.
local MAX_SAMPLE_RTT = 5
-- An error_description from the server is quoted in errors, cut to this length.
local MAX_DESCRIPTION = 200

local function check_opts(opts)
  if type(opts) ~= "table" then error("skewguard.token.new: options table expected", 3) end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then error("skewguard.token.new: unknown option " .. tostring(k), 3) end
    if not want:find(type(v), 1, true) then
      error("skewguard.token.new: option " .. k .. " must be a " .. want, 3)
    end
  end
  if opts.store then
    for _, m in ipairs(STORE_METHODS) do
      if type(opts.store[m]) ~= "function" then
        error("skewguard.token.new: option store has no " .. m .. " method (see docs/store.md)", 3)
      end
    end
  end
  if opts.clock_id == true then error("skewguard.token.new: clock_id is a string or false", 3) end
  for _, k in ipairs({ "lock_ttl", "store_tolerance" }) do
    if opts[k] and not (opts[k] >= 0 and opts[k] < math.huge) then
      error("skewguard.token.new: " .. k .. " must be a finite number >= 0", 3)
    end
  end
  local grant = opts.grant or "client_credentials"
  if not GRANTS[grant] then error("skewguard.token.new: unknown grant " .. grant, 3) end
  if not opts.client_id or opts.client_id == "" then error("skewguard.token.new: client_id is required", 3) end
  if grant ~= "pkce" and (not opts.client_secret or opts.client_secret == "") then
    error("skewguard.token.new: grant " .. grant .. " needs client_secret", 3)
  end
  if grant == "pkce" and opts.client_secret then
    error("skewguard.token.new: the pkce grant is for public clients: no client_secret", 3)
  end
  if not opts.token_url or not opts.token_url:match("^https?://") then
    error("skewguard.token.new: token_url (http(s)://.../oauth/token) is required", 3)
  end
  return grant
end

--- Creates a token manager. See docs/token.md for every option.
function M.new(opts)
  local grant = check_opts(opts)
  local transport = opts.transport
  if not transport then
    transport = require("skewguard.transport.curl").new({ timeout = opts.timeout, ca_file = opts.ca_file,
      ca_path = opts.ca_path })
  end
  local tok = core.token({ client_id = opts.client_id, client_secret = opts.client_secret or false,
    buffer = opts.buffer, jitter = opts.jitter, advisory_max = opts.advisory_max,
    advisory_fraction = opts.advisory_fraction, stale_refresh = (opts.timeout or 30) + 5 })
  if opts.estimator then tok:attach_estimator(opts.estimator) end
  -- a store that seals records (Redis) keys them from the client secret
  if opts.store and type(opts.store.use_secret) == "function" and opts.client_secret then
    opts.store:use_secret(opts.client_secret)
  end
  local self = setmetatable({
    grant = grant,
    client_id = opts.client_id,
    token_url = opts.token_url,
    authorize_endpoint = opts.authorize_url or opts.token_url:gsub("/oauth/token$", "/oauth/authorize"),
    scope = opts.scope,
    transport = transport,
    estimator = opts.estimator,
    log = opts.log or logmod.new(opts.logger, opts.log_level),
    timeout = opts.timeout,
    wait_timeout = opts.wait_timeout or (opts.timeout or 30) + 5,
    wait_step = opts.wait_step or 0.05,
    retry_advisory_after = opts.retry_advisory_after or 5,
    max_nbf_wait = opts.max_nbf_wait or 5,
    random = opts.random or math.random,
    tok = tok,
    next_advisory_try = -math.huge,
    counters = { token_requests = 0, renewals = 0, token_failures = 0, advisory_failures = 0,
      refresh_waits = 0, invalidations = 0, iat_samples = 0, date_samples = 0,
      store_reads = 0, store_writes = 0, store_adoptions = 0, store_lock_waits = 0,
      store_takeovers = 0, store_deletes = 0, store_errors = 0 },
    -- the shared store (docs/store.md): nil = this process only
    store = opts.store,
    lock_ttl = opts.lock_ttl or (opts.timeout or 30) + 2,
    store_tolerance = opts.store_tolerance or 5,
    clock_id = opts.clock_id == nil and boot_id() or opts.clock_id or nil,
    store_retry_at = -math.huge, store_backoff = 0,
    store_id = nil, store_gen = nil, rejected_id = nil,
  }, Manager)
  return self
end

function Manager:_now() return self.transport:now() end

-- Feeds a response's Date header into the estimator.
function Manager:_observe_date(res)
  local est, h = self.estimator, res.headers
  if not est or not h or not h.date or h.age then return end
  if not (res.t_send_wall and res.t_recv_wall) or res.t_recv_wall - res.t_send_wall > MAX_SAMPLE_RTT then return end
  if est:observe_date(h.date, res.t_send_wall, res.t_recv_wall, "date") then
    self.counters.date_samples = self.counters.date_samples + 1
  end
end

local function one_line(s)
  s = tostring(s or ""):gsub("[%c]+", " ")
  if #s > MAX_DESCRIPTION then s = s:sub(1, MAX_DESCRIPTION) .. "..." end
  return s
end

-- A non-200 token-endpoint answer as a typed error. Only the server's error code
-- and description are quoted: the request (which holds the credential) never is.
local function endpoint_error(res)
  local body = res.body and cjson.decode(res.body)
  local code, description
  if type(body) == "table" then
    code = type(body.error) == "string" and body.error or nil
    description = body.error_description or body.description
    description = type(description) == "string" and one_line(description) or nil
  end
  local fields = { status = res.status, code = code,
    correlation_id = res.headers and res.headers["inin-correlation-id"] }
  local status = res.status
  local what = "token endpoint answered HTTP " .. status ..
    (description and (": " .. description) or (code and (": " .. code) or ""))
  if status == 400 and code == "invalid_request" and description
      and description:lower():find("^rate limit exceeded") then
    return errors.new("rate_limited", what, fields)
  elseif status == 429 then
    fields.retry_after = tonumber(res.headers and res.headers["retry-after"])
    return errors.new("rate_limited", what, fields)
  elseif status == 400 and code == "unsupported_grant_type" then
    return errors.new("config", what, fields)
  elseif status == 400 or status == 401 or status == 403 then
    return errors.new("unauthorized", what, fields)
  elseif status >= 500 then
    return errors.new("unavailable", what, fields)
  end
  return errors.new("http", what, fields)
end

-- The accept() options for server times: JWT exp/nbf, and the iat sample.
function Manager:_server_times(access_token, res)
  if not access_token:find("^[%w_-]+%.[%w_-]+%.[%w_-]*$") then return {} end
  local claims = jwt.claims(access_token)
  if not claims then return {} end -- opaque after all: expires_in alone governs
  local est = self.estimator
  if est and type(claims.iat) == "number" and res.t_send_wall and res.t_recv_wall
      and res.t_recv_wall - res.t_send_wall <= MAX_SAMPLE_RTT then
    -- iat has 1 s resolution and was stamped between send and receive
    local iat = math.floor(claims.iat)
    if est:observe_interval(res.t_send_wall - (iat + 1), res.t_recv_wall - iat, "jwt_iat") then
      self.counters.iat_samples = self.counters.iat_samples + 1
    end
  end
  -- converted in the token userdata through the attached estimator
  return { exp = claims.exp, nbf = claims.nbf }
end

-- Sends one token request and stores the answer. Returns generation | nil, err.
function Manager:_exchange(body, headers, label)
  local c = self.counters
  c.token_requests = c.token_requests + 1
  self.log:debug("token request", { grant = label, url = self.token_url })
  local res, err = self.transport:request({ method = "POST", url = self.token_url, headers = headers,
    body = body, timeout = self.timeout })
  if not res then
    c.token_failures = c.token_failures + 1
    self.log:warn("token request failed", { grant = label, kind = err.kind, error = err.message })
    return nil, err
  end
  self:_observe_date(res)
  if res.status ~= 200 then
    err = endpoint_error(res)
    c.token_failures = c.token_failures + 1
    self.log:warn("token endpoint refused", { grant = label, status = res.status, code = err.code,
      correlation_id = err.correlation_id })
    return nil, err
  end
  local answer = cjson.decode(res.body)
  res.body = nil
  if type(answer) ~= "table" then
    c.token_failures = c.token_failures + 1
    err = errors.new("protocol", "token answer is not a JSON object (malformed or truncated)",
      { status = res.status })
    self.log:warn("token answer rejected", { grant = label, error = err.message })
    return nil, err
  end
  local opts = {}
  if type(answer.access_token) == "string" then opts = self:_server_times(answer.access_token, res) end
  opts.t_send_wall = res.t_send_wall
  opts.now = self:_now()
  local gen, msg, kind = self.tok:accept(answer, res.t_send_mono, opts)
  local record
  if gen and self.store then record = self:_new_record(answer, res, opts) end
  answer.access_token, answer.refresh_token = nil, nil
  if not gen then
    c.token_failures = c.token_failures + 1
    err = errors.from_core(msg, kind)
    self.log:warn("token answer rejected", { grant = label, error = err.message })
    return nil, err
  end
  c.renewals = c.renewals + 1
  local info = self.tok:info(opts.now)
  self.log:info("token stored", { grant = label, generation = gen, fingerprint = info.fingerprint,
    lifetime = info.lifetime, seconds_left = info.seconds_left, refresh_token = info.has_refresh_token })
  self.store_id, self.store_gen = nil, nil
  return gen, nil, record
end

-- The request that renews the current token for this grant, or nil, err.
function Manager:_renewal_request()
  local tok = self.tok
  if self.grant == "client_credentials" then
    local body, headers = tok:client_credentials_request({ scope = self.scope })
    return body, headers, "client_credentials"
  end
  if self.grant == "authorization_code" and tok:has_refresh_token() then
    local body, headers = tok:refresh_request()
    return body, headers, "refresh_token"
  end
  return nil, errors.new("token", self.grant == "pkce"
    and "the PKCE token cannot be renewed without the user: run the authorize flow again (login)"
    or "no refresh token: log in with an authorization code first (login{code=, redirect_uri=})")
end

-- Runs fn() as the single refresher; the marker is released even if fn raises.
function Manager:_as_refresher(fn)
  local tok = self.tok
  if not tok:begin_refresh(self:_now()) then return false end
  local ok, gen, err = pcall(fn)
  tok:end_refresh()
  if not ok then error(gen, 0) end
  return true, gen, err
end

-- Another caller (coroutine, light thread) is renewing: wait for it.
function Manager:_wait_for_refresh()
  local deadline = self:_now() + self.wait_timeout
  self.counters.refresh_waits = self.counters.refresh_waits + 1
  while self.tok:refreshing() and self:_now() < deadline do self.transport:sleep(self.wait_step) end
end

-- Renews from the token endpoint, for this process only.
function Manager:_renew_here()
  local body, headers, label = self:_renewal_request()
  if not body then return nil, headers end
  return self:_exchange(body, headers, label)
end

-- ---- the shared store (docs/store.md) ----------------------------------------

-- "skewguard:" .. the first 32 hex of SHA-256(token_url \n client_id): no secret.
function Manager:_store_key()
  if self.store_key_url ~= self.token_url then
    self.store_key_cached = "skewguard:" .. core.sha256_hex(self.token_url .. "\n" .. self.client_id):sub(1, 32)
    self.store_key_url = self.token_url
  end
  return self.store_key_cached
end

function Manager:_store_usable()
  return self.store ~= nil and self:_now() >= self.store_retry_at
end

-- A store call failed: warn, fall back to this process's own token, and leave
-- the store alone for a while (1 s doubling up to 30 s, jittered).
function Manager:_store_failed(op, err)
  local c = self.counters
  c.store_errors = c.store_errors + 1
  self.store_backoff = math.min(math.max(self.store_backoff * 2, 1), STORE_BACKOFF_MAX)
  local delay = self.store_backoff * (0.5 + self.random())
  self.store_retry_at = self:_now() + delay
  self.log:warn("token store failed; using this process's own token", { op = op,
    kind = type(err) == "table" and err.kind or nil, error = type(err) == "table" and err.message or tostring(err),
    retry_in = delay })
end

function Manager:_store_healthy() self.store_backoff = 0 end

-- The skew interval used to convert server times; ±store_tolerance before the
-- first sample (a well-run server keeps UTC within a second or so).
function Manager:_skew_bounds(wall)
  local est = self.estimator
  if est then
    local lo, hi = est:bounds(wall)
    if lo then return lo, hi end
  end
  return -self.store_tolerance, self.store_tolerance
end

-- The record for a token just accepted (answer still holds the secrets).
function Manager:_new_record(answer, res, opts)
  local expires_in = tonumber(answer.expires_in)
  local _, hi = self:_skew_bounds(res.t_send_wall)
  -- the earliest server instant the request could have left, plus the lifetime
  local expires_at = (res.t_send_wall - hi) + expires_in
  if type(opts.exp) == "number" and opts.exp < expires_at then expires_at = opts.exp end
  local info = self.tok:info(opts.now)
  local est = self.estimator
  return {
    v = 1,
    id = core.random_hex(16),
    access_token = answer.access_token,
    token_type = "bearer",
    refresh_token = answer.refresh_token,
    expires_at = expires_at,
    not_before = type(opts.nbf) == "number" and opts.nbf or nil,
    lifetime = expires_in,
    issuer_skew = est and est:skew() or nil,
    issuer_uncertainty = est and est:uncertainty() or nil,
    -- same machine, same monotonic clock: readers there take the writer's exact deadline
    clock_id = self.clock_id,
    mono_deadline = self.clock_id and info.deadline or nil,
  }
end

local function valid_record(rec)
  return type(rec) == "table" and rec.v == 1 and type(rec.id) == "string"
    and type(rec.access_token) == "string" and type(rec.expires_at) == "number"
    and rec.expires_at > MIN_EPOCH and rec.expires_at < MAX_EPOCH
    and type(rec.lifetime) == "number" and rec.lifetime > 0
    and (rec.not_before == nil or type(rec.not_before) == "number")
    and (rec.refresh_token == nil or type(rec.refresh_token) == "string")
end

-- Adopts a record written by another manager when it is valid here and lasts
-- longer than the token we hold. Returns generation | nil.
function Manager:_try_adopt(rec)
  if not rec then return nil end
  if not valid_record(rec) then
    self.log:warn("ignoring a malformed token store record", { key = self:_store_key() })
    return nil
  end
  if rec.id == self.store_id or rec.id == self.rejected_id then return nil end
  local now, wall = self:_now(), self.transport:wall()
  local remaining, accept_opts
  if self.clock_id and rec.clock_id == self.clock_id and type(rec.mono_deadline) == "number" then
    -- written on this boot: the writer's own deadline on the shared monotonic clock
    remaining = rec.mono_deadline - now
    accept_opts = { now = now }
  else
    local lo, hi = self:_skew_bounds(wall)
    -- local expiry at the early end of the interval (DESIGN.md §1 rule 2)
    remaining = rec.expires_at + lo - wall
    accept_opts = { now = now, exp = rec.expires_at, nbf = rec.not_before, skew_lo = lo, skew_hi = hi }
  end
  if remaining ~= remaining or remaining <= 0 then return nil end
  local state, left = self.tok:state(now)
  if state ~= "empty" and state ~= "expired" and left >= remaining then return nil end
  -- Anchor a virtual send instant so the token keeps its full lifetime for the
  -- refresh windows while its deadline is now + remaining (a hair earlier, never
  -- later: the subtraction below rounds toward an earlier deadline).
  local elapsed = math.max(0, rec.lifetime - remaining) + 1e-6
  if accept_opts.exp then accept_opts.t_send_wall = wall - elapsed end
  local gen, msg = self.tok:accept({ access_token = rec.access_token, token_type = rec.token_type,
    refresh_token = rec.refresh_token, expires_in = rec.lifetime }, now - elapsed, accept_opts)
  if not gen then
    self.log:warn("token store record not usable", { error = msg })
    return nil
  end
  self.store_id, self.store_gen = rec.id, gen
  self.counters.store_adoptions = self.counters.store_adoptions + 1
  if not accept_opts.exp then self:_share_skew(rec, now, wall) end
  local info = self.tok:info(now)
  self.log:info("token adopted from the store", { generation = gen, fingerprint = info.fingerprint,
    seconds_left = info.seconds_left, record_generation = rec.generation })
  return gen
end

-- A record from this boot was written against the same wall clock: the
-- writer's skew interval (from its token response's Date header) is a valid
-- sample here too, held at the instant it was written. A worker that only ever
-- adopts tokens learns the skew this way before its first API response.
function Manager:_share_skew(rec, now, wall)
  local est, s, u = self.estimator, rec.issuer_skew, rec.issuer_uncertainty
  if not est or type(s) ~= "number" or type(u) ~= "number" or u < 0 or s ~= s or u == math.huge then return end
  local written = wall - (now - (rec.mono_deadline - rec.lifetime))
  if written > wall then written = wall end
  est:observe_interval(s - u, s + u, "store", written)
end

-- Reads the record: record | false | nil (failed; already reported).
function Manager:_store_get()
  self.counters.store_reads = self.counters.store_reads + 1
  local rec, err = self.store:get(self:_store_key())
  if rec == nil then self:_store_failed("get", err) return nil end
  self:_store_healthy()
  return rec
end

-- Holding the lock: re-check the record, else renew and write the record.
function Manager:_renew_locked()
  local rec = self:_store_get()
  if rec == nil then return self:_renew_here() end -- the store broke under us
  local adopted = self:_try_adopt(rec)
  if adopted and self.tok:state(self:_now()) == "fresh" then return adopted end
  local body, headers, label = self:_renewal_request()
  if not body then return nil, headers end
  local gen, err, record = self:_exchange(body, headers, label)
  if not gen then return nil, err end
  self:_store_write(record, gen, rec)
  return gen
end

-- Writes the record of the token we just got (generation gen); `previous` is the
-- record it replaces (or false). The TTL is the remaining lifetime plus a minute.
function Manager:_store_write(record, gen, previous)
  record.generation = (type(previous) == "table" and tonumber(previous.generation) or 0) + 1
  local wall = self.transport:wall()
  local lo = self:_skew_bounds(wall)
  local ok, err = self.store:set(self:_store_key(), record, math.max(1, record.expires_at + lo - wall + 60))
  if ok then
    self.counters.store_writes = self.counters.store_writes + 1
    self.store_id, self.store_gen = record.id, gen
  else
    self:_store_failed("set", err)
  end
end

-- Renewal through the store (single flight across every manager sharing it).
-- `wait`: whether to wait for another holder's renewal (the token is unusable)
-- or to return at once (advisory: the current token is still good).
-- Returns generation | nil, err | nil, nil, "busy".
function Manager:_renew_through_store(wait)
  local store, key = self.store, self:_store_key()
  local rec = self:_store_get()
  if rec == nil then return self:_renew_here() end
  local adopted = self:_try_adopt(rec)
  if adopted and self.tok:state(self:_now()) == "fresh" then return adopted end
  local deadline = self:_now() + self.wait_timeout
  local waited = false
  while true do
    local owner, err = store:lock(key, self.lock_ttl)
    if owner == nil then
      self:_store_failed("lock", err)
      return self:_renew_here()
    end
    if owner then
      if waited then
        -- the holder released without writing, or died and its lock expired
        self.counters.store_takeovers = self.counters.store_takeovers + 1
        self.log:warn("took over the token renewal from another holder", { waited = waited })
      end
      local ok, gen, rerr = pcall(self._renew_locked, self)
      local released, uerr = store:unlock(key, owner)
      if released == nil then
        self:_store_failed("unlock", uerr)
      elseif not released then
        self.log:warn("the renewal outlived its store lock (lock_ttl too short?)", { lock_ttl = self.lock_ttl })
      end
      if not ok then error(gen, 0) end
      return gen, rerr
    end
    if not wait then return nil, nil, "busy" end
    if self:_now() >= deadline then
      return nil, errors.new("timeout", string.format(
        "waited %g s for another process's token renewal (store lock held)", self.wait_timeout))
    end
    if not waited then
      waited = true
      self.counters.store_lock_waits = self.counters.store_lock_waits + 1
    end
    self.transport:sleep(self.wait_step * (0.5 + self.random()))
    rec = self:_store_get()
    if rec == nil then return self:_renew_here() end
    adopted = self:_try_adopt(rec)
    if adopted then return adopted end
  end
end

-- One renewal, single flight in this process (and across the store when set).
function Manager:_refresh(wait)
  local busy
  local owned, gen, err = self:_as_refresher(function()
    if self:_store_usable() then
      local g, e, b = self:_renew_through_store(wait)
      busy = b
      return g, e
    end
    return self:_renew_here()
  end)
  if owned then return gen, err, busy end
  local before = self.tok:generation()
  self:_wait_for_refresh()
  if self.tok:generation() ~= before then return self.tok:generation() end
  return nil, errors.new("token", "another caller's renewal did not produce a token")
end

--- Renews now (whatever the state), single flight. Returns generation | nil, err.
-- With a store, a newer token another manager already stored counts as renewed.
function Manager:refresh()
  local gen, err = self:_refresh(true)
  return gen, err
end

--- Logs in. client_credentials: no arguments. authorization_code:
-- { code, redirect_uri }. pkce: { code, code_verifier, redirect_uri }.
-- Returns generation | nil, err.
function Manager:login(args)
  if self.grant == "client_credentials" then return self:refresh() end
  if type(args) ~= "table" then error("skewguard.token: login{code=, redirect_uri=...} expected", 2) end
  local owned, gen, err = self:_as_refresher(function()
    local body, headers, label
    if self.grant == "pkce" then
      body, headers = self.tok:pkce_request(args)
      label = "pkce"
    else
      body, headers = self.tok:authorization_code_request(args)
      label = "authorization_code"
    end
    local g, e, record = self:_exchange(body, headers, label)
    if g and record and self:_store_usable() then
      -- a login replaces whatever the store holds: it is the newest grant
      local previous = self:_store_get()
      if previous ~= nil then self:_store_write(record, g, previous) end
    end
    return g, e
  end)
  if owned then return gen, err end
  return nil, errors.new("token", "a renewal is in flight; log in again after it")
end

--- The browser URL that starts a PKCE (or authorization-code) login.
-- args: redirect_uri, code_challenge, and optional state, org, provider, prompt.
function Manager:authorize_url(args)
  local a = {}
  for k, v in pairs(args) do a[k] = v end
  a.authorize_url = a.authorize_url or self.authorize_endpoint
  return self.tok:authorize_url(a)
end

local function usable(self, now)
  local access, state, left = self.tok:access_token(now)
  local info = self.tok:info(now)
  return access, state, left, self.tok:generation(), info.fingerprint
end

--- A valid access token, renewing when needed. Returns
-- access_token, generation, fingerprint | nil, err.
-- fresh: as is. advisory: one caller renews, the others use the current token;
-- a failed advisory renewal keeps the token and is retried after a delay.
-- mandatory/expired/empty: renew (or wait for the renewal in flight); a failed
-- renewal in the mandatory window still returns the current, unexpired token.
function Manager:get()
  local now = self:_now()
  local access, state, left, gen, fp = usable(self, now)
  if state == "fresh" then return access, gen, fp end
  if state == "advisory" then
    if now >= self.next_advisory_try and not self.tok:refreshing() then
      local _, err, busy = self:_refresh(false)
      if busy then
        -- another manager renews through the store: look again shortly, not on every call
        self.next_advisory_try = self:_now() + self.wait_step * (0.5 + self.random())
      elseif err then
        self.counters.advisory_failures = self.counters.advisory_failures + 1
        local delay = self.retry_advisory_after * (0.5 + self.random())
        self.next_advisory_try = self:_now() + delay
        self.log:warn("advisory renewal failed; keeping the current token", { kind = err.kind,
          error = err.message, retry_in = delay, seconds_left = left })
      end
      access, state, _, gen, fp = usable(self, self:_now())
      if access and state ~= "expired" and state ~= "empty" then return access, gen, fp end
    else
      return access, gen, fp
    end
  end
  if state == "not_yet_valid" then
    local valid_from = self.tok:info(now).valid_from
    local wait = valid_from - now
    if wait > self.max_nbf_wait then
      return nil, errors.new("clock_skew", string.format(
        "the new token becomes valid only in %.1f s (its nbf is ahead of the local clock)", wait))
    end
    self.transport:sleep(wait)
    return self:get()
  end
  -- mandatory, expired or empty: every caller needs the renewal
  local before = gen
  local _, err = self:_refresh(true)
  access, state, left, gen, fp = usable(self, self:_now())
  if state == "fresh" or state == "advisory" or state == "not_yet_valid" then
    if state == "not_yet_valid" then return self:get() end
    return access, gen, fp
  end
  if state == "mandatory" then
    if gen == before and err then
      self.log:warn("renewal failed inside the mandatory window; using the current token",
        { kind = err.kind, error = err.message, seconds_left = left })
    end
    return access, gen, fp
  end
  return nil, err or errors.new("token", "no valid access token")
end

--- Drops the token if `generation` is still current (after a 401). Returns true
-- when it did.
function Manager:invalidate(generation)
  local dropped = self.tok:invalidate(generation)
  if dropped then
    self.counters.invalidations = self.counters.invalidations + 1
    self.log:info("token invalidated", { generation = generation })
    if self.store and self.store_id and generation == self.store_gen then
      -- the store half of the compare-and-swap: drop the record only if it still
      -- holds the rejected token (another manager may have replaced it already)
      local id = self.store_id
      self.rejected_id, self.store_id, self.store_gen = id, nil, nil
      if self:_store_usable() then
        local deleted, err = self.store:delete_if(self:_store_key(), id)
        if deleted == nil then
          self:_store_failed("delete_if", err)
        elseif deleted then
          self.counters.store_deletes = self.counters.store_deletes + 1
        end
      end
    end
  end
  return dropped
end

--- The store key of this credential (docs/store.md), or nil without a store.
function Manager:store_key() return self.store and self:_store_key() or nil end

--- State of the current token: state, seconds_left.
function Manager:state() return self.tok:state(self:_now()) end

--- Non-secret facts about the current token (state, fingerprint, deadlines...).
function Manager:info() return self.tok:info(self:_now()) end

--- Counters: token_requests, renewals, token_failures, advisory_failures,
-- refresh_waits, invalidations, date_samples, iat_samples.
function Manager:stats()
  local out = {}
  for k, v in pairs(self.counters) do out[k] = v end
  return out
end

--- Wipes the credential and tokens. Idempotent.
function Manager:close() self.tok:close() end

Manager.__tostring = function(self)
  return "skewguard.token_manager{" .. self.grant .. ", " .. tostring(self.tok) .. "}"
end

return M

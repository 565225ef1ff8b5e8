--- A token store shared by a fleet of hosts through Redis (docs/store.md, docs/fleet.md).
--
--   local store = require("skewguard.store.redis").new { host = "10.0.0.5", port = 6379,
--     password = "...", secret = client_secret }
--
-- The Redis protocol is hiredis's (skewguard.core.redis_format / redis_reader); the
-- bytes move over LuaSocket (optionally LuaSec TLS) in scripts and over cosockets
-- inside nginx. Records are sealed (AES-256-GCM, key from the client secret by HKDF,
-- the Redis key as authenticated data): Redis holds "<id>\n<sealed record>" under the
-- record's key, with a TTL. The id is the record's random id (not secret) in clear
-- so that delete_if can compare it in a server-side script without the key.
local core = require "skewguard.core"
local errors = require "skewguard.errors"
local logmod = require "skewguard.log"
local cjson = require("cjson.safe").new()

local M = {}
local Store = {}
Store.__index = Store
M.Store = Store

local OPTIONS = {
  host = "string", port = "number", password = "string", username = "string", db = "number",
  tls = "boolean", ca_file = "string", server_name = "string", verify = "boolean",
  timeout = "number", connect_timeout = "number", prefix = "string", secret = "string",
  socket = "string", retry_interval = "number", pool_size = "number", keepalive = "number",
  max_reply = "number", logger = "function", log = "table", log_level = "string",
}
local SOCKETS = { auto = true, luasocket = true, ngx = true }
-- Phases where nginx allows cosockets.
local COSOCKET_PHASES = { rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, preread = true }

-- delete_if: drop the record only while it still carries the given id.
local DELETE_IF = [[
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '\n' then return redis.call('DEL', KEYS[1]) end
return 0]]
-- unlock: compare-and-delete, so a lock that expired and was taken over stays.
local UNLOCK = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0]]

local function unavailable(self, what)
  return errors.new("unavailable", "redis " .. self.addr .. ": " .. what)
end

-- Redis error replies name their class in the first word; only that and our own words
-- go into messages (an error reply may quote arguments).
local function error_code(msg)
  return (tostring(msg):match("^(%u[%u_]*)") or "ERR")
end

---------------------------------------------------------------------------------------
-- Connections: a small object with send(bytes), read_reply(reader), release(), close().

local LuaSocketConn = {}
LuaSocketConn.__index = LuaSocketConn

function LuaSocketConn:send(bytes)
  self.sock:settimeout(self.timeout)
  local i = 1
  while i <= #bytes do
    local last, err, partial = self.sock:send(bytes, i)
    if not last then
      if err ~= "timeout" and err ~= "wantwrite" then return nil, err end
      if partial and partial >= i then i = partial + 1 else return nil, err end
    else
      i = last + 1
    end
  end
  return true
end

-- Reads what has arrived (non-blocking), waiting with select until the deadline.
function LuaSocketConn:receive_some(deadline)
  local socket = self.socket
  while true do
    self.sock:settimeout(0)
    local data, err, partial = self.sock:receive(16384)
    local chunk = data or partial
    if chunk and chunk ~= "" then return chunk end
    if err ~= "timeout" and err ~= "wantread" then return nil, err or "closed" end
    local left = deadline - core.monotonic()
    if left <= 0 then return nil, "timeout" end
    if not (self.sock.dirty and self.sock:dirty()) then
      local readable = socket.select({ self.sock }, nil, left)
      if #readable == 0 and deadline - core.monotonic() <= 0 then return nil, "timeout" end
    end
  end
end

function LuaSocketConn:close()
  if self.sock then self.sock:close(); self.sock = nil end
end

local NgxConn = {}
NgxConn.__index = NgxConn

function NgxConn:send(bytes)
  local _, err = self.sock:send(bytes)
  if err then return nil, err end
  return true
end

function NgxConn:receive_some()
  local data, err = self.sock:receiveany(16384)
  if not data then return nil, err end
  return data
end

function NgxConn:close()
  if self.sock then self.sock:close(); self.sock = nil end
end

---------------------------------------------------------------------------------------

local function check_opts(opts)
  if type(opts) ~= "table" then error("skewguard.store.redis.new: options table expected", 3) end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then error("skewguard.store.redis.new: unknown option " .. tostring(k), 3) end
    if type(v) ~= want then error("skewguard.store.redis.new: option " .. k .. " must be a " .. want, 3) end
  end
  if opts.socket and not SOCKETS[opts.socket] then
    error("skewguard.store.redis.new: socket must be \"auto\", \"luasocket\" or \"ngx\"", 3)
  end
  if opts.port and (opts.port < 1 or opts.port > 65535 or opts.port ~= math.floor(opts.port)) then
    error("skewguard.store.redis.new: port must be an integer 1..65535", 3)
  end
  if opts.db and (opts.db < 0 or opts.db ~= math.floor(opts.db)) then
    error("skewguard.store.redis.new: db must be a non-negative integer", 3)
  end
  if opts.username and not opts.password then
    error("skewguard.store.redis.new: username (ACL) needs a password", 3)
  end
  if opts.secret == "" then error("skewguard.store.redis.new: secret must not be empty", 3) end
  for _, k in ipairs({ "timeout", "connect_timeout", "retry_interval", "keepalive", "max_reply", "pool_size" }) do
    if opts[k] and (opts[k] ~= opts[k] or opts[k] <= 0) then
      error("skewguard.store.redis.new: " .. k .. " must be > 0", 3)
    end
  end
end

--- Creates a Redis store. Options (docs/fleet.md): host ("127.0.0.1"), port (6379),
-- password, username (ACL user), db, tls (false), ca_file, server_name, verify (true),
-- timeout (1 s per command), connect_timeout (0.5 s), prefix (""), secret (the client
-- secret the records are sealed with; the token manager supplies it through
-- use_secret when not given), socket ("auto" | "luasocket" | "ngx"), retry_interval
-- (1 s: how long a failed connection makes calls fail fast), pool_size and keepalive
-- (nginx connection pool), max_reply (1 MiB), logger / log / log_level.
function M.new(opts)
  opts = opts or {}
  check_opts(opts)
  local host, port = opts.host or "127.0.0.1", opts.port or 6379
  local self = setmetatable({
    host = host, port = port, addr = host .. ":" .. port,
    username = opts.username, password = opts.password, db = opts.db,
    tls = opts.tls or false, ca_file = opts.ca_file, server_name = opts.server_name or host,
    verify = opts.verify ~= false,
    timeout = opts.timeout or 1, connect_timeout = opts.connect_timeout or 0.5,
    prefix = opts.prefix or "", secret = opts.secret, socket = opts.socket or "auto",
    retry_interval = opts.retry_interval or 1,
    pool_size = opts.pool_size or 16, keepalive = opts.keepalive or 60,
    max_reply = opts.max_reply or 1048576,
    log = opts.log or logmod.new(opts.logger, opts.log_level),
    down_until = -math.huge,
    counters = { commands = 0, connects = 0, failures = 0, bogus = 0 },
  }, Store)
  -- connections authenticated differently (another user or password: a fingerprint,
  -- not the password) or on another database must not share an nginx pool
  self.pool = table.concat({ "skewguard-redis", self.addr, tostring(self.db or 0),
    self.username or "", self.password and core.fingerprint(self.password) or "",
    self.tls and "tls" or "tcp", self.server_name }, ":")
  return self
end

--- Supplies the sealing secret (the client secret) unless one was given to new().
function Store:use_secret(secret)
  if type(secret) ~= "string" or secret == "" then
    error("skewguard.store.redis: use_secret expects the client secret (a non-empty string)", 2)
  end
  if not self.secret then self.secret = secret end
end

function Store:_use_ngx()
  if self.socket ~= "auto" then return self.socket == "ngx" end
  local ngx = rawget(_G, "ngx")
  return ngx ~= nil and type(ngx.get_phase) == "function" and COSOCKET_PHASES[ngx.get_phase()] == true
end

-- TLS over LuaSocket through LuaSec; the host name is checked by OpenSSL (core).
function Store:_tls_wrap(sock)
  local ok_ssl, ssl = pcall(require, "ssl")
  if not ok_ssl then return nil, errors.new("config", "redis tls=true over LuaSocket needs LuaSec (lua-sec)") end
  local conn, err = ssl.wrap(sock, { mode = "client", protocol = "any",
    options = { "all", "no_sslv3", "no_tlsv1", "no_tlsv1_1" },
    verify = self.verify and { "peer", "fail_if_no_peer_cert" } or "none", cafile = self.ca_file })
  if not conn then sock:close(); return nil, errors.new("tls", "redis TLS setup: " .. tostring(err)) end
  conn:sni(self.server_name)
  conn:settimeout(self.connect_timeout)
  local done, herr = conn:dohandshake()
  if not done then
    conn:close()
    return nil, errors.new(herr == "timeout" and "timeout" or "tls",
      "redis " .. self.addr .. ": TLS handshake failed: " .. tostring(herr))
  end
  if self.verify then
    local cert = conn:getpeercertificate()
    local match = cert and core.x509_check_host(cert:pem(), self.server_name)
    if not match then
      conn:close()
      return nil, errors.new("tls", "redis " .. self.addr .. ": certificate does not match " .. self.server_name)
    end
  end
  return conn
end

function Store:_connect_luasocket()
  local socket = require "socket"
  local sock = socket.tcp()
  sock:settimeout(self.connect_timeout)
  local ok, err = sock:connect(self.host, self.port)
  if not ok then
    sock:close()
    return nil, unavailable(self, "connect failed: " .. tostring(err))
  end
  sock:setoption("tcp-nodelay", true)
  if self.tls then
    local conn, terr = self:_tls_wrap(sock)
    if not conn then return nil, terr end
    sock = conn
  end
  return setmetatable({ sock = sock, socket = socket, timeout = self.timeout, fresh = true }, LuaSocketConn)
end

function Store:_connect_ngx()
  local ngx = rawget(_G, "ngx")
  local sock = ngx.socket.tcp()
  sock:settimeouts(self.connect_timeout * 1000, self.timeout * 1000, self.timeout * 1000)
  local ok, err = sock:connect(self.host, self.port, { pool = self.pool, pool_size = self.pool_size })
  if not ok then return nil, unavailable(self, "connect failed: " .. tostring(err)) end
  local conn = setmetatable({ sock = sock, fresh = (sock:getreusedtimes() or 0) == 0 }, NgxConn)
  if self.tls and conn.fresh then
    -- verification uses nginx's lua_ssl_trusted_certificate; the name is checked too.
    -- ngx_lua 0.10.23 with its lua-resty-core: a failure detected synchronously (a name
    -- mismatch) trips an assert inside sslhandshake instead of returning nil, err, and
    -- with reused_session = false it may even report success on a socket it closed. So:
    -- ask for the session (nil) and count a raise as a failed handshake.
    local called, session, serr = pcall(sock.sslhandshake, sock, nil, self.server_name, self.verify)
    if not called then session, serr = nil, "rejected (certificate or handshake; see the nginx error log)" end
    if not session then
      sock:close()
      return nil, errors.new("tls", "redis " .. self.addr .. ": TLS handshake failed: " .. tostring(serr))
    end
  end
  return conn
end

-- Sends the commands in one write and reads one reply per command.
-- Returns a list of { value } / { nil, msg, kind } | nil, err (I/O or protocol).
function Store:_roundtrip(conn, commands)
  local parts = {}
  for i, argv in ipairs(commands) do parts[i] = core.redis_format(argv) end
  local ok, err = conn:send(table.concat(parts))
  if not ok then return nil, unavailable(self, "send failed: " .. tostring(err)) end
  local reader = core.redis_reader()
  local replies = {}
  local deadline = core.monotonic() + self.timeout
  while #replies < #commands do
    local value, msg, kind = reader:reply()
    if value ~= nil or msg ~= nil then
      if kind == "protocol" then
        reader:close()
        return nil, errors.new("protocol", "redis " .. self.addr .. ": " .. msg)
      end
      replies[#replies + 1] = { value, msg, kind }
    else
      local chunk, rerr = conn:receive_some(deadline)
      if not chunk then
        reader:close()
        if rerr == "timeout" then
          return nil, errors.new("unavailable", "redis " .. self.addr .. ": no reply within "
            .. self.timeout .. " s", { timeout = true })
        end
        return nil, unavailable(self, "receive failed: " .. tostring(rerr))
      end
      reader:feed(chunk)
      if reader:pending() > self.max_reply then
        reader:close()
        return nil, errors.new("protocol", "redis " .. self.addr .. ": reply larger than "
          .. self.max_reply .. " bytes")
      end
    end
  end
  reader:close()
  return replies
end

-- AUTH and SELECT on a new connection.
function Store:_handshake(conn)
  local commands = {}
  if self.password then
    commands[#commands + 1] = self.username and { "AUTH", self.username, self.password }
      or { "AUTH", self.password }
  end
  if self.db and self.db ~= 0 then commands[#commands + 1] = { "SELECT", tostring(self.db) } end
  if #commands == 0 then return true end
  local replies, err = self:_roundtrip(conn, commands)
  if not replies then return nil, err end
  for i, r in ipairs(replies) do
    if r[1] == nil then
      if commands[i][1] == "AUTH" then
        return nil, errors.new("unauthorized", "redis " .. self.addr .. " refused AUTH"
          .. (self.username and (" for user " .. self.username) or "") .. " (" .. error_code(r[2]) .. ")")
      end
      return nil, errors.new("config", "redis " .. self.addr .. " refused SELECT " .. self.db
        .. " (" .. error_code(r[2]) .. ")")
    end
  end
  return true
end

function Store:_open()
  local ngx_mode = self:_use_ngx()
  if not ngx_mode and self.conn then return self.conn end
  local conn, err
  if ngx_mode then conn, err = self:_connect_ngx() else conn, err = self:_connect_luasocket() end
  if not conn then return nil, err end
  if conn.fresh then
    self.counters.connects = self.counters.connects + 1
    local ok, herr = self:_handshake(conn)
    if not ok then conn:close(); return nil, herr end
  end
  conn.ngx_mode = ngx_mode
  if not ngx_mode then self.conn = conn end
  return conn
end

function Store:_release(conn, ok)
  if conn.ngx_mode then
    if ok then
      local kept = conn.sock:setkeepalive(self.keepalive * 1000, self.pool_size)
      if not kept then conn:close() end
    else
      conn:close()
    end
  elseif not ok then
    conn:close()
    if self.conn == conn then self.conn = nil end
  end
  conn.fresh = false
end

-- Runs one command. Returns value | nil, err. A Redis error reply comes back as
-- nil, err with err.redis_code. Never raises on run-time failures.
function Store:_command(argv)
  local now = core.monotonic()
  if now < self.down_until then
    return nil, unavailable(self, string.format("down (next try in %.2f s)", self.down_until - now))
  end
  self.counters.commands = self.counters.commands + 1
  for attempt = 1, 2 do
    local conn, err = self:_open()
    if not conn then
      if err.kind == "unavailable" or err.kind == "timeout" or err.kind == "tls" then
        self.down_until = core.monotonic() + self.retry_interval
      end
      self.counters.failures = self.counters.failures + 1
      return nil, err
    end
    local reused = not conn.fresh
    local replies, rerr = self:_roundtrip(conn, { argv })
    if replies then
      self:_release(conn, true)
      local r = replies[1]
      if r[1] == nil then
        local code = error_code(r[2])
        local kind = (code == "NOAUTH" or code == "WRONGPASS" or code == "NOPERM") and "unauthorized"
          or "unavailable"
        self.counters.failures = self.counters.failures + 1
        return nil, errors.new(kind, "redis " .. self.addr .. " refused " .. argv[1] .. " (" .. code .. ")",
          { redis_code = code })
      end
      return r[1]
    end
    self:_release(conn, false)
    -- a kept-alive connection may have died with a restarted server: one fresh try
    if not (reused and attempt == 1 and not rerr.timeout) then
      self.counters.failures = self.counters.failures + 1
      self.down_until = core.monotonic() + self.retry_interval
      return nil, rerr
    end
  end
end

function Store:_key(key)
  if type(key) ~= "string" or key == "" then error("skewguard.store.redis: key must be a non-empty string", 3) end
  return self.prefix .. key
end

function Store:_secret()
  if not self.secret then
    error("skewguard.store.redis: no secret to seal records with (give secret= or call use_secret)", 3)
  end
  return self.secret
end

local function check_ttl(ttl)
  if type(ttl) ~= "number" or ttl ~= ttl or ttl <= 0 or ttl == math.huge then
    error("skewguard.store.redis: ttl must be a positive number of seconds", 3)
  end
  return string.format("%d", math.ceil(ttl * 1000))
end

local function bogus(self, key, why)
  self.counters.bogus = self.counters.bogus + 1
  self.log:warn("redis record rejected; treating it as absent (the next renewal replaces it)",
    { key = key, reason = why })
  return false, errors.new("bogus", "redis record under " .. key .. " rejected: " .. why)
end

--- The record under key: record | false (none, or a record that fails authentication:
-- then also a second value, an error of kind "bogus", and a warning is logged) | nil, err.
function Store:get(key)
  local k = self:_key(key)
  local secret = self:_secret()
  local value, err = self:_command({ "GET", k })
  if value == nil then return nil, err end
  if value == false then return false end
  if type(value) ~= "string" then return bogus(self, k, "not a string value") end
  local nl = value:find("\n", 1, true)
  if not nl then return bogus(self, k, "no record id") end
  local id = value:sub(1, nl - 1)
  local plaintext, msg = core.unseal(secret, k, value:sub(nl + 1))
  if not plaintext then return bogus(self, k, msg) end
  local record = cjson.decode(plaintext)
  plaintext = nil -- luacheck: ignore 311 (drop the reference early)
  if type(record) ~= "table" or record.id ~= id or type(record.expires_at) ~= "number" then
    return bogus(self, k, "sealed content is not a record with this id")
  end
  return record
end

--- Stores record under key for ttl seconds (the Redis key expires then).
-- Returns true | nil, err.
function Store:set(key, record, ttl)
  local k = self:_key(key)
  local px = check_ttl(ttl)
  if type(record) ~= "table" or type(record.id) ~= "string" or record.id == "" or record.id:find("\n", 1, true) then
    error("skewguard.store.redis: record with a string id (no newline) expected", 2)
  end
  local plaintext = cjson.encode(record)
  if not plaintext then error("skewguard.store.redis: record is not encodable as JSON", 2) end
  local blob, msg, kind = core.seal(self:_secret(), k, plaintext)
  plaintext = nil -- luacheck: ignore 311
  if not blob then return nil, errors.from_core(msg, kind) end
  local value, err = self:_command({ "SET", k, record.id .. "\n" .. blob, "PX", px })
  if value == nil then return nil, err end
  return true
end

--- Deletes the record under key only if its id is `id`. Returns true | false | nil, err.
function Store:delete_if(key, id)
  local k = self:_key(key)
  if type(id) ~= "string" or id == "" then error("skewguard.store.redis: delete_if needs the record id", 2) end
  local value, err = self:_command({ "EVAL", DELETE_IF, "1", k, id })
  if value == nil then return nil, err end
  return value == 1
end

--- Takes the renewal lock of key for ttl seconds. Returns owner | false | nil, err.
function Store:lock(key, ttl)
  local k = self:_key(key) .. ":lock"
  local px = check_ttl(ttl)
  local owner = core.random_hex(16)
  local value, err = self:_command({ "SET", k, owner, "NX", "PX", px })
  if value == nil then return nil, err end
  if type(value) == "table" and value.ok == "OK" then return owner end
  return false
end

--- Releases the lock if `owner` still holds it. Returns true | false | nil, err.
function Store:unlock(key, owner)
  local k = self:_key(key) .. ":lock"
  if type(owner) ~= "string" or owner == "" then error("skewguard.store.redis: unlock needs the owner", 2) end
  local value, err = self:_command({ "EVAL", UNLOCK, "1", k, owner })
  if value == nil then return nil, err end
  return value == 1
end

--- Counters: commands, connects, failures, bogus.
function Store:stats()
  local out = {}
  for k, v in pairs(self.counters) do out[k] = v end
  return out
end

--- Closes the connection (scripts). Idempotent; the store reconnects on next use.
function Store:close()
  if self.conn then self.conn:close(); self.conn = nil end
end

Store.__tostring = function(self)
  return "skewguard.store.redis{" .. self.addr .. (self.tls and ", tls" or "")
    .. (self.db and (", db " .. self.db) or "") .. "}"
end

return M

--- SNTP client (RFC 4330 / RFC 5905): how far the local wall clock is from UTC.
--
--   local sntp = require "skewguard.sntp"
--   local r, err = sntp.query({ "ntp1.example", "ntp2.example" }, { samples = 4 })
--   -- r.skew (local - server, s), r.uncertainty, r.delay, r.stratum, r.refid, ...
--
-- The packet work (random transmit timestamp, validation, era-safe offset arithmetic)
-- is the sans-I/O exchange in skewguard.core; this module adds the policy: bursts,
-- server lists, Kiss-o'-Death memory, feeding a skew estimator. How the bytes move is a
-- pluggable transport (see M.transports), so the same policy runs over a blocking
-- socket in scripts and over cosockets inside nginx.
local core = require "skewguard.core"
local errors = require "skewguard.errors"

local M = {}

local DEFAULTS = {
  port = 123,
  timeout = 1,            -- seconds, per exchange
  samples = 4,            -- burst size; the minimum-delay valid sample wins
  max_root_distance = 1,  -- seconds: root delay / 2 + root dispersion above this is rejected
  rate_backoff = 64,      -- seconds of silence after a first RATE kiss; doubles on each repeat
  rate_backoff_max = 86400,
}

--- Transports: function(exchange, host, port, timeout, refused)
--   -> result | nil, message, kind[, code[, address]]
-- A transport resolves `host` and skips every numeric address that is a key of
-- `refused` (a table, or nil); for the others it calls exchange:sent(mono, wall) right
-- before sending exchange:packet(), feeds every datagram to
-- exchange:validate(data, mono, wall) with both clocks read right after it arrived,
-- ignores replies whose kind is "bogus" until `timeout` has passed on the monotonic
-- clock, and names the server in its messages. A result carries `server`, the address
-- used; a failure from a server that answered carries that address as its 5th value
-- (a Kiss-o'-Death is held against the address, whatever name led to it); when every
-- address was skipped the failure is kind "kiss_of_death" with the code and no address.
M.transports = {
  blocking = function(exchange, host, port, timeout, refused)
    return core.sntp_query(exchange, host, port, timeout, refused)
  end,
}

--- A transport in Lua over a LuaSocket-like UDP object, for hosts whose sockets are not
-- file descriptors we may block on (OpenResty cosockets) and as the reference for the
-- transport contract. `new_udp()` returns an object with setpeername(host, port),
-- settimeout(t), send(data), receive() -> data | nil, "timeout" | err, close(), and
-- optionally getpeername(); `timeout_scale` turns seconds into its timeout unit (1 for
-- LuaSocket, 1000 for ngx.socket.udp).
function M.udp_transport(new_udp, timeout_scale)
  timeout_scale = timeout_scale or 1
  return function(exchange, host, port, timeout, refused)
    local label = string.format("SNTP server %s port %d", host, port)
    local deadline = core.monotonic() + timeout
    local sock, err = new_udp()
    if not sock then return nil, label .. ": " .. tostring(err), "network" end
    local ok
    ok, err = sock:setpeername(host, port)
    if not ok then
      sock:close()
      return nil, label .. ": " .. tostring(err), "network"
    end
    local address = host
    if sock.getpeername then address = sock:getpeername() or host end
    if address ~= host then label = string.format("SNTP server %s (%s) port %d", host, address, port) end
    if refused and refused[address] then
      sock:close()
      return nil, label .. ": not asked: it sent us kiss-o'-death " .. refused[address] .. " earlier",
        "kiss_of_death", refused[address]
    end
    local bogus, last_bogus = 0, nil
    exchange:sent(core.now())
    ok, err = sock:send(exchange:packet())
    if not ok then
      sock:close()
      return nil, label .. ": send: " .. tostring(err), "network"
    end
    while true do
      local left = deadline - core.monotonic()
      if left <= 0 then break end
      sock:settimeout(left * timeout_scale)
      local data, rerr = sock:receive()
      local mono, wall = core.now()
      if data then
        local res, msg, kind, code = exchange:validate(data, mono, wall)
        if res then
          sock:close()
          res.server, res.bogus = address, bogus
          return res
        elseif kind ~= "bogus" then
          sock:close()
          return nil, label .. ": " .. msg, kind, code, address
        end
        bogus, last_bogus = bogus + 1, msg
      elseif rerr ~= "timeout" then
        sock:close()
        return nil, label .. ": recv: " .. tostring(rerr), "network"
      end
    end
    sock:close()
    if bogus > 0 then
      return nil, string.format("%s: no genuine reply within %g s; ignored %d bogus datagram%s (last: %s)",
        label, timeout, bogus, bogus == 1 and "" or "s", last_bogus), "bogus"
    end
    return nil, string.format("%s: no reply within %g s", label, timeout), "timeout"
  end
end

--- Inside nginx: the same contract over `ngx.socket.udp` (non-blocking; timeouts in
-- milliseconds). Host names need nginx's `resolver`; IP literals do not. Raises
-- in phases without cosockets (init_worker, log...), like the HTTP transport.
M.transports.ngx = function(exchange, host, port, timeout, refused)
  require("skewguard.transport").check_phase("skewguard.sntp (ngx transport)", 2)
  local ngx = rawget(_G, "ngx")
  return M.udp_transport(ngx.socket.udp, 1000)(exchange, host, port, timeout, refused)
end

-- Kiss-o'-Death memory for this process, keyed by "address port" of the server that
-- sent the kiss: { code, denied = true } or { code = "RATE", interval, until_mono }.
local kisses = {}

--- Forget every Kiss-o'-Death (for tests, or after an operator fixed the cause).
function M.reset()
  kisses = {}
end

-- The code that forbids asking `key` now, and for RATE for how long still.
local function refusal(key, now)
  local k = kisses[key]
  if not k then return nil end
  if k.denied then return k.code end
  if k.until_mono > now then return "RATE", k.until_mono - now end
  return nil
end

local function refused_addresses(port, now)
  local set, soonest
  for key in pairs(kisses) do
    local address, p = key:match("^(.*) (%d+)$")
    if tonumber(p) == port then
      local code, wait = refusal(key, now)
      if code then
        set = set or {}
        set[address] = code
        if wait and (not soonest or wait < soonest) then soonest = wait end
      end
    end
  end
  return set, soonest
end

local function check_opts(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error("skewguard.sntp: opts must be a table", 3) end
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do
    if k == "estimator" then
      local t = type(v)
      if (t ~= "table" and t ~= "userdata") or not v.observe_interval then
        error("skewguard.sntp: opts.estimator must have an observe_interval method", 3)
      end
    elseif k == "transport" then
      if type(v) ~= "function" and not M.transports[v] then
        error("skewguard.sntp: opts.transport must be a function or a name in sntp.transports", 3)
      end
    elseif DEFAULTS[k] == nil then
      error("skewguard.sntp: unknown option " .. tostring(k), 3)
    elseif type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
      error("skewguard.sntp: opts." .. k .. " must be a finite number >= 0", 3)
    end
    o[k] = v
  end
  if o.port < 1 or o.port > 65535 or o.port % 1 ~= 0 then
    error("skewguard.sntp: opts.port must be an integer 1..65535", 3)
  end
  if o.samples < 1 or o.samples % 1 ~= 0 then
    error("skewguard.sntp: opts.samples must be an integer >= 1", 3)
  end
  if o.timeout <= 0 then error("skewguard.sntp: opts.timeout must be > 0", 3) end
  if type(o.transport) ~= "function" then
    -- inside nginx a blocking socket would stall the worker: cosockets by default
    local default = require("skewguard.transport").nginx_phase() and "ngx" or "blocking"
    o.transport = M.transports[o.transport or default]
  end
  return o
end

local function refused_error(label, host, code, wait)
  if code == "RATE" then
    return nil, errors.new("rate_limited", string.format("%s: asked us to slow down (kiss-o'-death RATE); "
      .. "backing off for another %.3f s", label, wait or 0), { code = "RATE", retry_after = wait, server = host })
  end
  return nil, errors.new("kiss_of_death", string.format("%s: refused us earlier (kiss-o'-death %s); "
    .. "this process does not ask it again", label, code), { code = code, server = host })
end

-- Applies the Kiss-o'-Death rules; returns true when the burst must stop.
local function kissed(key, code, opts)
  if code == "DENY" or code == "RSTR" then
    kisses[key] = { code = code, denied = true }
    return true
  elseif code == "RATE" then
    local prev = kisses[key]
    local interval = prev and math.min(prev.interval * 2, opts.rate_backoff_max) or opts.rate_backoff
    kisses[key] = { code = "RATE", interval = interval, until_mono = core.monotonic() + interval }
    return true
  elseif code:sub(1, 1) == "X" then
    return false -- experimental codes are ignored (RFC 5905 7.4): no lasting effect
  end
  return true -- any other code: this server is no use now, but not banned
end

local function query_server(host, port, opts)
  local label = string.format("SNTP server %s port %d", host, port)
  local now = core.monotonic()
  local code, wait = refusal(host .. " " .. port, now) -- `host` is a literal address
  if code then return refused_error(label, host, code, wait) end
  local refused, soonest = refused_addresses(port, now)

  local best, count, last
  for _ = 1, opts.samples do
    local exchange = core.sntp_request(opts.max_root_distance)
    local res, msg, kind, kiss, address = opts.transport(exchange, host, port, opts.timeout, refused)
    exchange:close()
    if res then
      count = (count or 0) + 1
      if not best or res.delay < best.delay then best = res end
    else
      last = errors.from_core(msg, kind, { code = kiss, server = host })
      if kind == "kiss_of_death" then
        if not address then -- every address of `host` kissed us earlier: nothing was sent
          return refused_error(label, host, kiss, soonest)
        end
        if kissed(address .. " " .. port, kiss or "", opts) then
          -- A refusal voids the burst; after RATE the genuine samples already taken stand.
          if kiss ~= "RATE" then best = nil end
          break
        end
      elseif kind == "timeout" or kind == "bogus" or kind == "network" then
        break -- keep what the burst already has
      else
        best = nil -- the server itself is unfit (unsynchronised, protocol): use none of it
        break
      end
    end
  end
  if not best then return nil, last end
  local key = best.server .. " " .. port
  if kisses[key] and not kisses[key].denied and (not last or last.code ~= "RATE") then
    kisses[key] = nil -- it answered at our pace again: the next RATE starts the backoff afresh
  end
  best.samples = count
  best.host = host
  best.port = port
  return best
end

local function entry(v, i, default_port)
  if type(v) == "string" and v ~= "" then return v, default_port end
  if type(v) == "table" and type(v.host) == "string" and v.host ~= "" then
    local port = v.port or default_port
    if type(port) ~= "number" or port < 1 or port > 65535 or port % 1 ~= 0 then
      error("skewguard.sntp: server #" .. i .. " has a bad port", 3)
    end
    return v.host, port
  end
  error("skewguard.sntp: server #" .. i .. " is neither a host name nor { host =, port = }", 3)
end

--- Query `servers`: a host name or address, or a list of them (or of { host =, port = }
-- tables) tried in order until one answers validly. Returns the minimum-delay valid
-- sample of a burst of `opts.samples`, or nil, err (skewguard.errors; err.kind: timeout,
-- network, bogus, kiss_of_death, rate_limited, unsynchronised, protocol; err.code holds
-- a kiss code; a list that fails throughout puts every failure in err.errors).
function M.query(servers, opts)
  local o = check_opts(opts)
  local list = servers
  if type(servers) == "string" or (type(servers) == "table" and servers.host) then
    list = { servers }
  end
  if type(list) ~= "table" or #list == 0 then
    error("skewguard.sntp: servers must be a host name or a non-empty list of them", 2)
  end
  local hosts, ports = {}, {}
  for i = 1, #list do hosts[i], ports[i] = entry(list[i], i, o.port) end
  local failures = {}
  for i = 1, #list do
    local res, err = query_server(hosts[i], ports[i], o)
    if res then
      if o.estimator then
        o.estimator:observe_interval(res.skew - res.uncertainty, res.skew + res.uncertainty, "sntp")
      end
      return res
    end
    failures[#failures + 1] = err
  end
  if #failures == 1 then return nil, failures[1] end
  local messages = {}
  for i, e in ipairs(failures) do messages[i] = e.message end
  local last = failures[#failures]
  return nil, errors.new(last.kind, "no SNTP server answered validly: " .. table.concat(messages, "; "),
    { code = last.code, retry_after = last.retry_after, server = last.server, errors = failures })
end

return M

-- One "host" of a fleet (spec/64-fleet_spec.lua, spec/65-fleet_nginx_spec.lua): a separate
-- OS process that shares one credential through Redis with the other hosts and calls the
-- stand-in's API in a loop, through genesys.new like a user's script.
--
--   env LUA_PATH=... LUA_CPATH=... lua5.4 spec/support/fleet_host.lua <config.json>
--
-- Its wall clock is `offset` seconds off: every wall reading it makes (the transport's
-- wall(), the send and receive instants of each response, the estimator's clock) is
-- shifted, as on a host whose clock is wrong; CLOCK_MONOTONIC is not (it is only ever
-- compared within one process, and the spec uses it to line events up).
--
-- config: login_url, client_id, client_secret, redis_port, offset, name, lock_ttl,
-- start_at / stop_at (monotonic), interval, timeout, status (a JSON file rewritten with
-- progress), warmup (Date samples taken before start_at).
-- stdout, one line per event (line-buffered, so a killed host leaves what it had):
--   lock <mono>                        took the renewal lock
--   unlock <mono>
--   fp <mono> <fingerprint>            the token in use changed (fingerprint, not the token)
--   fail <mono> <kind or status>       a request failed
-- stderr: skewguard's log (info and up, with monotonic times), then "done".
local cjson = require "cjson"
local core = require "skewguard.core"
local genesys = require "skewguard.genesys"
local redis_store = require "skewguard.store.redis"

local function read_all(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write_atomic(path, s)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(s)
  f:close()
  assert(os.rename(tmp, path))
end

io.stdout:setvbuf("line")
local cfg = cjson.decode(read_all(assert(arg[1], "config file expected")))
local offset = cfg.offset or 0
local pid = tonumber(read_all("/proc/self/stat"):match("^(%d+)"))

local function logger(level, message, fields)
  io.stderr:write(("%.3f %s %s%s\n"):format(core.monotonic(), level, message,
    require("skewguard.log").format_fields(fields)))
end

-- This host's wall clock and a libcurl transport that reads it.
local function wall() return core.wall() + offset end
local inner = require("skewguard.transport.curl").new({ timeout = cfg.timeout })
local transport = setmetatable({}, { __index = inner })
function transport.request(_, req)
  local res, err = inner:request(req)
  if res then res.t_send_wall, res.t_recv_wall = res.t_send_wall + offset, res.t_recv_wall + offset end
  return res, err
end
function transport.wall() return wall() end

-- The real Redis store, observed: lock events go to stdout so the spec can tell which
-- process holds the renewal lock.
local store = redis_store.new({ port = cfg.redis_port, timeout = 0.5, connect_timeout = 0.3,
  retry_interval = 0.5, logger = logger, log_level = "warn" })
local observed = setmetatable({}, { __index = function(_, name)
  local method = store[name]
  if type(method) ~= "function" then return method end
  return function(_, ...) return method(store, ...) end
end })
local holding = false
function observed.lock(_, key, ttl)
  local owner, err = store:lock(key, ttl)
  if owner then
    holding = true
    print(("lock %.3f"):format(core.monotonic()))
  end
  return owner, err
end
function observed.unlock(_, key, owner)
  holding = false
  print(("unlock %.3f"):format(core.monotonic()))
  return store:unlock(key, owner)
end

local client = genesys.new({
  login_url = cfg.login_url, client_id = cfg.client_id, client_secret = cfg.client_secret,
  transport = transport, wall = wall, store = observed, lock_ttl = cfg.lock_ttl,
  -- another host: another boot, so the shared expiry goes through server time
  clock_id = "fleet-" .. cfg.name, timeout = cfg.timeout, rate_limit = false,
  logger = logger, log_level = "info",
})
local tokens = client.tokens

-- A host measures its clock before it needs a token (a real one has SNTP or earlier
-- responses): a few Date samples at different sub-second phases.
for i = 1, cfg.warmup or 0 do
  local res = transport:request({ method = "GET", url = cfg.login_url .. "/", timeout = cfg.timeout })
  if res then client:observe(res) end
  if i < cfg.warmup then core.sleep(0.13) end
end

local status = { pid = pid, name = cfg.name, requests = 0, ok = 0, failed = 0, errors = {} }
local function publish()
  local skew, uncertainty = client:skew()
  status.skew, status.uncertainty = skew, uncertainty
  status.holding = holding
  status.fingerprint = tokens:info().fingerprint
  status.stats = client:stats()
  status.store = store:stats()
  write_atomic(cfg.status, cjson.encode(status))
end

publish()
while core.monotonic() < cfg.start_at do core.sleep(0.01) end
local last_fp, last_publish = nil, 0
while core.monotonic() < cfg.stop_at do
  local res, err = client:get("/api/v2/organizations/me")
  status.requests = status.requests + 1
  if res and res.status == 200 then
    status.ok = status.ok + 1
    local fp = tokens:info().fingerprint
    if fp ~= last_fp then
      print(("fp %.3f %s"):format(core.monotonic(), tostring(fp)))
      last_fp = fp
    end
  else
    status.failed = status.failed + 1
    local what = err and err.kind or ("HTTP " .. tostring(res and res.status))
    status.errors[what] = (status.errors[what] or 0) + 1
    print(("fail %.3f %s"):format(core.monotonic(), what))
  end
  if core.monotonic() - last_publish > 0.2 then
    publish()
    last_publish = core.monotonic()
  end
  core.sleep(cfg.interval or 0.05)
end
status.done = true
publish()
client:close()
store:close()
io.stderr:write("done\n")

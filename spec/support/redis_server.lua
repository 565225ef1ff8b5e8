-- A throwaway redis-server on 127.0.0.1 for specs: its own config in a temp dir, a free
-- port, no persistence, LD_PRELOAD removed, and a watcher that stops it if the test
-- interpreter dies. One per spec file: start in setup(), stop in teardown().
--
--   local rs = require("support.redis_server").start { password = "pw", tls = true,
--     users = { "user fleet on >fleetpw ~* +@all" } }
--   rs.port, rs.tls_port, rs.ca_file, rs.dir; rs:stop(); rs:start_again(); rs:cli("GET", "k")
local socket = require "socket"
local core = require "skewguard.core"

local M = {}
local Server = {}
Server.__index = Server

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function capture(cmd)
  local f = assert(io.popen(cmd))
  local out = f:read("*a")
  f:close()
  return out
end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- A CA and a server certificate for 127.0.0.1 / localhost signed by it.
local function make_certs(dir)
  local cmds = {
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=skewguard-test-ca"
      .. " -keyout " .. dir .. "/ca.key -out " .. dir .. "/ca.pem",
    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost"
      .. " -keyout " .. dir .. "/server.key -out " .. dir .. "/server.csr",
    "openssl x509 -req -in " .. dir .. "/server.csr -CA " .. dir .. "/ca.pem -CAkey " .. dir .. "/ca.key"
      .. " -CAcreateserial -days 2 -extfile " .. dir .. "/san.ext -out " .. dir .. "/server.pem",
  }
  write(dir .. "/san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
  for _, c in ipairs(cmds) do assert(sh(c .. " >/dev/null 2>&1"), "openssl failed: " .. c) end
end

-- Running, not exited: a server whose parent shell is gone stays a zombie until the
-- container's init reaps it, and its port is already free then.
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("*a")
  f:close()
  local state = stat:match("^%d+ %b() (%u)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

local function own_pid()
  return capture("echo $PPID"):match("%d+")
end

function M.start(opts)
  opts = opts or {}
  local dir = capture("mktemp -d /tmp/skewguard-redis.XXXXXX"):match("%S+")
  local self = setmetatable({ dir = dir, opts = opts }, Server)
  if opts.tls then
    make_certs(dir)
    self.ca_file = dir .. "/ca.pem"
  end
  local last
  for _ = 1, 5 do
    self.port = free_port()
    if opts.tls then self.tls_port = free_port() end
    local ok, err = self:_launch()
    if ok then return self end
    last = err
  end
  error("redis-server did not start: " .. tostring(last), 2)
end

function Server:_config()
  local o = self.opts
  local lines = {
    "bind 127.0.0.1", "port " .. self.port, "save ''", "appendonly no", "daemonize no",
    "dir " .. self.dir, "logfile " .. self.dir .. "/redis.log", "databases 4",
  }
  if o.password then lines[#lines + 1] = "requirepass " .. o.password end
  for _, u in ipairs(o.users or {}) do lines[#lines + 1] = u end
  if o.tls then
    lines[#lines + 1] = "tls-port " .. self.tls_port
    lines[#lines + 1] = "tls-cert-file " .. self.dir .. "/server.pem"
    lines[#lines + 1] = "tls-key-file " .. self.dir .. "/server.key"
    lines[#lines + 1] = "tls-ca-cert-file " .. self.dir .. "/ca.pem"
    lines[#lines + 1] = "tls-auth-clients no"
  end
  return table.concat(lines, "\n") .. "\n"
end

-- Starts redis-server in the background with a watcher: when the test interpreter dies,
-- the watcher stops the server. Waits until it accepts connections.
function Server:_launch()
  local conf = self.dir .. "/redis.conf"
  write(conf, self:_config())
  local script = string.format(
    "redis-server %s >>%s/stdout.log 2>&1 & rpid=$!; echo $rpid; "
    .. "(while kill -0 %s 2>/dev/null && kill -0 $rpid 2>/dev/null; do sleep 1; done; kill $rpid 2>/dev/null) "
    .. ">/dev/null 2>&1 &",
    conf, self.dir, own_pid())
  self.pid = tonumber(capture("env -u LD_PRELOAD sh -c '" .. script .. "'"):match("%d+"))
  local deadline = core.monotonic() + 5
  while core.monotonic() < deadline do
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", self.port)
    c:close()
    if ok then return true end
    if not alive(self.pid) then break end
    core.sleep(0.02)
  end
  self:stop()
  local log = io.open(self.dir .. "/redis.log")
  local text = log and log:read("*a") or ""
  if log then log:close() end
  return nil, text
end

--- Stops the server and waits for it to exit (the data is gone: no persistence).
function Server:stop()
  if not self.pid then return end
  sh("kill " .. self.pid .. " 2>/dev/null")
  local deadline = core.monotonic() + 5
  while core.monotonic() < deadline and alive(self.pid) do core.sleep(0.02) end
  self.pid = nil
end

--- Starts it again on the same ports (after stop).
function Server:start_again()
  assert(not self.pid, "still running")
  local ok, err = self:_launch()
  if not ok then error("redis-server did not start again: " .. tostring(err), 2) end
end

--- Stops it and removes the temp dir.
function Server:destroy()
  self:stop()
  if self.dir then sh("rm -rf " .. self.dir) end
  self.dir = nil
end

--- One raw command through our own protocol code (hiredis format/reader) over a plain
-- socket, authenticated with the server's password if any. Returns the reply value
-- (or nil, msg, kind).
function Server:cli(...)
  local c = assert(socket.tcp())
  c:settimeout(2)
  assert(c:connect("127.0.0.1", self.port))
  local reader = core.redis_reader()
  local function call(argv)
    assert(c:send(core.redis_format(argv)))
    while true do
      local v, msg, kind = reader:reply()
      if v ~= nil or msg ~= nil then return v, msg, kind end
      local data, err, partial = c:receive(1)
      local chunk = data or partial
      assert(chunk and chunk ~= "", "redis cli: " .. tostring(err))
      -- byte by byte keeps this helper simple; the store itself reads in blocks
      reader:feed(chunk)
    end
  end
  if self.opts.password then assert(call({ "AUTH", self.opts.password })) end
  local v, msg, kind = call({ ... })
  c:close()
  reader:close()
  return v, msg, kind
end

return M

-- A real chronyd serving NTP on loopback for the specs and benchmarks: its own config,
-- pid file and command socket in a temp directory, -x so it never touches the system
-- clock, `local stratum 10` so it serves at once without any upstream source.
local socket = require "socket"
local core = require "skewguard.core"

local M = {}
local Chronyd = {}
Chronyd.__index = Chronyd

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function free_udp_port()
  local probe = assert(socket.udp())
  assert(probe:setsockname("127.0.0.1", 0))
  local _, port = probe:getsockname()
  probe:close()
  return tonumber(port)
end

local function start_once()
  local dir = sh("mktemp -d")
  assert(dir ~= "", "mktemp failed")
  local self = setmetatable({ dir = dir, port = free_udp_port() }, Chronyd)
  local conf = assert(io.open(dir .. "/chrony.conf", "w"))
  conf:write(table.concat({
    "port " .. self.port,
    "bindaddress 127.0.0.1",
    "allow 127.0.0.1",
    "local stratum 10",
    "cmdport 0",
    "bindcmdaddress " .. dir .. "/chronyd.sock",
    "pidfile " .. dir .. "/chronyd.pid",
    "driftfile " .. dir .. "/chrony.drift",
  }, "\n"), "\n")
  conf:close()
  -- As root it stays root (-u root: nothing in the temp dir changes owner); as a user
  -- it skips the superuser check (-U). -x: never adjust the system clock.
  local who = sh("id -u") == "0" and "-u root" or "-U"
  -- Our child through popen (the shell execs env, env execs chronyd: one pid), so that
  -- closing the handle reaps it.
  self.handle = assert(io.popen(string.format(
    "echo $$; exec env -u LD_PRELOAD chronyd -x -d %s -f %s/chrony.conf 2>%s/chronyd.log", who, dir, dir), "r"))
  self.pid = tonumber(self.handle:read("*l"))
  assert(self.pid, "could not start chronyd")
  -- Ready when it answers; it normally does within milliseconds.
  local deadline = core.monotonic() + 5
  local res, msg
  repeat
    local ex = core.sntp_request()
    res, msg = core.sntp_query(ex, "127.0.0.1", self.port, 0.2)
    ex:close()
  until res or core.monotonic() > deadline
  if not res then
    local log = self:log()
    self:stop()
    local port_taken = log:find("Could not open NTP socket", 1, true)
    return nil, "chronyd did not serve: " .. tostring(msg) .. "\n" .. log, port_taken
  end
  return self
end

--- Starts chronyd on a free port. The port is free when probed but another process
-- (parallel test runs) may take it before chronyd binds it: then try another port.
function M.start()
  local last
  for _ = 1, 5 do
    local self, err, port_taken = start_once()
    if self then return self end
    last = err
    if not port_taken then break end
  end
  error(last)
end

function Chronyd:log()
  local f = io.open(self.dir .. "/chronyd.log", "r")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

function Chronyd:stop()
  if self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    self.handle:close() -- waits for it to exit
    self.pid, self.handle = nil, nil
  end
  if self.dir then
    os.execute("rm -rf '" .. self.dir .. "'")
    self.dir = nil
  end
end

return M

-- Small process and file helpers shared by the spec support modules that start
-- real servers (nginx, redis-server, chronyd, fleet hosts).
local socket = require "socket"

local M = {}

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function M.write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- Runs a shell command; true when it exited 0 (os.execute differs between 5.1 and 5.4).
function M.run(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

--- Runs a shell command and returns its standard output.
function M.capture(cmd)
  local f = assert(io.popen(cmd))
  local out = f:read("*a")
  f:close()
  return out
end

function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- A TCP port nothing listens on right now (bind to 0, read it, close).
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- Running, not exited: a daemon whose parent is gone stays a zombie until init
-- reaps it (and `kill -0` still succeeds), but it serves nothing any more.
function M.alive(pid)
  local stat = pid and M.read_file("/proc/" .. pid .. "/stat")
  local state = stat and stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

return M

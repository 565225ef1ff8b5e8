-- Starts spec/support/sntp_responder.py in its own process and drives it over its
-- control protocol. Always stop() it (in a finally or teardown).
local socket = require "socket"

local M = {}
local Server = {}
Server.__index = Server

--- `address` defaults to 127.0.0.1; "::1" serves IPv6.
function M.start(address)
  address = address or "127.0.0.1"
  -- env -u LD_PRELOAD: under `make asan` the test interpreter preloads the ASan runtime.
  -- Debian's python3 by path: `python3` on PATH may be a pyenv shim.
  local handle = assert(io.popen("exec env -u LD_PRELOAD /usr/bin/python3 spec/support/sntp_responder.py "
    .. address, "r"))
  local line = handle:read("*l")
  local port = tonumber(line and line:match("^PORT (%d+)$"))
  if not port then
    handle:close()
    error("sntp responder did not start: " .. tostring(line))
  end
  local ctl = assert(address:find(":", 1, true) and socket.udp6() or socket.udp())
  assert(ctl:setpeername(address, port))
  ctl:settimeout(2)
  return setmetatable({ host = address, port = port, handle = handle, ctl = ctl }, Server)
end

function Server:command(cmd)
  assert(self.ctl:send("CTL " .. cmd))
  local reply, err = self.ctl:receive()
  assert(reply, "sntp responder control: " .. tostring(err))
  assert(reply:sub(1, 2) == "OK", "sntp responder control: " .. reply)
  return reply
end

--- Reset to a well-behaved server and apply `settings` ({offset = 1.5, kod = "RATE", ...}).
function Server:set(settings)
  local parts = {}
  for k, v in pairs(settings or {}) do
    if v == true then v = "1" end
    if type(v) == "number" then v = (v % 1 == 0) and string.format("%d", v) or string.format("%.9f", v) end
    parts[#parts + 1] = k .. "=" .. v
  end
  self:command("set " .. table.concat(parts, " "))
  return self
end

--- What the responder did for the last request: requests served since set(), the
-- offset it applied, and the seconds fields of its T2 and T3 (as numbers).
function Server:stats()
  local reply = self:command("stats")
  local requests, offset, t2, t3 = reply:match("requests=(%d+) offset=(%S+) t2=(%x*) t3=(%x*)")
  return {
    requests = tonumber(requests), offset = tonumber(offset),
    t2_seconds = tonumber(t2, 16), t3_seconds = tonumber(t3, 16),
  }
end

function Server:stop()
  if not self.handle then return end
  pcall(self.command, self, "quit")
  self.ctl:close()
  self.handle:close()
  self.handle = nil
end

return M

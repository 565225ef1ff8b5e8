-- Drives fleet hosts (spec/support/fleet_host.lua) from specs: each host is a separate
-- process of the same interpreter on this tree's modules and build, with its own wall
-- clock offset, sharing one credential through Redis.
--
--   local fleet = require "support.fleet"
--   local f = fleet.new()                     -- a temp dir; f:cleanup() kills and removes
--   local group = f:launch { standin = s, redis_port = rs.port, hosts = { {name="a", offset=0}, ... },
--     duration = 15, lock_ttl = 1.5 }
--   f:status(h), f:events(h), f:log(h), f:kill(h), f:wait(group)
local cjson = require "cjson"
local core = require "skewguard.core"
local script = require "support.script"
local sys = require "support.sys"
local read, write, sh, alive = sys.read_file, sys.write_file, sys.run, sys.alive

local M = {}
local Fleet = {}
Fleet.__index = Fleet

function M.new()
  local p = assert(io.popen("mktemp -d /tmp/skewguard-fleet.XXXXXX"))
  local dir = p:read("*l")
  p:close()
  return setmetatable({ dir = dir, hosts = {} }, Fleet)
end

--- Starts one process per host; all make requests from start_at to stop_at (monotonic).
-- opts: standin, redis_port, hosts ({ name, offset }), duration, lock_ttl, timeout (2),
-- interval (0.05), warmup (Date samples first, 5), lead (seconds to start, 2.5).
function Fleet:launch(opts)
  local s = opts.standin
  local start_at = core.monotonic() + (opts.lead or 2.5)
  local group = { start_at = start_at, stop_at = start_at + opts.duration }
  for i, spec in ipairs(opts.hosts) do
    local base = self.dir .. "/" .. spec.name
    local h = { name = spec.name, offset = spec.offset or 0, status_path = base .. ".status",
      events_path = base .. ".events", log_path = base .. ".log" }
    write(base .. ".json", cjson.encode({
      login_url = s.url, client_id = s.client_id, client_secret = s.client_secret,
      redis_port = opts.redis_port, offset = h.offset, name = spec.name, lock_ttl = opts.lock_ttl,
      start_at = start_at, stop_at = group.stop_at, interval = opts.interval or 0.05,
      timeout = opts.timeout or 2, status = h.status_path, warmup = opts.warmup or 5,
    }))
    -- LD_PRELOAD stays: under `make asan` the core is instrumented and needs the runtime
    local cmd = table.concat({
      "env", "LUA_PATH='./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;'",
      "LUA_CPATH='./" .. script.build .. "/?.so;;'",
      script.interpreter, "spec/support/fleet_host.lua", base .. ".json",
      ">" .. h.events_path, "2>" .. h.log_path, "& echo $!",
    }, " ")
    local p = assert(io.popen(cmd))
    h.pid = tonumber(p:read("*a"):match("%d+"))
    p:close()
    assert(h.pid, "fleet host did not start")
    self.hosts[#self.hosts + 1] = h
    group[i] = h
  end
  return group
end

--- The host's last published status (nil before its first).
function Fleet.status(_, h)
  local text = read(h.status_path)
  return text and cjson.decode(text) or nil
end

--- The host's events: list of { kind, t (monotonic), arg }.
function Fleet.events(_, h)
  local out = {}
  for line in (read(h.events_path) or ""):gmatch("[^\n]+") do
    local kind, t, arg = line:match("^(%a+) ([%d.]+) ?(.*)$")
    if kind then out[#out + 1] = { kind = kind, t = tonumber(t), arg = arg ~= "" and arg or nil } end
  end
  return out
end

function Fleet.log(_, h) return read(h.log_path) or "" end

function Fleet.alive(_, h) return h.pid ~= nil and alive(h.pid) end

function Fleet.kill(_, h)
  if h.pid and alive(h.pid) then sh("kill -9 " .. h.pid) end
  local deadline = core.monotonic() + 5
  while h.pid and alive(h.pid) and core.monotonic() < deadline do core.sleep(0.01) end
  h.killed = true
end

--- Waits until every host of the group that was not killed has finished; returns their
-- final statuses (by index). Fails with the host's log when one died or hangs.
function Fleet:wait(group)
  local deadline = group.stop_at + 20
  local out = {}
  for i, h in ipairs(group) do
    if not h.killed then
      local st = self:status(h)
      while not (st and st.done) and alive(h.pid) and core.monotonic() < deadline do
        core.sleep(0.1)
        st = self:status(h)
      end
      assert(st and st.done, "host " .. h.name .. " did not finish:\n" .. self:log(h))
      out[i] = st
    end
  end
  return out
end

--- Sleeps until the monotonic instant t.
function M.sleep_until(t)
  local left = t - core.monotonic()
  if left > 0 then core.sleep(left) end
end

--- Kills every host still running and removes the temp dir.
function Fleet:cleanup()
  for _, h in ipairs(self.hosts) do
    if h.pid and alive(h.pid) then sh("kill -9 " .. h.pid .. " 2>/dev/null") end
  end
  if self.dir then sh("rm -rf " .. self.dir) end
  self.dir = nil
end

return M

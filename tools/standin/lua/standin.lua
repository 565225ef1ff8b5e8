-- The Genesys Cloud stand-in: entry points for nginx's phases (see nginx.conf.in).
local cjson = require "cjson.safe"
local respond = require "standin.respond"
local state = require "standin.state"

local M = {}

function M.init(opts)
  state.init(opts)
  ngx.shared.standin_state:set("initial", cjson.encode(opts or {}))
end

-- Stop the whole server when the process that started it is gone, so a crashed test
-- run leaves no nginx behind.
local function watch_owner(owner_pid)
  local ffi = require "ffi"
  pcall(ffi.cdef, "int kill(int pid, int sig); int getppid(void);")
  local ESRCH, SIGTERM = 3, 15
  ngx.timer.every(0.5, function()
    if ffi.C.kill(owner_pid, 0) ~= 0 and ffi.errno() == ESRCH then
      ngx.log(ngx.WARN, "standin: owner ", owner_pid, " is gone; stopping")
      ffi.C.kill(ffi.C.getppid(), SIGTERM)
    end
  end)
end

function M.init_worker(owner_pid)
  if owner_pid and owner_pid > 0 and ngx.worker.id() == 0 then watch_owner(owner_pid) end
end

function M.content()
  local uri = ngx.var.uri
  if uri:sub(1, 11) == "/__standin/" then
    return require("standin.control").handle()
  end
  ngx.ctx.inflight = true
  state.enter()
  if uri:sub(1, 5) == "/api/" then
    return require("standin.api").handle()
  elseif uri == "/oauth/token" then
    return require("standin.oauth").token()
  elseif uri == "/oauth/authorize" then
    return require("standin.oauth").authorize()
  end
  state.count("not_found")
  respond.api_error(404, "not.found", "The requested resource was not found: " .. uri)
end

function M.header_filter()
  ngx.header["ININ-Correlation-Id"] = respond.correlation_id()
  if state.get("date_header") then
    -- X-Standin-Stamp: the exact server instant the Date was cut from, so specs
    -- can check that a client's send/receive instants really bracket it.
    local now = state.server_now()
    ngx.header["Date"] = ngx.http_time(math.floor(now))
    ngx.header["X-Standin-Stamp"] = string.format("%.6f", now)
  else
    ngx.header["Date"] = ""
  end
  local age = state.get("age")
  if age then ngx.header["Age"] = tostring(age) end
end

function M.log()
  if ngx.ctx.inflight then state.leave() end
end

return M

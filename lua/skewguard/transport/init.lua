--- Picks the transport for where the code runs, so a caller who forgets to pass
-- one never ends up blocking an nginx worker:
--   inside nginx (any phase) -> skewguard.transport.ngx (non-blocking cosockets).
--     Creating it needs no cosocket, so a module-level client built in
--     init_by_lua* or init_worker_by_lua* works; a *request* (or sleep) from a
--     phase without cosockets (init, init_worker, set, log, header/body filters,
--     balancer) raises with a message naming the phase: nothing may block there,
--     and nothing non-blocking is available. Run such work from ngx.timer.at(0, ...).
--   outside nginx -> skewguard.transport.curl (blocking libcurl).
local M = {}

-- Phases where lua-nginx-module provides ngx.socket.tcp and ngx.sleep.
local COSOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}
M.cosocket_phases = COSOCKET_PHASES

--- The nginx phase, or nil outside nginx.
function M.nginx_phase()
  local n = rawget(_G, "ngx")
  if type(n) ~= "table" or type(n.get_phase) ~= "function" then return nil end
  return n.get_phase()
end

--- Raises unless the current nginx phase has cosockets. `what` names the caller.
function M.check_phase(what, level)
  local phase = M.nginx_phase()
  if phase ~= nil and not COSOCKET_PHASES[phase] then
    error(("%s: no cosockets in the nginx %q phase (and a blocking call would stall the worker); " ..
      "make requests from rewrite/access/content handlers or from ngx.timer.at(0, ...)"):format(what, phase),
      (level or 1) + 1)
  end
end

--- A transport suited to the current host. `opts` go to its new().
function M.default(opts)
  if M.nginx_phase() == nil then
    return require("skewguard.transport.curl").new(opts)
  end
  return require("skewguard.transport.ngx").new(opts)
end

return M

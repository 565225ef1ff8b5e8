--- Picks the transport for where the code runs, so a caller who forgets to pass
-- one never ends up blocking an nginx worker:
--   inside nginx, in a phase with cosockets (rewrite, access, content, timer, ...)
--     -> skewguard.transport.ngx (non-blocking);
--   inside nginx, in a phase without cosockets (init, init_worker, set, log,
--     header/body filters, balancer) -> raises: nothing may block there, and
--     nothing non-blocking is available; run the work from ngx.timer.at(0, ...);
--   outside nginx -> skewguard.transport.curl (blocking libcurl).
local M = {}

-- Phases where lua-nginx-module provides ngx.socket.tcp.
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

--- A transport suited to the current host and phase. `opts` go to its new().
function M.default(opts)
  local phase = M.nginx_phase()
  if phase == nil then
    return require("skewguard.transport.curl").new(opts)
  end
  if not COSOCKET_PHASES[phase] then
    error(("skewguard.transport: no non-blocking transport in the nginx %q phase (cosockets are " ..
      "unavailable there, and a blocking one would stall the worker); make requests from " ..
      "rewrite/access/content handlers or from ngx.timer.at(0, ...)"):format(phase), 2)
  end
  return require("skewguard.transport.ngx").new(opts)
end

return M

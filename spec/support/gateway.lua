--- Starts examples/openresty/nginx.conf — the example itself, with only its
-- paths, port and process settings rewritten for a test prefix — in front of the
-- stand-in. Every rewrite must match exactly once, so a change to the example
-- that the specs do not follow fails loudly here.
local nginx = require "support.nginx"

local M = {}

local function replace_once(text, old, new)
  local i, j = text:find(old, 1, true)
  assert(i, "examples/openresty/nginx.conf no longer contains: " .. old)
  assert(not text:find(old, j + 1, true), "examples/openresty/nginx.conf contains twice: " .. old)
  return text:sub(1, i - 1) .. new .. text:sub(j + 1)
end

--- opts: standin (required), workers (2), timeout (2), renew_every (0.25),
-- rate_limit ("off"), log_level ("info"), env (extra variables).
function M.start(opts)
  local s = assert(opts.standin, "support.gateway: standin required")
  local example = assert(nginx.read_file(nginx.repo .. "/examples/openresty/nginx.conf"))
  local env = {
    GENESYS_CLIENT_ID = s.client_id, GENESYS_CLIENT_SECRET = s.client_secret,
    GENESYS_LOGIN_URL = s.url, SKEWGUARD_TIMEOUT = tostring(opts.timeout or 2),
    SKEWGUARD_RATE_LIMIT = opts.rate_limit or "off", SKEWGUARD_RENEW_EVERY = tostring(opts.renew_every or 0.25),
  }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  return nginx.start({
    env = env,
    conf = function(ctx)
      local t = example
      t = t:gsub("/opt/skewguard", (ctx.repo:gsub("%%", "%%%%")))
      t = replace_once(t, "worker_processes 2;", "worker_processes " .. (opts.workers or 2) .. ";" ..
        (nginx.run("test $(id -u) = 0") and "\nuser root root;" or ""))
      t = replace_once(t, "error_log logs/error.log notice;",
        "error_log " .. ctx.prefix .. "/error.log " .. (opts.log_level or "info") .. ";")
      t = replace_once(t, "pid logs/nginx.pid;", "pid " .. ctx.prefix .. "/nginx.pid;")
      t = replace_once(t, "listen 127.0.0.1:8080;", "listen 127.0.0.1:" .. ctx.port[1] .. ";")
      local p = ctx.prefix
      t = replace_once(t, "access_log off;", "access_log off;\n" ..
        "    client_body_temp_path " .. p .. "/tmp/body;\n    proxy_temp_path " .. p .. "/tmp/proxy;\n" ..
        "    fastcgi_temp_path " .. p .. "/tmp/fastcgi;\n    uwsgi_temp_path " .. p .. "/tmp/uwsgi;\n" ..
        "    scgi_temp_path " .. p .. "/tmp/scgi;")
      return t
    end,
  })
end

--- Loads the gateway with wrk (GET /api/v2/organizations/me) and returns the
-- response counts by status, wrk's socket errors, and its whole output.
function M.wrk(port, connections, seconds, threads)
  local script = nginx.repo .. "/spec/support/wrk_status.lua"
  local p = assert(io.popen(("env -u LD_PRELOAD wrk -t%d -c%d -d%ds --timeout 10s -s %s http://127.0.0.1:%d%s 2>&1")
    :format(threads or 2, connections, seconds, nginx.sh_quote(script), port, "/api/v2/organizations/me")))
  local out = p:read("*a")
  p:close()
  local statuses = {}
  for code, n in out:gmatch("status (%d+) (%d+)") do statuses[tonumber(code)] = tonumber(n) end
  local errs = {}
  for k, v in out:gmatch("(%a+)=(%d+)") do errs[k] = tonumber(v) end
  return statuses, errs, out
end

return M

--- The blocking transport for scripts: libcurl through skewguard.core.http.
-- One easy handle per transport (keep-alive, connection reuse, HTTP/2 over TLS
-- when offered). Every transport has the same shape (see docs/token.md):
--   t:request{ method, url, headers, body, timeout } -> res | nil, err
--   t:sleep(seconds), t:now() (monotonic), t:wall(), t:close()
-- res = { status, headers (lower-case names, repeats joined with ", "),
--         header_list ({name, value} in order), body, t_send_mono, t_send_wall,
--         t_recv_mono, t_recv_wall, time_* (curl timings), new_connections, http_version }
-- Request headers may carry secrets: this transport never logs them.
local core = require "skewguard.core"
local errors = require "skewguard.errors"

local M = {}
local Transport = {}
Transport.__index = Transport
M.Transport = Transport

local OPTIONS = { timeout = true, connect_timeout = true, ca_file = true, ca_path = true,
  max_body = true, user_agent = true }

--- opts: timeout (s, default 30), connect_timeout (s, default 10), ca_file, ca_path,
-- max_body (bytes, default 8 MiB), user_agent.
function M.new(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then error("skewguard.transport.curl: unknown option " .. tostring(k), 2) end
  end
  return setmetatable({ name = "curl", http = core.http(opts) }, Transport)
end

function Transport:request(req)
  local res, msg, kind = self.http:request(req)
  if not res then return nil, errors.from_core(msg, kind) end
  return res
end

function Transport.sleep(_, seconds)
  if seconds > 0 then core.sleep(seconds) end
end

function Transport.now() return core.monotonic() end
function Transport.wall() return core.wall() end

function Transport:close() self.http:close() end

return M

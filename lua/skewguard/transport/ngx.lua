--- Non-blocking HTTP/1.1 transport for OpenResty (nginx + lua-nginx-module) over
-- cosockets (`ngx.socket.tcp`). Same interface and response shape as
-- skewguard.transport.curl:
--
--   local t = require("skewguard.transport.ngx").new{ timeout = 10 }
--   local res, err = t:request{ method = "GET", url = "https://api.example/x",
--                               headers = { accept = "application/json" }, body = nil,
--                               timeout = 5 }
--   res = { status, headers (lower-case names, repeats joined with ", "),
--           header_list ({name, value} in order), body, t_start_mono, t_start_wall,
--           t_send_mono, t_send_wall, t_recv_mono, t_recv_wall, new_connections,
--           http_version, reused }
--
-- Every wait yields to the nginx event loop: it runs in rewrite/access/content
-- phases and in ngx.timer callbacks, never in init/init_worker/log/filter phases
-- (nginx has no cosockets there): new() works in any phase (a module-level client
-- built in init_worker_by_lua* is the common pattern), request() and sleep()
-- raise in those phases with a message naming the phase. Hostnames other than `localhost` need a
-- `resolver` directive; https verification needs `lua_ssl_trusted_certificate`.
local core = require("skewguard.core")
local errors = require("skewguard.errors")

local M = {}

local DEFAULTS = {
  connect_timeout = 5,        -- seconds, capped by the request's remaining time
  timeout = 10,               -- seconds for the whole request (connect to last body byte)
  ssl_verify = true,          -- certificate chain and host name; false only on explicit request
  max_body = 8 * 1024 * 1024, -- bytes; a larger body aborts the read: "too_large"
  keepalive = true,           -- pool connections between requests
  keepalive_timeout = 60,     -- seconds a pooled connection may stay idle
  pool_size = 32,             -- pooled connections per (scheme, host, port, SNI) per worker
  pool = "",                 -- extra pool name part: keeps connections apart (see below)
  user_agent = nil,           -- default "skewguard/<version>"
}

local MAX_HEADER_LINES = 256
local READ_CHUNK = 65536
local TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"

local function library_version()
  local ok, sg = pcall(require, "skewguard")
  local v = ok and type(sg) == "table" and sg._VERSION
  return type(v) == "string" and (v:match("^skewguard%s+(%S+)") or v) or "scm"
end

local function nginx_cosockets()
  return type(ngx) == "table" and type(ngx.socket) == "table" and type(ngx.socket.tcp) == "function"
end

local Transport = {}
Transport.__index = Transport
Transport.__name = "skewguard.transport.ngx"

function Transport.__tostring(t)
  return ("skewguard.transport.ngx{timeout=%gs, ssl_verify=%s}"):format(t.timeout, tostring(t.ssl_verify))
end

--- Builds a transport. Raises outside nginx and on unknown or malformed options.
function M.new(opts)
  if not nginx_cosockets() then
    error("skewguard.transport.ngx: needs nginx with the Lua module (ngx.socket.tcp); " ..
      "outside nginx use skewguard.transport.curl or skewguard.transport.default()", 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("skewguard.transport.ngx: options must be a table", 2) end
  if opts.ca_file ~= nil or opts.ca_path ~= nil then
    error("skewguard.transport.ngx: ca_file/ca_path do not apply inside nginx; set the " ..
      "lua_ssl_trusted_certificate directive", 2)
  end
  for k in pairs(opts) do
    if DEFAULTS[k] == nil and k ~= "user_agent" then
      error("skewguard.transport.ngx: unknown option " .. tostring(k), 2)
    end
  end
  local self = setmetatable({}, Transport)
  for k, v in pairs(DEFAULTS) do self[k] = v end
  for k, v in pairs(opts) do self[k] = v end
  for _, k in ipairs({ "connect_timeout", "timeout", "max_body", "keepalive_timeout", "pool_size" }) do
    if type(self[k]) ~= "number" or self[k] <= 0 then
      error("skewguard.transport.ngx: " .. k .. " must be a positive number", 2)
    end
  end
  if type(self.ssl_verify) ~= "boolean" then error("skewguard.transport.ngx: ssl_verify must be a boolean", 2) end
  if type(self.keepalive) ~= "boolean" then error("skewguard.transport.ngx: keepalive must be a boolean", 2) end
  if type(self.pool) ~= "string" then error("skewguard.transport.ngx: pool must be a string", 2) end
  if self.user_agent == nil then self.user_agent = "skewguard/" .. library_version() end
  if type(self.user_agent) ~= "string" then error("skewguard.transport.ngx: user_agent must be a string", 2) end
  return self
end

-- Loud failure in phases without cosockets (init_worker, log, filters...).
local function check_phase(what)
  require("skewguard.transport").check_phase("skewguard.transport.ngx: " .. what, 3)
end

function Transport.sleep(_, seconds)
  check_phase("sleep")
  if seconds > 0 then ngx.sleep(seconds) end
end

--- Nothing to release: pooled connections belong to nginx. Kept for the
-- transport interface (the curl transport frees its handle).
function Transport.close() end

function Transport.now() return core.monotonic() end
function Transport.wall() return core.wall() end

-- URL -> scheme, host (no brackets), port, request target, is_ipv6. Raises on a
-- URL this transport cannot use: that is a caller's mistake, not a runtime failure.
local function parse_url(url)
  if type(url) ~= "string" then error("skewguard.transport.ngx: url must be a string", 3) end
  local scheme, authority, rest = url:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  scheme = scheme and scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then
    error("skewguard.transport.ngx: only http and https URLs are supported", 3)
  end
  if authority:find("@", 1, true) then
    error("skewguard.transport.ngx: credentials in the URL are not supported", 3)
  end
  local host, port, ipv6
  local v6, v6rest = authority:match("^%[([%x:.]+)%](.*)$")
  if v6 then
    host, ipv6 = v6, true
    port = v6rest:match("^:(%d+)$")
    if v6rest ~= "" and not port then error("skewguard.transport.ngx: malformed URL authority", 3) end
  else
    host, port = authority:match("^([^:]+):(%d+)$")
    if not host then
      host = authority
      if host:find(":", 1, true) then error("skewguard.transport.ngx: malformed URL authority", 3) end
    end
  end
  if host == "" or host:find("[%s%c]") then error("skewguard.transport.ngx: malformed URL host", 3) end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then error("skewguard.transport.ngx: URL port out of range", 3) end
  local target = rest:gsub("#.*$", "")
  if target == "" then target = "/" elseif target:sub(1, 1) == "?" then target = "/" .. target end
  if target:find("[%s%c]") then error("skewguard.transport.ngx: URL path contains spaces or controls", 3) end
  return scheme, host:lower(), port, target, ipv6
end

local function fail(kind, message, fields)
  return nil, errors.new(kind, message, fields)
end

-- Remaining time budget as cosocket milliseconds, or nil when spent.
local function remaining_ms(deadline)
  local left = deadline - core.monotonic()
  if left <= 0 then return nil end
  return math.max(1, math.floor(left * 1000))
end

-- A socket error while the request runs -> error kind.
local function socket_error(err, what)
  if err == "timeout" then return "timeout", what .. ": timed out" end
  return "network", what .. ": " .. tostring(err)
end

local function add_header(lines, name, value)
  if type(name) ~= "string" or not name:match(TOKEN) then
    error("skewguard.transport.ngx: invalid header name " .. tostring(name), 4)
  end
  local vt = type(value)
  if vt == "table" then
    for _, v in ipairs(value) do add_header(lines, name, v) end
    return
  end
  if vt ~= "string" and vt ~= "number" then
    error("skewguard.transport.ngx: header " .. name .. " must be a string", 4)
  end
  value = tostring(value)
  if value:find("[\r\n%z]") then
    -- The value may be a secret (authorization): name only in the message.
    error("skewguard.transport.ngx: header " .. name .. " contains CR, LF or NUL", 4)
  end
  lines[#lines + 1] = name
  lines[#lines + 1] = ": "
  lines[#lines + 1] = value
  lines[#lines + 1] = "\r\n"
end

local function build_request(self, method, host, port, target, scheme, ipv6, headers, body, close)
  local out = { method, " ", target, " HTTP/1.1\r\n" }
  local default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
  local host_header = (ipv6 and "[" .. host .. "]" or host) .. (default_port and "" or ":" .. port)
  local has = {}
  if headers then
    for name in pairs(headers) do has[name] = true end
  end
  if not has.host then add_header(out, "Host", host_header) end
  if not has["user-agent"] then add_header(out, "User-Agent", self.user_agent) end
  if headers then
    for name, value in pairs(headers) do
      -- Framing is ours: a caller's content-length or transfer-encoding could
      -- desynchronise the connection.
      if name ~= "content-length" and name ~= "transfer-encoding" then add_header(out, name, value) end
    end
  end
  if body then
    add_header(out, "Content-Length", #body)
  elseif method == "POST" or method == "PUT" or method == "PATCH" then
    add_header(out, "Content-Length", 0)
  end
  if close and not has.connection then add_header(out, "Connection", "close") end
  out[#out + 1] = "\r\n"
  if body then out[#out + 1] = body end
  return out
end

local function has_token(value, token)
  if not value then return false end
  for item in value:lower():gmatch("[^,%s]+") do
    if item == token then return true end
  end
  return false
end

-- Reads header lines up to the blank line. Returns headers, header_list or nil, kind, msg.
local function read_headers(sock, deadline)
  local headers, list = {}, {}
  local last
  for _ = 1, MAX_HEADER_LINES do
    local ms = remaining_ms(deadline)
    if not ms then return nil, "timeout", "reading response headers: timed out" end
    sock:settimeout(ms)
    local line, err = sock:receive("*l")
    if not line then
      if err == "timeout" then return nil, "timeout", "reading response headers: timed out" end
      return nil, "protocol", "connection closed inside the response headers (" .. tostring(err) .. ")"
    end
    if line == "" then return headers, list end
    if line:match("^[ \t]") and last then
      -- obs-fold (RFC 9112 §5.2): a continuation of the previous value.
      local previous = last[2]
      last[2] = previous .. " " .. line:match("^%s*(.-)%s*$")
      local joined = headers[last[1]]
      headers[last[1]] = joined:sub(1, #joined - #previous) .. last[2]
    else
      local name, value = line:match("^([^:]+):(.*)$")
      if not name or not name:match(TOKEN) then
        return nil, "protocol", "malformed response header line"
      end
      name = name:lower()
      value = value:match("^[ \t]*(.-)[ \t]*$")
      last = { name, value }
      list[#list + 1] = last
      -- Repeats joined with ", " (RFC 9110 §5.3), as the curl transport does;
      -- header_list keeps them apart (Set-Cookie cannot be joined safely).
      headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
    end
  end
  return nil, "protocol", "too many response header lines"
end

-- Reads exactly n bytes. Returns data or nil, kind, msg.
local function read_exact(sock, n, deadline, what)
  local ms = remaining_ms(deadline)
  if not ms then return nil, "timeout", what .. ": timed out" end
  sock:settimeout(ms)
  local data, err, partial = sock:receive(n)
  if data then return data end
  if err == "timeout" then return nil, "timeout", what .. ": timed out" end
  return nil, "protocol", ("%s: connection closed after %d of %d bytes (%s)")
    :format(what, partial and #partial or 0, n, tostring(err))
end

local function read_chunked(sock, deadline, max_body)
  local parts, total = {}, 0
  while true do
    local ms = remaining_ms(deadline)
    if not ms then return nil, "timeout", "reading chunked body: timed out" end
    sock:settimeout(ms)
    local line, err = sock:receive("*l")
    if not line then
      if err == "timeout" then return nil, "timeout", "reading chunked body: timed out" end
      return nil, "protocol", "connection closed inside the chunked body (" .. tostring(err) .. ")"
    end
    -- chunk-size [ chunk-ext ]: hex digits, then optional ";ext". Anything else
    -- means the framing is lost and no byte after it can be trusted.
    local hex, ext = line:match("^(%x+)[ \t]*(.*)$")
    if not hex or (ext ~= "" and ext:sub(1, 1) ~= ";") or #hex > 12 then
      return nil, "protocol", "malformed chunk size line"
    end
    local size = tonumber(hex, 16)
    if size == 0 then
      -- Trailer section: header lines up to a blank line, ignored.
      local trailers, kind, msg = read_headers(sock, deadline)
      if not trailers then return nil, kind, msg end
      return table.concat(parts)
    end
    if total + size > max_body then
      return nil, "too_large", ("response body exceeds max_body (%d bytes)"):format(max_body)
    end
    local data, kind, msg = read_exact(sock, size, deadline, "reading chunk")
    if not data then return nil, kind, msg end
    local crlf
    crlf, kind, msg = read_exact(sock, 2, deadline, "reading chunk end")
    if not crlf then return nil, kind, msg end
    if crlf ~= "\r\n" then return nil, "protocol", "chunk data not followed by CRLF" end
    total = total + size
    parts[#parts + 1] = data
  end
end

local function read_until_close(sock, deadline, max_body)
  local parts, total = {}, 0
  while true do
    local ms = remaining_ms(deadline)
    if not ms then return nil, "timeout", "reading response body: timed out" end
    sock:settimeout(ms)
    local want = math.min(READ_CHUNK, max_body - total + 1)
    local data, err, partial = sock:receive(want)
    local got = data or partial
    if got and got ~= "" then
      total = total + #got
      if total > max_body then
        return nil, "too_large", ("response body exceeds max_body (%d bytes)"):format(max_body)
      end
      parts[#parts + 1] = got
    end
    if not data then
      if err == "closed" then return table.concat(parts) end
      if err == "timeout" then return nil, "timeout", "reading response body: timed out" end
      return nil, "network", "reading response body: " .. tostring(err)
    end
  end
end

-- Reads the body according to the response framing (RFC 9112 §6.3).
-- Returns body, reusable or nil, kind, msg.
local function read_body(sock, deadline, max_body, method, status, headers, list)
  if method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
    return "", true
  end
  local te = headers["transfer-encoding"]
  if te then
    local codings = te:lower()
    if codings:match("chunked%s*$") then
      local body, kind, msg = read_chunked(sock, deadline, max_body)
      if not body then return nil, kind, msg end
      -- Both framings present is a smuggling hint: do not reuse the connection.
      return body, headers["content-length"] == nil
    end
    local body, kind, msg = read_until_close(sock, deadline, max_body)
    if not body then return nil, kind, msg end
    return body, false
  end
  local cl
  for _, h in ipairs(list) do
    if h[1] == "content-length" then
      local v = h[2]:match("^%d+$")
      if not v or #v > 15 then return nil, "protocol", "malformed Content-Length" end
      if cl and cl ~= tonumber(v) then return nil, "protocol", "conflicting Content-Length headers" end
      cl = tonumber(v)
    end
  end
  if cl then
    if cl > max_body then
      return nil, "too_large", ("response body of %d bytes exceeds max_body (%d bytes)"):format(cl, max_body)
    end
    if cl == 0 then return "", true end
    local body, kind, msg = read_exact(sock, cl, deadline, "reading response body")
    if not body then return nil, kind, msg end
    return body, true
  end
  local body, kind, msg = read_until_close(sock, deadline, max_body)
  if not body then return nil, kind, msg end
  return body, false
end

-- The reason nginx recorded for a failed handshake, read the way lua-resty-core
-- reads it (used only on the path where resty.core raised instead of returning
-- it, see attempt()). Best effort: nil if the internals are not as expected.
local function handshake_failure_reason(sock)
  local ok, reason = pcall(function()
    local ffi = require("ffi")
    local base = require("resty.core.base")
    local session = ffi.new("void *[1]")
    local openssl_code = ffi.new("int[1]")
    local errmsg = base.get_errmsg_ptr()
    local rc = ffi.C.ngx_http_lua_ffi_socket_tcp_get_sslhandshake_result(base.get_request(), sock[1],
      session, errmsg, openssl_code)
    if rc ~= base.FFI_ERROR then return nil end
    local text = ffi.string(errmsg[0])
    if openssl_code[0] ~= 0 then text = openssl_code[0] .. ": " .. text end
    return text
  end)
  return ok and reason or nil
end

-- One attempt on one connection. Returns res, or nil, kind, msg, stale where stale
-- means: a pooled connection the server had closed before any response byte.
local function attempt(self, p, deadline)
  local t_start_mono, t_start_wall = core.now()
  local sock = ngx.socket.tcp()
  local ms = remaining_ms(deadline)
  if not ms then return nil, "timeout", "no time left to connect" end
  sock:settimeouts(math.min(ms, math.floor(self.connect_timeout * 1000)), ms, ms)
  local ok, err = sock:connect(p.connect_host, p.port, { pool = p.pool })
  if not ok then
    if err == "timeout" then return nil, "timeout", ("connect to %s:%d: timed out"):format(p.host, p.port) end
    local msg = ("connect to %s:%d: %s"):format(p.host, p.port, tostring(err))
    if tostring(err):find("resolver", 1, true) then
      msg = msg .. " (set the nginx `resolver` directive to resolve host names)"
    end
    return nil, "network", msg
  end
  local reused = sock:getreusedtimes() or 0
  if p.scheme == "https" and reused == 0 then
    ms = remaining_ms(deadline)
    if not ms then sock:close() return nil, "timeout", "TLS handshake: timed out" end
    sock:settimeout(ms)
    -- reused_session must stay nil, not false: lua-resty-core 0.1.25 (module
    -- 0.10.23) returns true for a handshake that completes without yielding when
    -- reused_session is false, even if the certificate check failed. With nil it
    -- fetches the result and, on that same path, raises instead of returning the
    -- failure: hence the pcall, which turns it back into a typed error.
    local called, session, herr = pcall(sock.sslhandshake, sock, nil, p.sni, self.ssl_verify)
    if not called then
      local reason = handshake_failure_reason(sock)
      sock:close()
      return nil, "tls", ("TLS handshake with %s: %s"):format(p.host, reason or "failed verification")
    end
    if not session then
      sock:close()
      if herr == "timeout" then return nil, "timeout", "TLS handshake: timed out" end
      if herr == "closed" or tostring(herr):find("reset", 1, true) then
        return nil, "network", "TLS handshake: " .. tostring(herr)
      end
      return nil, "tls", ("TLS handshake with %s: %s"):format(p.host, tostring(herr))
    end
  end

  -- Timing anchors for the Date-header skew sample (DESIGN.md §2):
  -- skew ∈ [t_send - (D + 1), t_recv - D] holds only if the server's stamp lies
  -- between the two instants. So t_send is read BEFORE the request is handed to
  -- the socket (the server cannot have seen it earlier; a read after send()
  -- returns can come after the server's stamp: send may yield, and the worker may
  -- run other requests before resuming us), and t_recv right after the status
  -- line (the server stamped before it wrote that line). Reading t_send before
  -- connect/TLS, or t_recv after the body, would only widen the interval.
  sock:settimeout(remaining_ms(deadline) or 1)
  local t_send_mono, t_send_wall = core.now()
  local sent, serr = sock:send(p.request)
  if not sent then
    sock:close()
    if reused > 0 and serr ~= "timeout" then return nil, "network", "send: " .. tostring(serr), true end
    local kind, msg = socket_error(serr, "sending request")
    return nil, kind, msg
  end

  local status, http_version, t_recv_mono, t_recv_wall
  repeat
    ms = remaining_ms(deadline)
    if not ms then sock:close() return nil, "timeout", "waiting for the response: timed out" end
    sock:settimeout(ms)
    local line, rerr, partial = sock:receive("*l")
    t_recv_mono, t_recv_wall = core.now()
    if not line then
      sock:close()
      if rerr == "timeout" then return nil, "timeout", "waiting for the response: timed out" end
      if partial and partial ~= "" then
        return nil, "protocol", "connection closed inside the status line"
      end
      if reused > 0 then return nil, "network", "pooled connection closed by the server", true end
      return nil, "network", "connection closed before any response (" .. tostring(rerr) .. ")"
    end
    local v, code = line:match("^HTTP/(1%.[01]) (%d%d%d)")
    if not v then
      sock:close()
      return nil, "protocol", "malformed status line"
    end
    status, http_version = tonumber(code), v
    if status == 101 then sock:close() return nil, "protocol", "unexpected 101 Switching Protocols" end
    local headers, list, hmsg = read_headers(sock, deadline)
    if not headers then sock:close() return nil, list, hmsg end
    if status >= 200 then
      local body, reusable_or_kind, msg = read_body(sock, deadline, self.max_body, p.method, status, headers, list)
      if not body then
        sock:close()
        return nil, reusable_or_kind, msg
      end
      local keep = reusable_or_kind and p.keepalive
      if http_version == "1.1" then
        keep = keep and not has_token(headers.connection, "close")
      else
        keep = keep and has_token(headers.connection, "keep-alive")
      end
      if keep then
        sock:setkeepalive(math.floor(self.keepalive_timeout * 1000), self.pool_size)
      else
        sock:close()
      end
      return {
        status = status, headers = headers, header_list = list, body = body,
        t_start_mono = t_start_mono, t_start_wall = t_start_wall,
        t_send_mono = t_send_mono, t_send_wall = t_send_wall,
        t_recv_mono = t_recv_mono, t_recv_wall = t_recv_wall,
        new_connections = reused == 0 and 1 or 0, http_version = http_version,
        reused = reused,
      }
    end
    -- 1xx interim response (100 Continue, 103 Early Hints): the final one follows.
  until false
end

--- Performs one HTTP request. Returns res or nil, err (kinds: timeout, network,
-- tls, protocol, too_large). Raises on malformed arguments.
function Transport:request(req)
  check_phase("request")
  if type(req) ~= "table" then error("skewguard.transport.ngx: request must be a table", 2) end
  local method = req.method or "GET"
  if type(method) ~= "string" or not method:match("^%u+$") then
    error("skewguard.transport.ngx: method must be an upper-case token", 2)
  end
  if req.body ~= nil and type(req.body) ~= "string" then
    error("skewguard.transport.ngx: body must be a string", 2)
  end
  if req.headers ~= nil and type(req.headers) ~= "table" then
    error("skewguard.transport.ngx: headers must be a table", 2)
  end
  local timeout = req.timeout or self.timeout
  if type(timeout) ~= "number" or timeout <= 0 then
    error("skewguard.transport.ngx: timeout must be a positive number", 2)
  end
  local scheme, host, port, target, ipv6 = parse_url(req.url)
  local close = not self.keepalive or has_token(req.headers and req.headers.connection, "close")
  -- cosockets need a `resolver` for names; localhost is answered here so tests and
  -- local gateways work without one. The Host header and SNI keep the name.
  local connect_host = host
  if host == "localhost" then connect_host = "127.0.0.1" elseif ipv6 then connect_host = "[" .. host .. "]" end
  local sni
  if scheme == "https" then
    -- The cosocket API takes one name for SNI and for verification. For an IP
    -- literal we still pass it: nginx then checks it against the certificate's
    -- names and fails closed, where passing nothing would skip the host check.
    sni = host
  end
  local p = {
    scheme = scheme, host = host, port = port, connect_host = connect_host, sni = sni,
    method = method, keepalive = not close,
    request = build_request(self, method, host, port, target, scheme, ipv6, req.headers, req.body, close),
    -- A pooled TLS connection was verified once, when it was opened, against the
    -- trust store of the location that opened it; nginx shares pools across the
    -- worker's servers and locations, so `pool` keeps transports with different
    -- lua_ssl_trusted_certificate settings apart.
    pool = ("skewguard|%s|%s://%s:%d|sni=%s|verify=%s"):format(self.pool, scheme, connect_host, port, sni or "",
      tostring(self.ssl_verify)),
  }
  local deadline = core.monotonic() + timeout
  local res, kind, msg, stale = attempt(self, p, deadline)
  if not res and stale then
    -- The classic keep-alive race: the server closed the idle pooled connection
    -- just as we reused it, before it read our request. Nothing of the response
    -- arrived, so one retry on another connection is safe.
    res, kind, msg = attempt(self, p, deadline)
  end
  if not res then return fail(kind, msg) end
  return res
end

return M
